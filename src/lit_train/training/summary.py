"""The run's ``summary.json``: what a person or a sweep reads after training."""

import json
import math
from pathlib import Path
from typing import Any

from lit_train.training.atomic import atomic_write

#: Exit code of a run that failed (an error, or its processes never met).
EXIT_RUN_FAILED = 1
#: Exit code of a run that failed numerically (summary.json: "status": "diverged").
EXIT_DIVERGED = 3


def write_json_atomic(path: Path, data: dict[str, Any]) -> None:
    """Writes ``data`` as JSON so that ``path`` is either the old or the complete new file, never partial."""
    atomic_write(path, lambda f: f.write((json.dumps(data, indent=2) + "\n").encode()))


def to_number(value: Any) -> float | None:
    """A metric (tensor or number) as a float; ``None`` stays ``None``."""
    if value is None:
        return None
    return float(value.item() if hasattr(value, "item") else value)


def monitored_value(summary: dict[str, Any]) -> float | None:
    """The value a run returns to sweepers: its best ``monitor`` value, else the last one, else ``None``."""
    return summary["best_score"] if summary["best_score"] is not None else summary["final_monitor_value"]


#: What to try after a run stopped for these reasons, in terms of lit_train's config keys.
STOP_HINTS = {
    "non_finite_gradient": (
        "a gradient became NaN or infinite, so training stopped and that step's update was dropped (the weights "
        "and the best checkpoint stay finite): lower the learning rate (optimizer.lr), clip gradients "
        "(trainer.gradient_clip_val=1.0), check the data for NaN, or skip such steps and go on "
        "(callbacks.gradient_monitor.on_nonfinite=skip)"
    ),
    "too_many_skipped_steps": (
        "more steps had a NaN or infinite gradient than callbacks.gradient_monitor.max_skipped_fraction allows: "
        "lower the learning rate (optimizer.lr), clip gradients (trainer.gradient_clip_val=1.0) or check the "
        "data for NaN"
    ),
    "diverged": (
        "the loss grew far past its first value (callbacks.divergence.factor): lower the learning rate "
        "(optimizer.lr), warm up (+callbacks=warmup) or clip gradients (trainer.gradient_clip_val=1.0); "
        "callbacks.divergence=null switches the check off"
    ),
    "non_finite": (
        "the monitored metric became NaN or infinite: lower the learning rate (optimizer.lr) or clip gradients "
        "(trainer.gradient_clip_val=1.0)"
    ),
}


#: Actions that look at a config without training it: no steps, no best value.
LOOK_ONLY_ACTIONS = ("doctor", "lr_find", "show_schedule")


def _format_metrics(metrics: dict[str, float | None], prefix: str) -> str:
    """``loss 0.07384, acc 0.9851``: loss first, names without ``prefix``, four significant digits."""
    names = sorted(metrics, key=lambda name: (name != f"{prefix}loss", name))
    return ", ".join(f"{name.removeprefix(prefix)} {_format_number(metrics[name])}" for name in names)


def _format_number(value: float | None) -> str:
    return "n/a" if value is None or math.isnan(value) else f"{value:.4g}"


def _health_lines(record: list[dict[str, Any]]) -> list[str]:
    """The health block: a count by severity, then each finding with its step and the fix to try."""
    counts = ", ".join(f"{n} {severity}(s)" for severity in ("error", "warning", "info")
                       if (n := sum(f["severity"] == severity for f in record)))
    lines = [f"  health: {counts}"]
    for finding in record:
        at = "" if finding["step"] is None else f" at step {finding['step']}"
        lines += [f"    {finding['severity']} {finding['check']}{at}: {finding['message']}",
                  f"      try: {finding['fix']}"]
    return lines


def format_summary(summary: dict[str, Any]) -> str:
    """The few lines printed at the end of a run; a training run's health findings, if any, in a block of their own."""
    reason = summary["stopped_reason"]
    if reason in LOOK_ONLY_ACTIONS:
        lines = [f"lit_train: {reason} {summary['status']} in {summary['wall_time_s']:.1f} s"]
    else:
        lines = [
            f"lit_train: {summary['status']} after {summary['global_step']} steps in {summary['wall_time_s']:.1f} s"
            f" (stopped: {reason})"
        ]
        if summary["best_score"] is not None or summary["global_step"]:  # a run that trained
            lines.append(f"  best {summary['monitor']} ({summary['mode']}): {_format_number(summary['best_score'])}")
    if hint := STOP_HINTS.get(reason):
        lines.append(f"  hint: {hint}")
    if summary.get("skipped_steps"):
        lines.append(f"  skipped {summary['skipped_steps']} optimizer step(s) with a non-finite gradient")
    if summary["test_metrics"]:
        lines.append(f"  test: {_format_metrics(summary['test_metrics'], 'test/')}")
    if summary.get("health"):
        lines += _health_lines(summary["health"])
    lines.append(f"  run dir: {summary['run_dir']}")
    return "\n".join(lines)
