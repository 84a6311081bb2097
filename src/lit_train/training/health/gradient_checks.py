"""Checks of the gradient norms a run logged (``grad_norm/*``, the gradient monitor's) and of why it stopped.

The gradient monitor logs each layer's norm every ``log_every_n_steps`` steps;
a finding needs the norm past its threshold on ``patience`` of those logged
steps, so that one spike (the first steps of a run) is no finding.
"""

import math
from typing import Any

from lit_train.training.curves import Curve, Curves
from lit_train.training.doctor.findings import TrainingFinding
from lit_train.training.doctor.gradient_checks import (
    EXPLODING_FIX, NO_GRADIENT_FIX, NONFINITE_FIX, VANISHING_FIX,
)
from lit_train.training.health.levers import Levers

PREFIX = "grad_norm/"
TOTAL = "grad_norm/total"
SKIPPED = "grad_norm/skipped_steps"
#: Layers a finding names; the rest are counted.
NAMED = 5
#: Why the gradient monitor stops a run with non-finite gradients (its ``stopped_reason``).
NONFINITE_STOPS = ("non_finite_gradient", "too_many_skipped_steps")


def layer_norms(curves: Curves) -> dict[str, Curve]:
    """Each layer's logged gradient norms, by layer name."""
    return {key.removeprefix(PREFIX): points for key, points in curves.series.items()
            if key.startswith(PREFIX) and key not in (TOTAL, SKIPPED)}


def _named(items: list[str]) -> str:
    return ", ".join(items[:NAMED]) + (f" and {len(items) - NAMED} more" if len(items) > NAMED else "")


def _hits(layers: dict[str, Curve], hit: Any, patience: int) -> dict[str, Curve]:
    """The layers with at least ``patience`` logged points where ``hit(norm)``, with those points."""
    found = {layer: [(step, norm) for step, norm in points if math.isfinite(norm) and hit(norm)]
             for layer, points in layers.items()}
    return {layer: points for layer, points in found.items() if len(points) >= patience}


def exploding_gradient(layers: dict[str, Curve], limit: float, patience: int, levers: Levers) -> list[TrainingFinding]:
    """Layers whose gradient norm was above ``limit`` on ``patience`` logged steps or more."""
    big = _hits(layers, lambda norm: norm > limit, patience)
    if not big:
        return []
    step = min(points[0][0] for points in big.values())
    largest = {layer: max(norm for _, norm in points) for layer, points in big.items()}
    return [TrainingFinding(
        "exploding_gradient", "warning",
        f"gradient norms above {limit:g} on {patience} or more logged steps, from step {step}: "
        + _named([f"{layer} up to {norm:.3g}" for layer, norm in largest.items()]),
        EXPLODING_FIX.format(lr=levers.lr_times(0.1)),
        {"largest": largest, "limit": limit}, step=step)]


def vanishing_gradient(layers: dict[str, Curve], limit: float, patience: int) -> list[TrainingFinding]:
    """Layers whose gradient norm was below ``limit`` but not zero on ``patience`` logged steps or more."""
    small = _hits(layers, lambda norm: 0 < norm < limit, patience)
    if not small:
        return []
    step = min(points[0][0] for points in small.values())
    smallest = {layer: min(norm for _, norm in points) for layer, points in small.items()}
    return [TrainingFinding(
        "vanishing_gradient", "warning",
        f"gradient norms below {limit:g} on {patience} or more logged steps, from step {step}: "
        + _named([f"{layer} down to {norm:.3g}" for layer, norm in smallest.items()]),
        VANISHING_FIX, {"smallest": smallest, "limit": limit}, step=step)]


def no_gradient(layers: dict[str, Curve], patience: int) -> list[TrainingFinding]:
    """Layers whose gradient norm was exactly zero on every logged step (``patience`` of them at least)."""
    dead = [layer for layer, points in layers.items() if len(points) >= patience and all(n == 0 for _, n in points)]
    if not dead:
        return []
    step = min(layers[layer][0][0] for layer in dead)
    return [TrainingFinding(
        "no_gradient", "warning",
        f"{len(dead)} layer(s) got an exactly zero gradient on every logged step: "
        + _named(dead),
        NO_GRADIENT_FIX, {"layers": dead}, step=step)]


def nonfinite_gradient(curves: Curves, summary: dict[str, Any], levers: Levers) -> list[TrainingFinding]:
    """NaN/Inf gradients: a stop of the gradient monitor, steps it skipped, or a non-finite norm it logged."""
    skipped = summary.get("skipped_steps") or 0
    logged_bad = [step for step, norm in curves.series.get(TOTAL, []) if not math.isfinite(norm)]
    skips = [step for step, count in curves.series.get(SKIPPED, []) if count > 0]
    stopped = summary.get("stopped_reason") in NONFINITE_STOPS
    if not (stopped or skipped or logged_bad):
        return []
    step = min([*logged_bad, *skips], default=summary.get("global_step"))
    if stopped:
        message = f"gradients turned NaN/Inf and the gradient monitor stopped the run ({summary['stopped_reason']})"
    elif skipped:
        message = f"{skipped} optimizer step(s) had NaN/Inf gradients and were skipped"
    else:
        message = f"the logged gradient norm was NaN/Inf on {len(logged_bad)} logged step(s), and those updates applied"
    return [TrainingFinding("nonfinite_gradient", "error" if stopped or logged_bad else "warning", message,
                            NONFINITE_FIX.format(lr=levers.lr_times(0.1)),
                            {"skipped_steps": skipped, "stopped_reason": summary.get("stopped_reason")}, step=step)]
