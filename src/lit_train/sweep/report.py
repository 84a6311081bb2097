"""``python -m lit_train.sweep.report DIR``: compare the runs of a multirun or sweep in one picture and a leaderboard.

Every job directory under ``DIR`` (any folder with ``.hydra/overrides.yaml``)
is one run. The report reads each run's ``.hydra`` files, ``summary.json`` and
``metrics.csv`` (the CSV logger's) and writes into ``DIR``:

- ``report.png``: the training loss and the validation curves of every run on
  shared axes, one line per run, the legend naming each run by the overrides
  that differ between runs (those all runs share are in the title). Short runs,
  which log fewer than two per-step training losses, show the per-epoch
  training loss instead; each run has its own hollow marker shape, on every
  point of a short series, so that runs with identical curves all show;
- ``leaderboard.md`` and ``leaderboard.csv``: one row per run (overrides, best
  value of the monitored metric, the step it was reached at, steps run, wall
  time, status, why it stopped), best first by the runs' ``monitor``/``mode``.

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

if TYPE_CHECKING:
    from matplotlib.figure import Figure

PLOT_FILE = "report.png"
MARKDOWN_FILE = "leaderboard.md"
CSV_FILE = "leaderboard.csv"
#: Overrides the sweeper adds to each job for pruning: not part of what a run tried.
HIDDEN_PREFIXES = ("+trial.", "++trial.", "trial.")
#: Training-loss columns of metrics.csv, in order of preference (per step first).
TRAIN_KEYS = ("train/loss_step", "train/loss", "train/loss_epoch")
#: Per-step training-loss points a run needs for its per-step curve; when most runs have fewer, the panel is per epoch.
MIN_STEP_POINTS = 2
#: A series with at most this many points has a marker on every point; a longer one on about ten of them.
FEW_POINTS = 20
#: One marker shape per run (drawn hollow): a curve drawn over an identical one still shows.
MARKERS = ("o", "s", "^", "D", "v", "P", "X", "<", ">", "*")
COLUMNS = ("rank", "run", "overrides", "best", "best_step", "steps", "wall_time_s", "status", "stopped_reason")


@dataclass
class Run:
    """One job of a multirun, as its files describe it."""

    name: str
    path: Path
    overrides: list[str]
    summary: dict[str, Any] | None
    config: dict[str, Any]
    curves: dict[str, list[tuple[int, float]]] = field(default_factory=dict)
    #: Optimizer steps per epoch (from the last step logged in epoch 0), ``None`` if unknown.
    steps_per_epoch: int | None = None

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


def _read_curves(path: Path) -> tuple[dict[str, list[tuple[int, float]]], int | None]:
    """Every metric of a CSVLogger's ``metrics.csv`` as (step, value) points, and the steps per epoch."""
    curves: dict[str, list[tuple[int, float]]] = {}
    first_epoch_end = None
    if not path.is_file():
        return curves, None
    with path.open(newline="") as f:
        for row in csv.DictReader(f):
            try:
                step = int(float(row.get("step") or ""))
            except ValueError:
                continue
            if row.get("epoch") in ("0", "0.0"):
                first_epoch_end = max(step, first_epoch_end or 0)
            for key, text in row.items():
                if key in ("step", "epoch") or not text:
                    continue
                try:
                    curves.setdefault(key, []).append((step, float(text)))
                except ValueError:
                    continue
    return curves, None if first_epoch_end is None else first_epoch_end + 1


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
        curves, steps_per_epoch = _read_curves(job_dir / "metrics.csv")
        runs.append(Run(
            name=str(job_dir.relative_to(sweep_dir)),
            path=job_dir,
            overrides=[o for o in overrides if not o.startswith(HIDDEN_PREFIXES)],
            summary=json.loads(summary_file.read_text()) if summary_file.is_file() else None,
            config=OmegaConf.to_container(OmegaConf.load(config_file)) if config_file.is_file() else {},
            curves=curves,
            steps_per_epoch=steps_per_epoch,
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
        })
    sign = 1 if mode == "min" else -1
    ordered = sorted(rows, key=lambda row: (row["best"] is None, sign * row["best"] if row["best"] is not None else 0))
    return [{"rank": i + 1, **row} for i, row in enumerate(ordered)]


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
              "stopped"]
    lines = [f"# Leaderboard: {sweep_dir.name}", ""]
    if shared:
        lines += [f"Every run: `{' '.join(shared)}`", ""]
    lines += ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for row in rows:
        own = " ".join(o for o in row["overrides"].split(" ") if o not in shared) if row["overrides"] else ""
        cells = [row["rank"], row["run"], f"`{own}`" if own else "", *(_format(row[k]) for k in COLUMNS[3:])]
        lines.append("| " + " | ".join(str(c) for c in cells) + " |")
    (sweep_dir / MARKDOWN_FILE).write_text("\n".join(lines) + "\n")


def _train_key(runs: list[Run], keys: set[str]) -> str | None:
    """The training-loss column to draw: per step, or per epoch when most runs logged too few steps to draw."""
    step_key = TRAIN_KEYS[0]
    epoch_key = next((key for key in TRAIN_KEYS[1:] if key in keys), None)
    if step_key not in keys or epoch_key is None:
        return step_key if step_key in keys else epoch_key
    logged = [run for run in runs if run.curves]
    short = [run for run in logged if sum(math.isfinite(v) for _, v in run.curves.get(step_key, [])) < MIN_STEP_POINTS]
    return epoch_key if 2 * len(short) >= len(logged) else step_key


def _panels(runs: list[Run], monitor: str) -> list[tuple[str, str]]:
    keys = {key for run in runs for key in run.curves}
    panels = []
    train = _train_key(runs, keys)
    if train:
        panels.append((train, "training loss" + ("" if train == TRAIN_KEYS[0] else " (epoch mean)")))
    for key in dict.fromkeys(("val/loss", monitor)):
        if key in keys:
            panels.append((key, f"validation: {key}"))
    return panels


def _markevery(points: int, rank: int) -> int | tuple[int, int]:
    """Every point of a short series; about ten of a long one, shifted per run so that identical curves differ."""
    if points <= FEW_POINTS:
        return 1
    every = max(1, points // 10)
    return rank % every, every


#: Runs drawn in colour (best first); the others are thin grey lines.
COLOURED = 10


def plot(runs: list[Run], rows: list[dict[str, Any]], path: Path, monitor: str, title: str) -> "Figure | None":
    """Draws every run's curves into ``path`` and returns the figure; ``None`` if no run logged anything to draw.

    The x axis is the optimizer step, or the epoch (with whole-number ticks) when
    runs differ in steps per epoch (a batch-size sweep), so that curves stay
    comparable, or when the training panel shows the per-epoch loss.
    """
    from matplotlib.figure import Figure
    from matplotlib.lines import Line2D
    from matplotlib.ticker import MaxNLocator

    panels = _panels(runs, monitor)
    if not panels:
        return None
    by_name = {run.name: run for run in runs}
    ordered = [by_name[row["run"]] for row in rows]  # legend in leaderboard order
    shared, short_keys = _shared_overrides(runs), _short_keys(runs)
    logged = [run for run in runs if run.curves]
    per_epoch_loss = panels[0][0] in TRAIN_KEYS[1:] and all(run.steps_per_epoch for run in logged)
    by_epoch = len({run.steps_per_epoch for run in logged}) > 1 or per_epoch_loss
    columns = 1 if len(ordered) <= 10 else 2
    fig = Figure(figsize=(max(12, 5.5 * len(panels)), 4.4 + 0.2 * math.ceil(len(ordered) / columns)),
                 layout="constrained")
    axes = fig.subplots(1, len(panels), sharex=True, squeeze=False)[0]
    handles = []
    for rank, run in enumerate(ordered):
        style = {"pruned": "--", "failed": ":"}.get(run.status, "-")
        coloured = rank < COLOURED
        color, width, alpha = (f"C{rank % 10}", 2.6 if rank == 0 else 1.3, 0.95) if coloured else ("0.6", 0.8, 0.6)
        marker = {"marker": MARKERS[rank % len(MARKERS)], "markersize": 6 if coloured else 4,
                  "markerfacecolor": "none", "markeredgecolor": color}
        scale = run.steps_per_epoch if by_epoch and run.steps_per_epoch else None
        for ax, (key, _) in zip(axes, panels):
            points = [((s + 1) / scale if scale else s, v) for s, v in run.curves.get(key, []) if math.isfinite(v)]
            if points:
                ax.plot(*zip(*points), style, color=color, linewidth=width, alpha=alpha, **marker,
                        markevery=_markevery(len(points), rank))
        best = rows[rank]["best"]
        label = _label(run, shared, short_keys) + ("" if best is None else f"  [{best:.4g}]")
        label += "" if run.status == "completed" else f" {run.status}"
        handles.append(Line2D([], [], linestyle=style, color=color, linewidth=width, label=label, **marker))
    for ax, (key, name) in zip(axes, panels):
        ax.set_title(name)
        ax.set_xlabel("epoch" if by_epoch else "step")
        if by_epoch:
            ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_ylabel(key)
        ax.grid(True, alpha=0.3)
        values = [v for run in runs for _, v in run.curves.get(key, []) if math.isfinite(v)]
        if "loss" in key and values and min(values) > 0 and max(values) / min(values) > 20:
            ax.set_yscale("log")
    fig.suptitle(title, fontsize=11)
    fig.legend(handles=handles, loc="outside lower center", ncol=columns, fontsize=8, frameon=False,
               title=f"run, overrides  [best {monitor}]  (dashed: pruned, dotted: failed)", title_fontsize=8)
    fig.savefig(path, dpi=110)
    return fig


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
