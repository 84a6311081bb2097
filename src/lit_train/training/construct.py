"""Builds a group's object from its config node, passing a user's class only the arguments it takes.

lit_train's groups carry keys for its built-in classes (``data=digits`` has
``num_features``, ``val_fraction``, ...). A user's class that replaces one
(``data._target_=my_pkg.MyDataModule``) gets the keys its constructor accepts,
and one line says which were left out, so a plain constructor works first try.
"""

import inspect
from typing import Any

from hydra.utils import get_object, instantiate
from omegaconf import DictConfig, OmegaConf

from lit_train.config.specs import HYDRA_KEYS


def unaccepted_keys(node: DictConfig) -> list[str]:
    """The keys of ``node`` that its ``_target_``'s constructor takes no argument for (none if it takes ``**kwargs``)."""
    parameters = inspect.signature(get_object(node._target_)).parameters.values()
    if any(parameter.kind is inspect.Parameter.VAR_KEYWORD for parameter in parameters):
        return []
    accepted = {parameter.name for parameter in parameters}
    return [str(key) for key in node if key not in accepted and key not in HYDRA_KEYS]


def named_parameters_taken(node: DictConfig, names: tuple[str, ...]) -> list[str]:
    """Those of ``names`` that ``node``'s class takes as a named argument and ``node`` does not set."""
    parameters = inspect.signature(get_object(node._target_)).parameters
    return [name for name in names if name in parameters and name not in node]


def construct(node: DictConfig, group: str, offered: dict[str, Any] | None = None) -> Any:
    """``instantiate(node)``, without the keys its class does not take; says once which were left out.

    Args:
        node: The group's config node.
        group: The group's name, for the message.
        offered: Arguments lit_train builds itself (``optimizer=...``), passed as they are.
    """
    if left_out := unaccepted_keys(node):
        print(f"lit_train: {node._target_} takes no {', '.join(left_out)}: those {group} keys were not passed")
        # Resolved in place first: the kept keys may interpolate other groups (num_classes: ${data.num_classes}).
        node = {key: value for key, value in OmegaConf.to_container(node, resolve=True).items() if key not in left_out}
    if not offered:
        return instantiate(node, _convert_="all")
    # Through a partial: instantiate would turn objects given as its own keyword arguments into config nodes.
    return instantiate(node, _convert_="all", _partial_=True)(**offered)
