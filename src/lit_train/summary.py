"""The run's ``summary.json``: what a person or a sweep reads after training."""

import json
import math
import os
import tempfile
from pathlib import Path
from typing import Any


def write_json_atomic(path: Path, data: dict[str, Any]) -> None:
    """Writes ``data`` as JSON so that ``path`` is either the old or the complete new file, never partial."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w") as f:
            json.dump(data, f, indent=2, allow_nan=True)
            f.write("\n")
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def to_number(value: Any) -> float | None:
    """A metric (tensor or number) as a float; ``None`` stays ``None``."""
    if value is None:
        return None
    return float(value.item() if hasattr(value, "item") else value)


def format_summary(summary: dict[str, Any]) -> str:
    """The few lines printed at the end of a run."""
    best = summary["best_score"]
    best_text = "n/a" if best is None or (isinstance(best, float) and math.isnan(best)) else f"{best:.4g}"
    lines = [
        f"lit_train: {summary['status']} after {summary['global_step']} steps in {summary['wall_time_s']:.1f} s"
        f" (stopped: {summary['stopped_reason']})",
        f"  best {summary['monitor']} ({summary['mode']}): {best_text}",
    ]
    if summary["test_metrics"]:
        tests = ", ".join(f"{name} {value:.4g}" for name, value in sorted(summary["test_metrics"].items()))
        lines.append(f"  test: {tests}")
    lines.append(f"  run dir: {summary['run_dir']}")
    return "\n".join(lines)
