"""Draws the logged curves of one run or many on shared axes: a run's ``report.png`` and a sweep's.

One line per run in every panel: the training loss, the validation loss and
the monitored metric; with ``detail``, also the applied LR and the total
gradient norm. Short runs, which log fewer than two per-step training losses,
show the per-epoch training loss instead; each run has its own hollow marker
shape, on every point of a short series, so that runs with identical curves
all show. Marks (a health record's findings) are dotted vertical lines at
their step, named in the legend.
"""

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from lit_train.training.curves import TRAIN_KEYS, Curve, Curves

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

#: Per-step training-loss points a run needs for its per-step curve; when most runs have fewer, the panel is per epoch.
MIN_STEP_POINTS = 2
#: A series with at most this many points has a marker on every point; a longer one on about ten of them.
FEW_POINTS = 20
#: One marker shape per run (drawn hollow): a curve drawn over an identical one still shows.
MARKERS = ("o", "s", "^", "D", "v", "P", "X", "<", ">", "*")
#: Runs drawn in colour (the first ones); the others are thin grey lines.
COLOURED = 10
#: The detail panels: the LR the LR monitor logged (its first ``lr-*`` key) and the gradient monitor's total norm.
LR_PANEL = "lr"
GRAD_NORM_KEY = "grad_norm/total"
#: How a mark of each severity is drawn.
MARK_COLOURS = {"error": "red", "warning": "darkorange", "info": "0.5"}
#: Fixed margins, in inches: measuring every label for a layout engine costs more than drawing the curves.
TOP, BOTTOM, LEFT, RIGHT, GAP = 0.6, 0.55, 0.8, 0.2, 0.75
#: The height of one legend row (and of its title) at the legend's font size, in inches.
LEGEND_ROW = 0.17


@dataclass(frozen=True)
class Mark:
    """A vertical line at ``step``, named ``text`` in the legend (a finding of the run's health record)."""

    step: int
    text: str
    severity: str = "warning"


@dataclass
class Drawn:
    """One run as the picture shows it.

    Args:
        label: Its legend entry.
        curves: What it logged.
        status: ``pruned`` is drawn dashed, ``failed`` dotted, anything else solid.
        marks: Vertical lines at steps of this run.
    """

    label: str
    curves: Curves
    status: str = "completed"
    marks: list[Mark] = field(default_factory=list)


def _train_key(runs: list[Drawn], keys: set[str]) -> str | None:
    """The training-loss column to draw: per step, or per epoch when most runs logged too few steps to draw."""
    step_key = TRAIN_KEYS[0]
    epoch_key = next((key for key in TRAIN_KEYS[1:] if key in keys), None)
    if step_key not in keys or epoch_key is None:
        return step_key if step_key in keys else epoch_key
    logged = [run for run in runs if run.curves.series]
    short = [run for run in logged if len(run.curves.finite(step_key)) < MIN_STEP_POINTS]
    return epoch_key if 2 * len(short) >= len(logged) else step_key


def _lr_key(curves: Curves) -> str | None:
    return min((key for key in curves.series if key.startswith("lr-")), default=None)


def _points(run: Drawn, key: str) -> Curve:
    if key == LR_PANEL:
        lr_key = _lr_key(run.curves)
        return run.curves.finite(lr_key) if lr_key else []
    return run.curves.finite(key)


def _panels(runs: list[Drawn], monitor: str, detail: bool) -> list[tuple[str, str]]:
    """The ``(key, title)`` of each panel with something to draw."""
    keys = {key for run in runs for key in run.curves.series}
    panels = []
    train = _train_key(runs, keys)
    if train:
        panels.append((train, "training loss" + ("" if train == TRAIN_KEYS[0] else " (epoch mean)")))
    for key in dict.fromkeys(("val/loss", monitor)):
        if key in keys:
            panels.append((key, f"validation: {key}"))
    if detail:
        if any(_lr_key(run.curves) for run in runs):
            panels.append((LR_PANEL, "learning rate (applied)"))
        if GRAD_NORM_KEY in keys:
            panels.append((GRAD_NORM_KEY, "gradient norm (total, before clipping)"))
    return panels


def _markevery(points: int, rank: int) -> int | tuple[int, int]:
    """Every point of a short series; about ten of a long one, shifted per run so that identical curves differ."""
    if points <= FEW_POINTS:
        return 1
    every = max(1, points // 10)
    return rank % every, every


def _log_scale(ax: "Axes", key: str, values: list[float]) -> None:
    """Losses, LRs and gradient norms that span more than a factor of 20 get a log axis."""
    spread = values and min(values) > 0 and max(values) / min(values) > 20
    if spread and ("loss" in key or key in (LR_PANEL, GRAD_NORM_KEY)):
        ax.set_yscale("log")


def draw(runs: list[Drawn], path: Path, monitor: str, title: str, legend_title: str, detail: bool = False,
         dpi: int = 110) -> "Figure | None":
    """Draws the curves of ``runs`` (in legend order, the first thickest) into ``path``.

    The x axis is the optimizer step, or the epoch (with whole-number ticks) when
    runs differ in steps per epoch (a batch-size sweep), so that curves stay
    comparable, or when the training panel shows the per-epoch loss.

    Args:
        runs: The runs, the first drawn thickest; ten are coloured, the rest grey.
        path: The picture to write.
        monitor: The monitored metric: a panel of its own unless it is ``val/loss``.
        title: Above the panels.
        legend_title: Above the legend.
        detail: Also draw the applied LR and the total gradient norm, where logged.
        dpi: The picture's resolution.

    Returns:
        The figure, or ``None`` if no run logged anything to draw (then nothing is written).
    """
    from matplotlib.figure import Figure
    from matplotlib.lines import Line2D
    from matplotlib.ticker import MaxNLocator

    panels = _panels(runs, monitor, detail)
    if not panels:
        return None
    logged = [run for run in runs if run.curves.series]
    per_epoch_loss = panels[0][0] in TRAIN_KEYS[1:] and all(run.curves.steps_per_epoch for run in logged)
    by_epoch = len({run.curves.steps_per_epoch for run in logged}) > 1 or per_epoch_loss
    entries = len(runs) + sum(len(run.marks) for run in runs)
    columns = 1 if entries <= 10 else 2
    legend = LEGEND_ROW * (math.ceil(entries / columns) + 1) + 0.15
    width, height = max(12, 5.5 * len(panels)), 4.4 + 0.2 * math.ceil(entries / columns)
    fig = Figure(figsize=(width, height))
    fig.subplots_adjust(left=LEFT / width, right=1 - RIGHT / width, top=1 - TOP / height,
                        bottom=(BOTTOM + legend) / height, wspace=GAP * len(panels) / (width - LEFT - RIGHT))
    axes = fig.subplots(1, len(panels), sharex=True, squeeze=False)[0]
    handles = []
    for rank, run in enumerate(runs):
        style = {"pruned": "--", "failed": ":"}.get(run.status, "-")
        coloured = rank < COLOURED
        color, width, alpha = (f"C{rank % 10}", 2.6 if rank == 0 else 1.3, 0.95) if coloured else ("0.6", 0.8, 0.6)
        marker = {"marker": MARKERS[rank % len(MARKERS)], "markersize": 6 if coloured else 4,
                  "markerfacecolor": "none", "markeredgecolor": color}
        scale = run.curves.steps_per_epoch if by_epoch and run.curves.steps_per_epoch else None

        def x(step: int) -> float:
            return (step + 1) / scale if scale else step

        for ax, (key, _) in zip(axes, panels):
            points = [(x(s), v) for s, v in _points(run, key)]
            if points:
                ax.plot(*zip(*points), style, color=color, linewidth=width, alpha=alpha, **marker,
                        markevery=_markevery(len(points), rank))
        handles.append(Line2D([], [], linestyle=style, color=color, linewidth=width, label=run.label, **marker))
        for mark in run.marks:
            mark_colour = MARK_COLOURS.get(mark.severity, "0.5")
            for ax in axes:
                ax.axvline(x(mark.step), color=mark_colour, linestyle=":", linewidth=1.4)
            handles.append(Line2D([], [], linestyle=":", color=mark_colour, linewidth=1.4, label=mark.text))
    for ax, (key, name) in zip(axes, panels):
        ax.set_title(name, y=1.0)  # a fixed position: placing it above the tick labels measures each of them
        ax.set_xlabel("epoch" if by_epoch else "step")
        if by_epoch:
            ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_ylabel(key)
        ax.grid(True, alpha=0.3)
        _log_scale(ax, key, [v for run in runs for _, v in _points(run, key)])
    fig.suptitle(title, fontsize=11)
    fig.legend(handles=handles, loc="lower center", ncol=columns, fontsize=8, frameon=False, title=legend_title,
               title_fontsize=8, borderaxespad=0.2)
    fig.savefig(path, dpi=dpi)
    return fig
