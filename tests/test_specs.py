"""Each optimizer and scheduler spec holds exactly the arguments its class takes."""

import inspect

import pytest
from hydra.utils import get_object

from lit_train.config.specs import OPTIMIZERS, SCHEDULERS, UNLISTED_ARGUMENTS

TARGETS = [*OPTIMIZERS.items(), *SCHEDULERS.items()]


@pytest.mark.parametrize(("target", "spec"), TARGETS, ids=[target for target, _ in TARGETS])
def test_spec_lists_every_argument_of_the_class(target, spec):
    accepted = set(inspect.signature(get_object(target)).parameters) - UNLISTED_ARGUMENTS
    assert set(spec.params) == accepted


@pytest.mark.parametrize(("target", "spec"), TARGETS, ids=[target for target, _ in TARGETS])
def test_the_class_defaults_pass_the_spec(target, spec):
    """A rule that refused a class's own default would refuse a config that merely restates it."""
    for name, parameter in inspect.signature(get_object(target)).parameters.items():
        if name in spec.params and parameter.default is not inspect.Parameter.empty:
            default = list(parameter.default) if isinstance(parameter.default, tuple) else parameter.default
            assert spec.params[name].check(default) is None, (name, default)


def test_length_arguments_are_arguments():
    for target, spec in SCHEDULERS.items():
        assert spec.length_arg is None or spec.length_arg in spec.params, target


def test_trainer_arguments_are_the_trainers_signature():
    import lightning.pytorch as L

    from lit_train.config.specs import TRAINER_ARGUMENTS

    assert TRAINER_ARGUMENTS == set(inspect.signature(L.Trainer).parameters)


def test_every_trainer_argument_is_a_key_of_the_trainer_group():
    from support import compose_config

    from lit_train.config.specs import TRAINER_ARGUMENTS, TRAINER_SET_BY_LIT_TRAIN

    keys = set(compose_config([]).trainer) - {"_target_"}
    assert keys == TRAINER_ARGUMENTS - TRAINER_SET_BY_LIT_TRAIN
