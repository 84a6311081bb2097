"""A training run's own ``report.png``: its curves, the applied LR, its gradient norms and its health findings.

Drawn by the renderer of the sweep report (:mod:`lit_train.training.curve_plot`),
with the LR and gradient-norm panels, once the run has ended.
"""

from pathlib import Path
from typing import Any

from lit_train.training.curve_plot import Drawn, Mark, draw
from lit_train.training.curves import Curves
from lit_train.training.doctor.findings import TrainingFinding

REPORT_FILE = "report.png"
#: Lower than the sweep report's: drawn after every run, it should take a fraction of a second.
DPI = 80


def write_run_report(run_dir: Path, curves: Curves, summary: dict[str, Any], findings: list[TrainingFinding],
                     label: str) -> Path | None:
    """Draws ``run_dir/report.png``; returns its path, or ``None`` if the run logged nothing to draw.

    Args:
        run_dir: The run's directory.
        curves: Its ``metrics.csv``.
        summary: Its ``summary.json``.
        findings: Its health record: each finding with a step is a dotted line there.
        label: Its legend entry (the overrides it ran with).
    """
    marks = [Mark(f.step, f"{f.severity}: {f.check} (step {f.step})", f.severity) for f in findings
             if f.step is not None]
    problems = sum(f.severity in ("error", "warning") for f in findings)
    title = (f"{run_dir.name}: {summary['status']} after {summary['global_step']} steps, "
             + (f"{problems} health finding(s)" if problems else "healthy"))
    path = run_dir / REPORT_FILE
    drawn = Drawn(label, curves, summary["status"], marks)
    figure = draw([drawn], path, summary["monitor"], title, legend_title="run  (dotted lines: health findings)",
                  detail=True, dpi=DPI)
    return None if figure is None else path
