"""The wording of problems: near-miss hints and one-line causes."""

import difflib
import pickle
import re
from typing import Any

#: Where torch's refusal of a pickled global names it, in the wordings torch has used: "Unsupported global: GLOBAL
#: x.y", "Unsupported class x.y", and the fix it suggests, "add_safe_globals([x.y])". Tried in order.
_REFUSED_GLOBAL = (
    re.compile(r"\bGLOBAL\s+([A-Za-z_][\w.]*)"),
    re.compile(r"\b[Uu]nsupported (?:global|class)\W+([A-Za-z_][\w.]*)"),
    re.compile(r"safe_globals\(\s*\[\s*([A-Za-z_][\w.]*)"),
)


class Explained(Exception):
    """An error whose message is the whole explanation and names what it is about (``ckpt_path: ...``):
    :func:`describe` shows the message alone."""


def did_you_mean(word: str, options: Any) -> str:
    """``"; did you mean 'x'?"`` for the closest option, or ``""`` if none is close."""
    close = difflib.get_close_matches(str(word), [str(o) for o in options], n=1, cutoff=0.6)
    return f"; did you mean {close[0]!r}?" if close else ""


def root_cause(error: BaseException) -> BaseException:
    """The innermost cause of ``error`` (Hydra wraps the errors that constructors raise), or the first
    :class:`Explained` error on the way in, whose message already says what its causes meant."""
    while error.__cause__ is not None and not isinstance(error, Explained):
        error = error.__cause__
    return error


def refused_global(error: BaseException) -> str | None:
    """The global (``module.Name``) that ``torch.load(weights_only=True)`` refused to load, if its message names it."""
    text = str(error)
    return next((found.group(1) for pattern in _REFUSED_GLOBAL if (found := pattern.search(text))), None)


def unsafe_to_load(error: pickle.UnpicklingError) -> str:
    """What follows a checkpoint's name when ``torch.load(weights_only=True)`` refused it with ``error``.

    Torch raises :class:`pickle.UnpicklingError` for every pickled object that
    safe loading refuses; its wording changes between versions, so the global is
    named when the message shows it, and the checkpoint is called unsafe either way.

    Example::

        >>> unsafe_to_load(pickle.UnpicklingError("Unsupported global: GLOBAL evil.Payload was not allowed"))[:44]
        'is unsafe to load: it holds evil.Payload, a '
    """
    name = refused_global(error)
    held = f"it holds {name}, a pickled object" if name else "it holds pickled objects"
    return (f"is unsafe to load: {held} that torch.load(weights_only=True) refuses because loading could run code; "
            "lit_train loads only checkpoints of tensors and plain values")


def describe(error: BaseException) -> str:
    """``"<Type>: <message>"`` of the root cause of ``error``, its message on one line.

    An :class:`Explained` error is its message alone; a checkpoint that safe
    loading refused says it is unsafe and names what it holds.
    """
    cause = root_cause(error)
    if isinstance(cause, Explained):
        return " ".join(str(cause).split())
    if isinstance(cause, pickle.UnpicklingError) and (refused_global(cause) or "weights" in str(cause).lower()):
        return f"a checkpoint {unsafe_to_load(cause)}"
    return f"{type(cause).__name__}: {' '.join(str(cause).split())}"
