"""The run's ``summary.json``: what a person or a sweep reads after training."""

import json
import math
from pathlib import Path
from typing import Any

from lit_train.training.atomic import atomic_write


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
    "non_finite": (
        "the monitored metric became NaN or infinite: lower the learning rate (optimizer.lr) or clip gradients "
        "(trainer.gradient_clip_val=1.0)"
    ),
}


def format_summary(summary: dict[str, Any]) -> str:
    """The few lines printed at the end of a run."""
    best = summary["best_score"]
    best_text = "n/a" if best is None or (isinstance(best, float) and math.isnan(best)) else f"{best:.4g}"
    lines = [
        f"lit_train: {summary['status']} after {summary['global_step']} steps in {summary['wall_time_s']:.1f} s"
        f" (stopped: {summary['stopped_reason']})",
        f"  best {summary['monitor']} ({summary['mode']}): {best_text}",
    ]
    if hint := STOP_HINTS.get(summary["stopped_reason"]):
        lines.append(f"  hint: {hint}")
    if summary.get("skipped_steps"):
        lines.append(f"  skipped {summary['skipped_steps']} optimizer step(s) with a non-finite gradient")
    if summary["test_metrics"]:
        tests = ", ".join(f"{name} {value:.4g}" for name, value in sorted(summary["test_metrics"].items()))
        lines.append(f"  test: {tests}")
    lines.append(f"  run dir: {summary['run_dir']}")
    return "\n".join(lines)
