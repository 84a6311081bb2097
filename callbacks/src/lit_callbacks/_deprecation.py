"""Renamed arguments: the old name keeps working for one release, with a ``DeprecationWarning``."""

from __future__ import annotations

import functools
import inspect
import warnings
from collections.abc import Callable
from typing import Any, TypeVar

C = TypeVar("C", bound=type)


def renamed_arguments(**renames: str) -> Callable[[C], C]:
    """Class decorator: accept each old constructor argument name (``old="new"``) and attribute for one release.

    Passing ``old=value`` to the constructor passes ``value`` as ``new`` and warns with a
    ``DeprecationWarning`` naming ``new``; so does reading or setting the attribute ``old``.
    The constructor's signature shows only the new names.

    Raises:
        TypeError: At construction, if an old name and its new name are both passed.

    Example::

        @renamed_arguments(num_steps="num_training_steps")
        class LRFinder(Callback): ...
    """

    def decorate(cls: C) -> C:
        init = cls.__init__
        signature = inspect.signature(init)

        @functools.wraps(init)
        def __init__(self: Any, *args: Any, **kwargs: Any) -> None:
            passed = signature.bind(self, *args, **{k: v for k, v in kwargs.items() if k not in renames}).arguments
            for old, new in renames.items():
                if old not in kwargs:
                    continue
                if new in passed:
                    raise TypeError(
                        f"{cls.__name__} got both `{old}` and `{new}`; `{old}` is the deprecated name of `{new}`:"
                        f" pass only `{new}`"
                    )
                _warn(cls, old, new, stacklevel=3)
                kwargs[new] = kwargs.pop(old)
            init(self, *args, **kwargs)

        cls.__init__ = __init__
        for old, new in renames.items():
            setattr(cls, old, _RenamedAttribute(cls, old, new))
        return cls

    return decorate


def _warn(cls: type, old: str, new: str, stacklevel: int) -> None:
    warnings.warn(
        f"{cls.__name__}: `{old}` is deprecated and goes in the next release; use `{new}`",
        DeprecationWarning,
        stacklevel=stacklevel,
    )


class _RenamedAttribute:
    """The attribute ``old`` as a deprecated view of ``new``."""

    def __init__(self, cls: type, old: str, new: str) -> None:
        self.cls, self.old, self.new = cls, old, new

    def __get__(self, instance: Any, owner: type | None = None) -> Any:
        if instance is None:
            return self
        _warn(self.cls, self.old, self.new, stacklevel=3)
        return getattr(instance, self.new)

    def __set__(self, instance: Any, value: Any) -> None:
        _warn(self.cls, self.old, self.new, stacklevel=3)
        setattr(instance, self.new, value)
