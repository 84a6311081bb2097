"""``python -m lit_train.sweep.report DIR``: compare the runs of a multirun or sweep in one picture and a leaderboard.

Every job directory under ``DIR`` (any folder with ``.hydra/overrides.yaml``)
is one run. The report reads each run's ``.hydra`` files, ``summary.json`` and
``metrics.csv`` (the CSV logger's) and writes into ``DIR``:

- ``report.png``: the training loss and the validation curves of every run on
  shared axes, one line per run, the legend naming each run by the overrides
  that differ between runs (those all runs share are in the title). Short runs,
  which log fewer than two per-step training losses, show the per-epoch
  training loss instead; each run has its own hollow marker shape, on every
  point of a short series, so that runs with identical curves all show (drawn
  by :mod:`lit_train.training.curve_plot`, which draws each run's own
  ``report.png`` too);
- ``leaderboard.md`` and ``leaderboard.csv``: one row per run (overrides, best
  value of the monitored metric, the step it was reached at, steps run, wall
  time, status, why it stopped, health), best first by the runs' ``monitor``/``mode``.
  The health column names the worst finding of the run's health record
  (``summary.json``'s ``health``) and how many more it has: ``overfitting``,
  ``divergence +1``; ``ok`` when it has none.

Every lit_train multirun writes this report when it ends (``hydra.callbacks.report``
in the root config), whichever sweeper ran it.
"""

import csv
import json
import math
import re
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from hydra.experimental.callback import Callback
from omegaconf import DictConfig, OmegaConf

from lit_train.training.curve_plot import Drawn, draw
from lit_train.training.curves import Curves, read_curves

if TYPE_CHECKING:
    from matplotlib.figure import Figure

PLOT_FILE = "report.png"
MARKDOWN_FILE = "leaderboard.md"
CSV_FILE = "leaderboard.csv"
#: Overrides the sweeper adds to each job for pruning: not part of what a run tried.
HIDDEN_PREFIXES = ("+trial.", "++trial.", "trial.")
COLUMNS = ("rank", "run", "overrides", "best", "best_step", "steps", "wall_time_s", "status", "stopped_reason",
           "health")
#: Severities of a health finding, worst first; ``info`` leaves a run healthy.
PROBLEMS = ("error", "warning")


@dataclass
class Run:
    """One job of a multirun, as its files describe it."""

    name: str
    path: Path
    overrides: list[str]
    summary: dict[str, Any] | None
    config: dict[str, Any]
    logged: Curves = field(default_factory=Curves)

    @property
    def curves(self) -> dict[str, list[tuple[int, float]]]:
        """Every metric of its ``metrics.csv``, by key."""
        return self.logged.series

    @property
    def status(self) -> str:
        return self.summary["status"] if self.summary else "failed"

    def best(self, monitor: str, mode: str) -> tuple[float | None, int | None]:
        """The best value of ``monitor`` and the step it was logged at."""
        points = [(value, step) for step, value in self.curves.get(monitor, []) if math.isfinite(value)]
        best_point = (min if mode == "min" else max)(points, default=None, key=lambda p: p[0]) if points else None
        value = None
        if self.summary:
            value = _number(self.summary.get("best_score"))
            value = value if value is not None else _number(self.summary.get("final_monitor_value"))
        if value is None and best_point is not None:
            value = best_point[0]
        step = best_point[1] if best_point is not None else (self.summary or {}).get("global_step")
        return value, step


def _number(value: Any) -> float | None:
    if isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value):
        return float(value)
    return None


def _job_sort_key(path: Path) -> tuple:
    return tuple((0, int(part), "") if part.isdigit() else (1, 0, part) for part in path.parts)


def find_runs(sweep_dir: Path | str) -> list[Run]:
    """Every job under ``sweep_dir``, in job order."""
    sweep_dir = Path(sweep_dir)
    runs = []
    for overrides_file in sweep_dir.rglob(".hydra/overrides.yaml"):
        job_dir = overrides_file.parent.parent
        if job_dir == sweep_dir:
            continue
        overrides = [str(o) for o in OmegaConf.to_container(OmegaConf.load(overrides_file))]
        summary_file = job_dir / "summary.json"
        config_file = job_dir / ".hydra" / "config.yaml"
        runs.append(Run(
            name=str(job_dir.relative_to(sweep_dir)),
            path=job_dir,
            overrides=[o for o in overrides if not o.startswith(HIDDEN_PREFIXES)],
            summary=json.loads(summary_file.read_text()) if summary_file.is_file() else None,
            config=OmegaConf.to_container(OmegaConf.load(config_file)) if config_file.is_file() else {},
            logged=read_curves(job_dir / "metrics.csv"),
        ))
    return sorted(runs, key=lambda run: _job_sort_key(Path(run.name)))


def _monitor_and_mode(runs: list[Run]) -> tuple[str, str]:
    for run in runs:
        source = run.summary or run.config
        if source.get("monitor") and source.get("mode") in ("min", "max"):
            return str(source["monitor"]), str(source["mode"])
    return "val/loss", "min"


def leaderboard(runs: list[Run], monitor: str, mode: str) -> list[dict[str, Any]]:
    """One row per run (keys :data:`COLUMNS`), best first; runs without a value last, in job order."""
    rows = []
    for run in runs:
        best, step = run.best(monitor, mode)
        rows.append({
            "run": run.name,
            "overrides": " ".join(run.overrides),
            "best": best,
            "best_step": step,
            "steps": (run.summary or {}).get("global_step"),
            "wall_time_s": (run.summary or {}).get("wall_time_s"),
            "status": run.status,
            "stopped_reason": (run.summary or {}).get("stopped_reason"),
            "health": _health(run.summary),
        })
    sign = 1 if mode == "min" else -1
    ordered = sorted(rows, key=lambda row: (row["best"] is None, sign * row["best"] if row["best"] is not None else 0))
    return [{"rank": i + 1, **row} for i, row in enumerate(ordered)]


def _health(summary: dict[str, Any] | None) -> str | None:
    """The worst check of the run's health record and how many more problems it has; ``None`` without a record."""
    record = (summary or {}).get("health")
    if not isinstance(record, list):
        return None
    problems = sorted((f for f in record if f.get("severity") in PROBLEMS), key=lambda f: PROBLEMS.index(f["severity"]))
    if not problems:
        return "ok"
    return problems[0]["check"] + (f" +{len(problems) - 1}" if len(problems) > 1 else "")


def _shared_overrides(runs: list[Run]) -> list[str]:
    if not runs:
        return []
    return [o for o in runs[0].overrides if all(o in run.overrides for run in runs[1:])]


def _short(override: str) -> str:
    """``optimizer.lr=0.0023457`` -> ``optimizer.lr=0.00235``: readable legends."""
    key, sep, value = override.partition("=")
    if sep and re.fullmatch(r"-?\d*\.\d+(e-?\d+)?|-?\d+e-?\d+", value):
        return f"{key}={float(value):.3g}"
    return override


def _short_keys(runs: list[Run]) -> dict[str, str]:
    """Each override key's shortest dotted suffix that no other key has: ``optimizer.lr`` -> ``lr``."""
    keys = {o.partition("=")[0] for run in runs for o in run.overrides}
    short = {}
    for key in keys:
        parts = key.lstrip("+~").split(".")
        for n in range(1, len(parts) + 1):
            suffix = ".".join(parts[-n:])
            if not any(other != key and other.lstrip("+~").split(".")[-n:] == parts[-n:] for other in keys):
                break
        short[key] = suffix
    return short


def _label(run: Run, shared: list[str], short_keys: dict[str, str]) -> str:
    own = []
    for override in run.overrides:
        if override not in shared:
            key, _, value = _short(override).partition("=")
            own.append(f"{short_keys.get(key, key)}={value}")
    return f"#{run.name} " + (" ".join(own) if own else "(defaults)")


def _format(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        return f"{value:.6g}"
    return str(value)


def write_leaderboard(rows: list[dict[str, Any]], sweep_dir: Path, monitor: str, mode: str, shared: list[str]) -> None:
    with (sweep_dir / CSV_FILE).open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=COLUMNS)
        writer.writeheader()
        writer.writerows({key: ("" if row[key] is None else row[key]) for key in COLUMNS} for row in rows)
    header = ["#", "run", "overrides", f"best {monitor} ({mode})", "at step", "steps", "wall time (s)", "status",
              "stopped", "health"]
    lines = [f"# Leaderboard: {sweep_dir.name}", ""]
    if shared:
        lines += [f"Every run: `{' '.join(shared)}`", ""]
    lines += ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for row in rows:
        own = " ".join(o for o in row["overrides"].split(" ") if o not in shared) if row["overrides"] else ""
        cells = [row["rank"], row["run"], f"`{own}`" if own else "", *(_format(row[k]) for k in COLUMNS[3:])]
        lines.append("| " + " | ".join(str(c) for c in cells) + " |")
    (sweep_dir / MARKDOWN_FILE).write_text("\n".join(lines) + "\n")


def plot(runs: list[Run], rows: list[dict[str, Any]], path: Path, monitor: str, title: str) -> "Figure | None":
    """Draws every run's curves into ``path``, in leaderboard order (``rows``); ``None`` if no run logged anything.

    See :func:`lit_train.training.curve_plot.draw`: each run's legend entry names the overrides
    it does not share with the others, its best value and, unless completed, its status.
    """
    by_name = {run.name: run for run in runs}
    shared, short_keys = _shared_overrides(runs), _short_keys(runs)
    drawn = []
    for row in rows:
        run = by_name[row["run"]]
        label = _label(run, shared, short_keys) + ("" if row["best"] is None else f"  [{row['best']:.4g}]")
        label += "" if run.status == "completed" else f" {run.status}"
        drawn.append(Drawn(label, run.logged, run.status))
    return draw(drawn, path, monitor, title,
                legend_title=f"run, overrides  [best {monitor}]  (dashed: pruned, dotted: failed)")


def write_report(sweep_dir: Path | str) -> list[Path]:
    """Writes the plot and the leaderboard of the runs under ``sweep_dir``; returns the files written.

    Raises:
        FileNotFoundError: If ``sweep_dir`` holds no job directory.
    """
    sweep_dir = Path(sweep_dir)
    runs = find_runs(sweep_dir)
    if not runs:
        raise FileNotFoundError(f"no runs under {sweep_dir} (a run is a folder with .hydra/overrides.yaml)")
    monitor, mode = _monitor_and_mode(runs)
    rows = leaderboard(runs, monitor, mode)
    shared = _shared_overrides(runs)
    write_leaderboard(rows, sweep_dir, monitor, mode, shared)
    written = [sweep_dir / MARKDOWN_FILE, sweep_dir / CSV_FILE]
    title = f"{len(runs)} runs in {sweep_dir.name}" + (f" ({' '.join(_short(o) for o in shared)})" if shared else "")
    if plot(runs, rows, sweep_dir / PLOT_FILE, monitor, title) is not None:
        written.insert(0, sweep_dir / PLOT_FILE)
    return written


class ReportCallback(Callback):
    """Hydra callback: writes the report into the sweep directory when a multirun ends."""

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        sweep_dir = Path(str(config.hydra.sweep.dir))
        try:
            written = write_report(sweep_dir)
        except (OSError, ValueError) as error:
            print(f"lit_train: no report for {sweep_dir}: {error}", file=sys.stderr)
            return
        print(f"lit_train: report of the sweep: {', '.join(str(p) for p in written)}")


def main(argv: list[str] | None = None) -> int:
    """``python -m lit_train.sweep.report DIR``."""
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1 or args[0].startswith("-"):
        print("usage: python -m lit_train.sweep.report DIR   (a multirun or sweep directory)", file=sys.stderr)
        return 2
    try:
        written = write_report(args[0])
    except FileNotFoundError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    for path in written:
        print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
