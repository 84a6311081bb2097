"""A run's health record: every check on its logged curves, and the log lines they become."""

import logging
import math
from pathlib import Path
from typing import Any

from omegaconf import DictConfig

from lit_train.config.specs import MODULES
from lit_train.training.curves import TRAIN_KEYS, Curve, Curves
from lit_train.training.doctor.findings import TrainingFinding
from lit_train.training.health import curve_checks, gradient_checks
from lit_train.training.health.levers import Levers
from lit_train.training.health.settings import HealthSettings

logger = logging.getLogger("lit_train.health")
#: The size of the output a built-in task's cross-entropy is over, by task: the classes, the vocabulary.
CHANCE_SIZES = {"classification": "num_classes", "language_model": "vocab_size"}
#: Why a callback stopped a run whose metrics blew up, as the divergence finding tells it.
DIVERGED_STOPS = {
    "diverged": "the validation loss grew past callbacks.divergence.factor times its first value, or turned NaN/Inf",
    "non_finite": "the monitored metric turned NaN/Inf",
}


def training_loss(curves: Curves) -> Curve:
    """The training loss the curve checks read: per step where logged on enough steps, else the epoch means."""
    logged = [curves.series[key] for key in TRAIN_KEYS if key in curves.series]
    enough = [points for points in logged if len(points) >= curve_checks.MIN_POINTS]
    return (enough or sorted(logged, key=len, reverse=True) or [[]])[0]


def first_loss(curves: Curves) -> float:
    """The earliest finite training loss, per step or per epoch (the larger of the two if logged at the same step)."""
    firsts = [points[0] for key in TRAIN_KEYS if (points := curves.finite(key))]
    if not firsts:
        return math.nan
    return max(firsts, key=lambda point: (-point[0], point[1]))[1]


def chance_loss(cfg: DictConfig) -> float | None:
    """The cross-entropy of guessing uniformly, ``ln C``, for a built-in classifier or language model."""
    spec = MODULES.get(cfg.model.get("_target_"))
    key = CHANCE_SIZES.get(spec.task) if spec is not None else None
    size = cfg.data.get(key) if key is not None else None
    return math.log(size) if isinstance(size, int) and size > 1 else None


def examine(curves: Curves, summary: dict[str, Any], settings: HealthSettings, levers: Levers,
            chance: float | None = None) -> list[TrainingFinding]:
    """Every finding of a run's curves and stop, in step order.

    Args:
        curves: The run's ``metrics.csv``.
        summary: Its ``summary.json`` so far (``stopped_reason``, ``skipped_steps``, ``global_step``).
        settings: The thresholds.
        levers: The run's settings, which the fixes name.
        chance: The loss of guessing uniformly, if known.
    """
    loss, first = training_loss(curves), first_loss(curves)
    layers = gradient_checks.layer_norms(curves)
    found = [
        *curve_checks.divergence(loss, settings.divergence_factor, levers),
        # The epoch means are logged at the steps of the validations they are compared with.
        *curve_checks.overfitting(curves.series.get("train/loss") or loss, curves.series.get("val/loss", []),
                                  curves.epochs, settings.overfitting_rise, settings.overfitting_patience, levers),
        *gradient_checks.exploding_gradient(layers, settings.exploding_norm, settings.gradient_patience, levers),
        *gradient_checks.vanishing_gradient(layers, settings.vanishing_norm, settings.gradient_patience),
        *gradient_checks.no_gradient(layers, settings.gradient_patience),
        *gradient_checks.nonfinite_gradient(curves, summary, levers),
    ]
    checks = {finding.check for finding in found}
    if "divergence" not in checks and summary.get("stopped_reason") in DIVERGED_STOPS:
        found.append(TrainingFinding(
            "divergence", "error", f"{DIVERGED_STOPS[summary['stopped_reason']]}; training stopped",
            f"{levers.lr_times(0.1)}, trainer.gradient_clip_val=1.0 or +callbacks=warmup",
            {"stopped_reason": summary["stopped_reason"]}, step=summary.get("global_step")))
        checks.add("divergence")
    if "divergence" not in checks:  # a loss that blew up bounces and stalls on its way: divergence says it all
        found += [
            *curve_checks.loss_not_decreasing(loss, first, chance, settings.judge_after,
                                              settings.not_decreasing_tolerance, settings.divergence_factor, levers),
            *curve_checks.oscillation(loss, first, settings.oscillation_rise_share, settings.oscillation_jump, levers),
        ]
    return sorted(found, key=lambda finding: (finding.step is None, finding.step or 0))


def log_record(findings: list[TrainingFinding], run_dir: Path) -> None:
    """One log record per finding (errors as errors, warnings as warnings), into the run's log file."""
    for finding in findings:
        level = {"error": logging.ERROR, "warning": logging.WARNING}.get(finding.severity, logging.INFO)
        logger.log(level, "%s at step %s: %s; try %s", finding.check, finding.step, finding.message, finding.fix)
    if not findings:
        logger.info("healthy: no finding in the curves of %s", run_dir / "metrics.csv")

