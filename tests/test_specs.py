"""Each spec holds exactly the arguments its class takes, and every built-in config's targets have one."""

import inspect
from typing import Any

import pytest
from hydra.utils import get_object
from omegaconf import OmegaConf
from support import ROOT

from lit_train.config.callback_specs import CALLBACKS
from lit_train.config.specs import (
    DATA_MODULES, HYDRA_KEYS, MODULES, NETWORKS, OPTIMIZERS, SCHEDULERS, UNLISTED_ARGUMENTS,
)
from lit_train.config.targets import LOCATORS
from lit_train.config.validate import spec_of

TARGETS = [*OPTIMIZERS.items(), *SCHEDULERS.items(), *DATA_MODULES.items(), *NETWORKS.items(), *MODULES.items(),
           *CALLBACKS.items()]
IDS = [target for target, _ in TARGETS]
#: The groups whose options name a class to build, and so hold only its arguments.
TARGET_GROUPS = ("data", "model", "callbacks", "optimizer", "scheduler")


def _parameters(target: str) -> dict[str, inspect.Parameter]:
    """The named parameters of ``target``'s constructor, those it passes on to its base class included.

    lit_train's and lit-callbacks' classes pass ``**kwargs`` (and ``*args``) on to their base class's
    constructor, so its parameters count too; another package's ``**kwargs`` is its own business.
    """
    found: dict[str, inspect.Parameter] = {}
    obj = get_object(target)
    classes = [c for c in obj.__mro__ if "__init__" in vars(c)] if isinstance(obj, type) else [obj]
    for owner in classes:
        forwards = False
        for name, parameter in inspect.signature(owner).parameters.items():
            if parameter.kind in (parameter.VAR_KEYWORD, parameter.VAR_POSITIONAL):
                forwards = owner.__module__.split(".")[0] in ("lit_train", "lit_callbacks")
            elif name != "self":
                found.setdefault(name, parameter)
        if not forwards:
            break
    return found


def _as_config(value: Any) -> Any:
    """A default as a config writes it: a list for a tuple, a ``get_class`` node for a class."""
    if isinstance(value, type):
        return {"_target_": "hydra.utils.get_class", "path": f"{value.__module__}.{value.__qualname__}"}
    if isinstance(value, (tuple, list)):
        return [_as_config(item) for item in value]
    return value


@pytest.mark.parametrize(("target", "spec"), TARGETS, ids=IDS)
def test_spec_lists_every_argument_of_the_class(target, spec):
    parameters = set(_parameters(target))
    assert spec.fixed <= parameters
    assert set(spec.params) == parameters - UNLISTED_ARGUMENTS - spec.fixed


@pytest.mark.parametrize(("target", "spec"), TARGETS, ids=IDS)
def test_the_class_defaults_pass_the_spec(target, spec):
    """A rule that refused a class's own default would refuse a config that merely restates it."""
    for name, parameter in _parameters(target).items():
        if name in spec.params and parameter.default is not inspect.Parameter.empty:
            default = _as_config(parameter.default)
            assert spec.params[name].check(default) is None, (name, default)


def test_length_arguments_are_arguments():
    for target, spec in SCHEDULERS.items():
        assert spec.length_arg is None or spec.length_arg in spec.params, target


def test_one_spec_per_target():
    tables = (OPTIMIZERS, SCHEDULERS, DATA_MODULES, NETWORKS, MODULES, CALLBACKS)
    assert sum(map(len, tables)) == len(set().union(*tables))


#: Rules whose choices a class keeps in a constant of its own: (target, argument, where the constant is).
CHOICES = [
    ("lit_train.modules.Classifier", "compile_mode", "lit_train.modules.TaskModule.COMPILE_MODES"),
    ("lit_train.data.RegressionDataModule", "function", "lit_train.data.RegressionDataModule.FUNCTIONS"),
    ("lit_train.models.MLP", "activation", "lit_train.models._layers.ACTIVATIONS"),
    ("lit_train.models.MLP", "init", "lit_train.models._layers.INITS"),
    ("lit_train.models.CNN", "activation", "lit_train.models._layers.ACTIVATIONS"),
    ("lit_train.models.CNN", "init", "lit_train.models._layers.INITS"),
    ("lit_callbacks.EarlyStopping", "mode", "lit_callbacks.EarlyStopping.MODES"),
    ("lit_callbacks.GradientMonitor", "per", "lit_callbacks.GradientMonitor.PER"),
    ("lit_callbacks.GradientMonitor", "on_nonfinite", "lit_callbacks.GradientMonitor.ON_NONFINITE"),
    ("lit_callbacks.LRFinder", "mode", "lit_callbacks.LRFinder.MODES"),
    ("lit_callbacks.LRFinder", "method", "lit_callbacks.LRFinder.METHODS"),
    ("lit_callbacks.Warmup", "mode", "lit_callbacks.Warmup.MODES"),
    ("lit_callbacks.WeightInit", "scheme", "lit_callbacks.WeightInit.SCHEMES"),
    ("lit_callbacks.WeightInit", "distribution", "lit_callbacks.WeightInit.DISTRIBUTIONS"),
    ("lit_callbacks.WeightInit", "mode", "lit_callbacks.WeightInit.MODES"),
    ("lit_callbacks.WeightInit", "nonlinearity", "lit_callbacks.WeightInit.NONLINEARITIES"),
]


@pytest.mark.parametrize(("target", "argument", "constant"), CHOICES, ids=[f"{t}.{a}" for t, a, _ in CHOICES])
def test_the_choices_checked_are_the_ones_the_class_takes(target, argument, constant):
    assert set(spec_of(target).params[argument].choices) == set(get_object(constant))


def _nodes(node: Any, path: str) -> list[tuple[str, dict]]:
    """Every node under ``node`` that names a class to build, with its path (locators' nodes are values)."""
    found = []
    if isinstance(node, dict):
        if isinstance(node.get("_target_"), str) and node["_target_"] not in LOCATORS:
            found.append((path, node))
        for key, value in node.items():
            found += _nodes(value, f"{path}.{key}")
    elif isinstance(node, list):
        for i, value in enumerate(node):
            found += _nodes(value, f"{path}[{i}]")
    return found


YAMLS = sorted(path for group in TARGET_GROUPS for path in (ROOT / "conf" / group).glob("*.yaml"))


@pytest.mark.parametrize("path", YAMLS, ids=[f"{p.parent.name}/{p.name}" for p in YAMLS])
def test_every_target_of_a_built_in_option_has_a_spec_that_knows_its_keys(path):
    option = OmegaConf.to_container(OmegaConf.load(path), resolve=False)
    for where, node in _nodes(option, path.parent.name):
        spec = spec_of(node["_target_"])
        assert spec is not None, (where, node["_target_"])
        assert set(node) - HYDRA_KEYS <= set(spec.params), where


def test_every_target_group_has_an_option_with_a_target():
    assert all(any(_nodes(OmegaConf.to_container(OmegaConf.load(p)), "") for p in YAMLS if p.parent.name == group)
               for group in TARGET_GROUPS)


def test_trainer_arguments_are_the_trainers_signature():
    import lightning.pytorch as L

    from lit_train.config.specs import TRAINER_ARGUMENTS

    assert TRAINER_ARGUMENTS == set(inspect.signature(L.Trainer).parameters)


def test_every_trainer_argument_is_a_key_of_the_trainer_group():
    from support import compose_config

    from lit_train.config.specs import TRAINER_ARGUMENTS, TRAINER_SET_BY_LIT_TRAIN

    keys = set(compose_config([]).trainer) - {"_target_"}
    assert keys == TRAINER_ARGUMENTS - TRAINER_SET_BY_LIT_TRAIN
