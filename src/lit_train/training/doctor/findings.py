"""What the doctor found: findings, skipped checks, and ``doctor.json``.

The names in :data:`CHECKS` and :data:`SEVERITIES` are part of the interface:
``doctor.json``, the printed report and every run's health record
(:mod:`lit_train.training.health`, whose findings are :class:`TrainingFinding`)
use them as they are.
"""

import json
import math
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

#: Every check the doctor runs, by the stage it looks at.
CHECKS = (
    # the data
    "data_nonfinite", "data_scale", "label_range", "label_imbalance", "split_overlap", "data_shapes",
    # the model at initialization
    "init_loss", "activation_saturation", "dead_units", "nonfinite_forward",
    # the gradients of the first batch
    "no_gradient", "vanishing_gradient", "exploding_gradient", "nonfinite_gradient",
    # optimization
    "cannot_overfit", "lr_too_high", "lr_too_low",
    # the curves of a training run (its health record)
    "loss_not_decreasing", "divergence", "overfitting", "oscillation",
)
#: ``error``: training cannot work as set up; ``warning``: it will likely train badly; ``info``: worth knowing.
SEVERITIES = ("error", "warning", "info")
#: The exit code of ``action=doctor`` when a finding is an error.
EXIT_ERRORS = 4
REPORT_NAME = "doctor.json"


class CheckSkipped(Exception):
    """Raised by a check that cannot run for this setup; the message says why."""


@dataclass(frozen=True)
class Finding:
    """One problem (or fact) a check found.

    Args:
        check: One of :data:`CHECKS`.
        severity: One of :data:`SEVERITIES`.
        message: What is wrong, with the numbers that show it.
        fix: The override or code change to try.
        evidence: The measurements behind the message (plain JSON values).
    """

    check: str
    severity: str
    message: str
    fix: str
    evidence: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.check not in CHECKS:
            raise ValueError(f"`check` must be one of {CHECKS}, got {self.check!r}")
        if self.severity not in SEVERITIES:
            raise ValueError(f"`severity` must be one of {SEVERITIES}, got {self.severity!r}")


@dataclass(frozen=True)
class TrainingFinding(Finding):
    """A finding of a training run's health record: what a check saw in the logged curves, and from which step.

    Args:
        step: The optimizer step the problem showed at; ``None`` if the curves cannot tell.
    """

    step: int | None = None

    def to_dict(self) -> dict[str, Any]:
        """Its entry in ``summary.json``'s ``health`` list."""
        return _plain({"check": self.check, "severity": self.severity, "step": self.step, "message": self.message,
                       "fix": self.fix, "evidence": self.evidence})


@dataclass(frozen=True)
class Skipped:
    """A check that could not run for this setup, and why."""

    check: str
    reason: str

    def __post_init__(self) -> None:
        if self.check not in CHECKS:
            raise ValueError(f"`check` must be one of {CHECKS}, got {self.check!r}")


@dataclass
class Report:
    """Everything one doctor run found, and the curves behind it (drawn in ``doctor.png``).

    Attributes:
        findings: In the order the checks ran.
        skipped: Checks that could not run, with the reason.
        curves: Named series for the picture: ``grad_norms``, ``activations``, ``overfit``, ``lr_range``.
    """

    findings: list[Finding] = field(default_factory=list)
    skipped: list[Skipped] = field(default_factory=list)
    curves: dict[str, Any] = field(default_factory=dict)

    @property
    def verdict(self) -> str:
        """``healthy`` unless a finding is an error or a warning (``problems``)."""
        return "problems" if any(f.severity in ("error", "warning") for f in self.findings) else "healthy"

    @property
    def exit_code(self) -> int:
        """0, or :data:`EXIT_ERRORS` when a finding is an error."""
        return EXIT_ERRORS if any(f.severity == "error" for f in self.findings) else 0

    def count(self, severity: str) -> int:
        return sum(f.severity == severity for f in self.findings)

    def to_dict(self) -> dict[str, Any]:
        """The content of ``doctor.json``."""
        return {
            "verdict": self.verdict,
            "findings": [_plain(asdict(finding)) for finding in self.findings],
            "skipped": [asdict(skipped) for skipped in self.skipped],
        }


def _plain(value: Any) -> Any:
    """``value`` with non-finite floats as strings (JSON has no NaN) and tuples as lists."""
    if isinstance(value, dict):
        return {str(key): _plain(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(item) for item in value]
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    return value


def exit_code(run_dir: str | Path) -> int:
    """The exit code of the doctor run whose ``doctor.json`` is in ``run_dir``: :data:`EXIT_ERRORS` when it found an
    error, else 0 (also when there is no report: the doctor failed, and said so, or another rank wrote it)."""
    path = Path(run_dir) / REPORT_NAME
    if not path.is_file():
        return 0
    findings = json.loads(path.read_text())["findings"]
    return EXIT_ERRORS if any(finding["severity"] == "error" for finding in findings) else 0
