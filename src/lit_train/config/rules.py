"""Value rules for config validation: each checks one value and says what is allowed.

A rule returns ``None`` when the value is fine, else the reason, phrased to
follow the key and precede the bad value: ``"must be > 0"``.
"""

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _bound(value: float) -> str:
    """A bound as a person writes it: ``4294967295`` rather than ``4.29497e+09``, ``1e-07`` as is."""
    return str(int(value)) if float(value).is_integer() else f"{value:g}"


@dataclass(frozen=True)
class Number:
    """A number within bounds; ``integer`` demands an int, ``nullable`` admits ``None``."""

    low: float | None = None
    high: float | None = None
    low_open: bool = False
    high_open: bool = False
    integer: bool = False
    nullable: bool = False
    also: tuple[Any, ...] = ()

    def describe(self, plural: bool = False) -> str:
        kind = ("integers" if plural else "an integer") if self.integer else ("numbers" if plural else "a number")
        if self.low is not None and self.high is not None:
            left, right = "(" if self.low_open else "[", ")" if self.high_open else "]"
            bounds = f" in {left}{_bound(self.low)}, {_bound(self.high)}{right}"
        elif self.low is not None:
            bounds = f" {'>' if self.low_open else '>='} {_bound(self.low)}"
        elif self.high is not None:
            bounds = f" {'<' if self.high_open else '<='} {_bound(self.high)}"
        else:
            bounds = ""
        extras = [repr(v) for v in self.also] + (["null"] if self.nullable else [])
        return f"{kind}{bounds}" + (f" (or {', '.join(extras)})" if extras else "")

    def check(self, value: Any) -> str | None:
        if value is None and self.nullable or value in self.also and not isinstance(value, bool):
            return None
        ok = _is_number(value) and (not self.integer or isinstance(value, int)) and value == value
        if ok and self.low is not None:
            ok = value > self.low if self.low_open else value >= self.low
        if ok and self.high is not None:
            ok = value < self.high if self.high_open else value <= self.high
        return None if ok else f"must be {self.describe()}"


@dataclass(frozen=True)
class OneOf:
    """One of a fixed set of values."""

    choices: tuple[Any, ...]
    nullable: bool = False

    def check(self, value: Any) -> str | None:
        if value is None and self.nullable or value in self.choices and not isinstance(value, bool):
            return None
        allowed = ", ".join(map(repr, self.choices)) + (", null" if self.nullable else "")
        return f"must be one of {allowed}"


@dataclass(frozen=True)
class Flag:
    """``true`` or ``false``."""

    nullable: bool = False

    def check(self, value: Any) -> str | None:
        if isinstance(value, bool) or value is None and self.nullable:
            return None
        return "must be true or false"


@dataclass(frozen=True)
class Text:
    """A non-empty string."""

    nullable: bool = False

    def describe(self, plural: bool = False) -> str:
        return "non-empty strings" if plural else "a non-empty string"

    def check(self, value: Any) -> str | None:
        if isinstance(value, str) and value or value is None and self.nullable:
            return None
        return f"must be {self.describe()}"


@dataclass(frozen=True)
class Metric(Text):
    """The name of a metric the model logs: checked against the metrics of a built-in module."""


@dataclass(frozen=True)
class ListOf:
    """A list whose items all pass ``item`` (a rule with ``describe``), with a length in ``lengths``."""

    item: Any
    lengths: tuple[int, ...] = ()
    increasing: bool = False
    nullable: bool = False

    def check(self, value: Any) -> str | None:
        if value is None and self.nullable:
            return None
        what = f"a list of {self.item.describe(plural=True)}"
        if self.lengths:
            what = f"a list of {' or '.join(map(str, self.lengths))} values, each {self.item.describe()}"
        if isinstance(value, (str, bytes)) or not isinstance(value, Sequence):
            return f"must be {what}"
        if self.lengths and len(value) not in self.lengths or any(self.item.check(v) for v in value):
            return f"must be {what}"
        if self.increasing and any(b <= a for a, b in zip(value, value[1:])):
            return f"must be {what}, strictly increasing"
        return None


@dataclass(frozen=True)
class Built:
    """A config node that names the class to build in ``_target_`` (its arguments are the class's to check)."""

    nullable: bool = False

    def describe(self, plural: bool = False) -> str:
        return "configs with a _target_" if plural else "a config with a _target_"

    def check(self, value: Any) -> str | None:
        if isinstance(value, dict) and isinstance(value.get("_target_"), str) or value is None and self.nullable:
            return None
        return f"must be {self.describe()}"


@dataclass(frozen=True)
class Union:
    """Passes if any of ``rules`` passes."""

    rules: tuple[Any, ...]

    def describe(self, plural: bool = False) -> str:
        return " or ".join(rule.describe(plural) for rule in self.rules)

    def check(self, value: Any) -> str | None:
        reasons = [rule.check(value) for rule in self.rules]
        if any(reason is None for reason in reasons):
            return None
        return " or ".join(reason.removeprefix("must be ") if i else reason for i, reason in enumerate(reasons))


#: Rules that many keys share.
FRACTION = Number(0, 1, high_open=True)
POSITIVE = Number(0, low_open=True)
NON_NEGATIVE = Number(0)
COUNT = Number(1, integer=True)
#: The seeds numpy (and so Lightning's seed_everything) accepts.
SEED = Number(0, 2**32 - 1, integer=True)
FLAG = Flag()
#: PyTorch's kernel switches (``foreach``, ``fused``): ``None`` lets PyTorch choose.
KERNEL = Flag(nullable=True)
