"""Checks of the logged loss curves: plain functions of ``(step, value)`` points, one per check.

Each judges the run as a whole, at its end: a curve that recovers (a spike, a
slow start) is no finding, and none of them judges a curve with too few
points to tell (:data:`MIN_POINTS`).
"""

import math
from statistics import median

from lit_train.training.curves import Curve
from lit_train.training.doctor.findings import TrainingFinding
from lit_train.training.health.levers import Levers

#: Points a training-loss curve needs before a check judges it; oscillation needs :data:`OSCILLATION_POINTS`.
MIN_POINTS = 3
OSCILLATION_POINTS = 5


def _finite(curve: Curve) -> Curve:
    return [(step, value) for step, value in curve if math.isfinite(value)]


def value_at(curve: Curve, step: int) -> float | None:
    """The last finite value of ``curve`` logged at or before ``step``."""
    found = [value for at, value in _finite(curve) if at <= step]
    return found[-1] if found else None


def loss_not_decreasing(loss: Curve, first: float, chance: float | None, judge_after: float, tolerance: float,
                        blowup: float, levers: Levers) -> list[TrainingFinding]:
    """The training loss stayed within ``tolerance`` of where it started after ``judge_after`` of the run.

    A loss that went above ``blowup`` times its first value on the way got stuck after an LR
    too high (dead units after the blow-up): the fix lowers the LR instead of raising it.

    Args:
        loss: The training loss.
        first: Its first value (the earliest of the per-step and per-epoch losses).
        chance: The loss of guessing uniformly (``ln C`` for C classes), ``None`` if unknown: a loss
            that does not get ``tolerance`` below it is not learning either.
        judge_after: The share of the run's steps after which the loss is judged.
        tolerance: How far below its reference the loss must get, as a share of it.
        blowup: The multiple of the first value that tells a blow-up (``divergence_factor``).
        levers: The run's settings, for the fix.
    """
    points = _finite(loss)
    if len(points) < MIN_POINTS or not math.isfinite(first):
        return []
    later = [(step, value) for step, value in points[1:] if step >= judge_after * points[-1][0]]
    if not later:
        return []
    reference, what = first, f"its first value {first:.4g}"
    if chance is not None and chance < first:
        reference, what = chance, f"the chance loss {chance:.4g} (guessing uniformly)"
    best = min(value for _, value in later)
    if best < reference - tolerance * abs(reference):
        return []
    step = later[0][0]
    peak_step, peak = max(points, key=lambda point: point[1])
    blew_up = first > 0 and peak > blowup * first
    message = (f"the training loss is still {best:.4g} or more from step {step} on (judged after {judge_after:.0%} of "
               f"the run): less than {tolerance:.0%} below {what}")
    if blew_up:
        message += f", after it blew up to {peak:.4g} at step {peak_step}"
        fix = f"{levers.lr_times(0.1)} (the LR is too high: the blow-up left the model stuck), or +callbacks=warmup"
    else:
        fix = f"{levers.lr_times(10)} (or find one with action=lr_find); action=doctor checks the gradients and the data"
    return [TrainingFinding("loss_not_decreasing", "warning", message, fix,
                            {"best_after": best, "first": first, "chance": chance, "peak": peak}, step=step)]


def divergence(loss: Curve, factor: float, levers: Levers) -> list[TrainingFinding]:
    """The training loss ended NaN/Inf or above ``factor`` times its first value, and stayed there from some step on.

    A first value at or below zero (a log-likelihood) has no meaningful multiple: then only NaN/Inf counts.
    """
    points = _finite(loss)
    # A loss that was never finite has diverged, however short the run.
    if not loss or (len(loss) < MIN_POINTS and points):
        return []
    first = points[0][1] if points else math.nan

    def bad(value: float) -> bool:
        return not math.isfinite(value) or first > 0 and value > factor * first

    if not bad(loss[-1][1]):
        return []
    start = len(loss) - 1
    while start > 0 and bad(loss[start - 1][1]):
        start -= 1
    step, last = loss[start][0], loss[-1][1]
    return [TrainingFinding(
        "divergence", "error",
        f"the training loss blew up at step {step} and never came back: {last:.4g} at the end"
        + (f", more than {factor:g}x its first value {first:.4g}" if math.isfinite(first) else ""),
        f"{levers.lr_times(0.1)}, trainer.gradient_clip_val=1.0 or +callbacks=warmup",
        {"first": first, "last": last, "factor": factor}, step=step)]


def oscillation(loss: Curve, first: float, rise_share: float, jump: float, levers: Levers) -> list[TrainingFinding]:
    """The training loss went up about as much as down, in moves that are large against where it started.

    Noise at a converged floor moves little against the first loss; a run whose LR is too
    high bounces by a good part of it.

    Args:
        loss: The training loss.
        first: Its first value, the scale its moves are measured on.
        rise_share: The least share of the loss's total movement that is upwards.
        jump: The least median move, as a share of ``first``.
        levers: The run's settings, for the fix.
    """
    points = _finite(loss)
    if len(points) < OSCILLATION_POINTS or not first > 0:
        return []
    moves = [(step, value - before) for (_, before), (step, value) in zip(points, points[1:])]
    up = sum(move for _, move in moves if move > 0)
    total = sum(abs(move) for _, move in moves)
    typical = median(abs(move) for _, move in moves) / first
    if total == 0 or up / total < rise_share or typical < jump:
        return []
    step = next(step for step, move in moves if move > 0)
    return [TrainingFinding(
        "oscillation", "warning",
        f"the training loss oscillates from step {step} on: {up / total:.0%} of its movement is upwards, its typical "
        f"move {typical:.0%} of its first value {first:.4g}",
        f"{levers.lr_times(1 / 3)}, trainer.gradient_clip_val=1.0 or a larger batch",
        {"rise_share": up / total, "typical_move": typical, "first": first}, step=step)]


def overfitting(train_loss: Curve, val_loss: Curve, epochs: dict[int, int], rise: float, patience: int,
                levers: Levers) -> list[TrainingFinding]:
    """The validation loss ended ``rise`` above its best, ``patience`` validations or more after it, while the
    training loss fell over the same steps.

    Args:
        train_loss: The training loss.
        val_loss: The validation loss.
        epochs: The epoch of each logged step, to name the epoch of the best validation loss.
        rise: How far above its best the validation loss ends, as a share of the best.
        patience: The least number of validations after the best.
        levers: The run's settings, for the fix.
    """
    points = _finite(val_loss)
    if len(points) < patience + 1:
        return []
    best_index = min(range(len(points)), key=lambda i: points[i][1])
    (best_step, best), (last_step, last) = points[best_index], points[-1]
    after = len(points) - 1 - best_index
    train_then, train_now = value_at(train_loss, best_step), value_at(train_loss, last_step)
    if after < patience or last < best + rise * abs(best) or train_then is None or not train_now < train_then:
        return []
    epoch = epochs.get(best_step)
    since = f"epoch {epoch} (step {best_step})" if epoch is not None else f"step {best_step}"
    return [TrainingFinding(
        "overfitting", "warning",
        f"the validation loss rose since {since}, from {best:.4g} to {last:.4g} over {after} validations, while "
        f"the training loss fell from {train_then:.4g} to {train_now:.4g}",
        f"{levers.regularize()}, or more training data",
        {"best_epoch": epoch, "best_step": best_step, "best": best, "last": last, "train_then": train_then,
         "train_now": train_now}, step=best_step)]
