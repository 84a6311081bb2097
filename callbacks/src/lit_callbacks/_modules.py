"""Choosing submodules by type or by name, shared by the callbacks that hook layers."""

from __future__ import annotations

from collections.abc import Sequence
from fnmatch import fnmatchcase
from typing import Any, Union

from torch import nn

ModuleSpec = Union[type[nn.Module], str]


def normalize_module_spec(name: str, value: Any) -> tuple[ModuleSpec, ...]:
    """Return ``value`` as a tuple of module types and name patterns.

    Args:
        name: Argument name used in the message.
        value: One ``nn.Module`` subclass or name pattern, or a sequence of them. A name
            pattern is matched against ``named_modules()`` names with ``fnmatch`` rules
            (``"net.*"``, ``"encoder.layers.0.act"``).

    Raises:
        TypeError: If an entry is neither an ``nn.Module`` subclass nor a string.
        ValueError: If no entry is given.
    """
    entries = (value,) if isinstance(value, (str, type)) else value
    if not isinstance(entries, Sequence):
        raise TypeError(
            f"`{name}` must be nn.Module subclasses or module-name patterns, got {value!r}"
        )
    entries = tuple(entries)
    if not entries:
        raise ValueError(f"`{name}` must name at least one module type or pattern, got {value!r}")
    for entry in entries:
        if not (isinstance(entry, str) or (isinstance(entry, type) and issubclass(entry, nn.Module))):
            raise TypeError(
                f"`{name}` must be nn.Module subclasses or module-name patterns, got {entry!r} in {value!r}"
            )
    return entries


def select_modules(root: nn.Module, spec: tuple[ModuleSpec, ...]) -> list[tuple[str, nn.Module]]:
    """Return the ``(name, module)`` pairs of ``root``'s submodules matching ``spec``, in registration order."""
    types = tuple(entry for entry in spec if isinstance(entry, type))
    patterns = [entry for entry in spec if isinstance(entry, str)]
    return [
        (name, module)
        for name, module in root.named_modules()
        if name and (isinstance(module, types) or any(fnmatchcase(name, pattern) for pattern in patterns))
    ]


def describe_spec(spec: tuple[ModuleSpec, ...]) -> str:
    """A short readable form of ``spec`` for messages and state keys."""
    return ", ".join(entry if isinstance(entry, str) else entry.__name__ for entry in spec)
