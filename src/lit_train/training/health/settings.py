"""The health record's thresholds: the ``health`` node of the root config holds the same keys and defaults."""

from dataclasses import dataclass


@dataclass(frozen=True)
class HealthSettings:
    """Thresholds of the health record every training run gets, each a rule of thumb from common practice.

    Args:
        report: Draw the run's ``report.png``. Default ``True``.
        judge_after: ``loss_not_decreasing`` judges the part of the run after this share of its steps.
            Default ``0.25``.
        not_decreasing_tolerance: The training loss is not decreasing while it stays less than this share
            below its first value (or the chance loss, ``ln C``, when that is lower). Default ``0.05``.
        divergence_factor: The training loss diverged when it ends above this many times its first value
            (or NaN/Inf) and never came back below. Default ``4.0``.
        overfitting_rise: Overfitting: the validation loss ends this share above its best, while the
            training loss fell since. Default ``0.1``.
        overfitting_patience: ... after at least this many validations past the best. Default ``3``.
        oscillation_rise_share: Oscillation: of all the training loss's moves, at least this share is
            upwards... Default ``0.3``.
        oscillation_jump: ... and its typical (median) move is at least this share of its first value.
            Default ``0.1``.
        exploding_norm: A layer's logged gradient norm above this is exploding. Default ``100.0``.
        vanishing_norm: A layer's logged gradient norm below this (and above zero) is vanishing; one
            that is exactly zero gets no gradient. Default ``1e-7``.
        gradient_patience: A gradient finding needs the norm past its threshold on this many logged
            steps. Default ``3``.
    """

    report: bool = True
    judge_after: float = 0.25
    not_decreasing_tolerance: float = 0.05
    divergence_factor: float = 4.0
    overfitting_rise: float = 0.1
    overfitting_patience: int = 3
    oscillation_rise_share: float = 0.3
    oscillation_jump: float = 0.1
    exploding_norm: float = 100.0
    vanishing_norm: float = 1.0e-7
    gradient_patience: int = 3
