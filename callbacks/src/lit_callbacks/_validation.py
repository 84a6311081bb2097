"""Argument checks shared by the callbacks.

Each check raises with a message that names the argument, echoes the bad value and
says what is allowed, e.g. "`per` must be one of ('module', 'parameter'), got 'modul'".
"""

from __future__ import annotations

import math
from collections.abc import Collection
from typing import Any


def check_choice(name: str, value: Any, allowed: Collection[Any], error: type[Exception] = ValueError) -> None:
    """Raise ``error`` unless ``value`` is one of ``allowed``.

    Args:
        name: Argument name used in the message.
        value: The value passed by the user.
        allowed: The allowed values, usually a class constant tuple.
        error: The exception type to raise. Default ``ValueError``.

    Raises:
        ValueError: If ``value`` is not in ``allowed``; ``error`` instead, when given.
    """
    if value not in allowed:
        raise error(f"`{name}` must be one of {tuple(allowed)!r}, got {value!r}")


def check_bool(name: str, value: Any, allow_none: bool = False) -> None:
    """Raise ``TypeError`` unless ``value`` is a ``bool`` (or ``None``, with ``allow_none``)."""
    if not (isinstance(value, bool) or (allow_none and value is None)):
        raise TypeError(f"`{name}` must be a bool{' or None' if allow_none else ''}, got {value!r}")


def check_int(name: str, value: Any, minimum: int | None = None) -> None:
    """Raise unless ``value`` is an ``int`` (not a ``bool``) and at least ``minimum``.

    Raises:
        TypeError: If ``value`` is not an int.
        ValueError: If ``value`` is below ``minimum``.
    """
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"`{name}` must be an int, got {value!r}")
    if minimum is not None and value < minimum:
        raise ValueError(f"`{name}` must be an int >= {minimum}, got {value!r}")


def check_number(
    name: str,
    value: Any,
    minimum: float | None = None,
    *,
    strict: bool = False,
    maximum: float | None = None,
) -> None:
    """Raise unless ``value`` is a finite real number, optionally bounded.

    Args:
        name: Argument name used in the message.
        value: The value passed by the user.
        minimum: Lower bound, or ``None`` for no bound.
        strict: If ``True`` the lower bound is exclusive (``value > minimum``).
        maximum: Inclusive upper bound, or ``None`` for no bound.

    Raises:
        TypeError: If ``value`` is not an int or float.
        ValueError: If ``value`` is not finite or violates the bound.
    """
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"`{name}` must be a number, got {value!r}")
    if not math.isfinite(value):
        raise ValueError(f"`{name}` must be finite, got {value!r}")
    if minimum is not None:
        if strict and not value > minimum:
            raise ValueError(f"`{name}` must be > {minimum}, got {value!r}")
        if not strict and not value >= minimum:
            raise ValueError(f"`{name}` must be >= {minimum}, got {value!r}")
    if maximum is not None and not value <= maximum:
        raise ValueError(f"`{name}` must be <= {maximum}, got {value!r}")
