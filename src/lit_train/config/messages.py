"""The wording of problems: near-miss hints and one-line causes."""

import difflib
from typing import Any


def did_you_mean(word: str, options: Any) -> str:
    """``"; did you mean 'x'?"`` for the closest option, or ``""`` if none is close."""
    close = difflib.get_close_matches(str(word), [str(o) for o in options], n=1, cutoff=0.6)
    return f"; did you mean {close[0]!r}?" if close else ""


def root_cause(error: BaseException) -> BaseException:
    """The innermost cause of ``error``: Hydra wraps the errors that constructors raise."""
    while error.__cause__ is not None:
        error = error.__cause__
    return error


def describe(error: BaseException) -> str:
    """``"<Type>: <message>"`` of the root cause of ``error``, its message on one line."""
    cause = root_cause(error)
    return f"{type(cause).__name__}: {' '.join(str(cause).split())}"
