"""See an LR schedule before training: the LR of every optimizer step, computed without training."""

from __future__ import annotations

import copy
import os
import warnings
from collections.abc import Iterable
from typing import Any

import torch
from torch.optim import Optimizer
from torch.optim.lr_scheduler import ReduceLROnPlateau

from ._validation import check_bool, check_choice, check_int
from .warmup import Warmup

INTERVALS = ("epoch", "step")


def preview_lr(
    optimizer: Optimizer,
    scheduler: Any = None,
    *,
    total_steps: int,
    interval: str = "step",
    frequency: int = 1,
    steps_per_epoch: int | None = None,
    warmup: Warmup | None = None,
    monitor_values: Iterable[float] | None = None,
    param_group: int = 0,
) -> list[float]:
    """The LR each of the first ``total_steps`` optimizer steps trains with, stepping the scheduler as Lightning does.

    Nothing is trained and the caller's optimizer and scheduler are left untouched: the
    scheduler is deep-copied onto a stand-in optimizer that holds one scalar per param
    group and the same group hyperparameters (``lr``, ``initial_lr``, momentum, ...).
    Entry ``k`` is the LR of optimizer step ``k`` (0-based), including the
    :class:`~lit_callbacks.Warmup` factor when ``warmup`` is given, exactly as the
    callback applies it in training. The scheduler steps after optimizer step ``k``:

    * ``interval="step"``: when ``(b + 1) % frequency == 0``, where ``b`` is ``k`` within
      its epoch (``k % steps_per_epoch``, or ``k`` if ``steps_per_epoch`` is ``None``);
    * ``interval="epoch"``: after the last step of epoch ``e`` (every ``steps_per_epoch``
      steps) when ``(e + 1) % frequency == 0``.

    This matches Lightning's automatic optimization with one batch per optimizer step;
    under gradient accumulation give ``steps_per_epoch`` in optimizer steps and keep
    ``frequency=1`` for step-interval schedulers.

    Args:
        optimizer: The optimizer the scheduler was built on.
        scheduler: A ``torch.optim.lr_scheduler`` scheduler, or ``None`` for a constant LR.
            Default ``None``.
        total_steps: Number of optimizer steps to preview (the run's length).
        interval: ``"step"`` or ``"epoch"``, as in Lightning's scheduler config.
            Default ``"step"``.
        frequency: Step the scheduler every this many intervals. Default ``1``.
        steps_per_epoch: Optimizer steps per epoch; required for ``interval="epoch"``.
            Default ``None``.
        warmup: A :class:`~lit_callbacks.Warmup` to put in front of the scheduler; its
            ``ratio`` is resolved against ``total_steps``. Default ``None``.
        monitor_values: For ``ReduceLROnPlateau``: the monitored metric, one value per
            scheduler step, in order. Default ``None``.
        param_group: Which param group's LR to return. Default ``0``.

    Returns:
        ``total_steps`` floats.

    Raises:
        ValueError: If an argument is out of range or not one of the allowed values, the
            scheduler belongs to another optimizer, ``ReduceLROnPlateau`` gets too few
            ``monitor_values``, or the warmup is not shorter than ``total_steps``.
        TypeError: If an argument has the wrong type.

    Example::

        import torch
        from lit_callbacks import Warmup, preview_lr, plot_lr

        optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
        scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=1000)
        lrs = preview_lr(optimizer, scheduler, total_steps=1000, warmup=Warmup(steps=50))
        plot_lr(lrs, "schedule.png")
    """
    check_int("total_steps", total_steps, minimum=1)
    check_choice("interval", interval, INTERVALS)
    check_int("frequency", frequency, minimum=1)
    if steps_per_epoch is not None:
        check_int("steps_per_epoch", steps_per_epoch, minimum=1)
    elif interval == "epoch":
        raise ValueError("`steps_per_epoch` is required with interval='epoch'")
    if warmup is not None and not isinstance(warmup, Warmup):
        raise TypeError(f"`warmup` must be a Warmup or None, got {type(warmup).__name__}")
    check_int("param_group", param_group, minimum=0)
    if param_group >= len(optimizer.param_groups):
        raise ValueError(
            f"`param_group` must be below the optimizer's {len(optimizer.param_groups)} param group(s), got {param_group}"
        )
    if scheduler is not None and getattr(scheduler, "optimizer", None) is not optimizer:
        raise ValueError("`scheduler` was built on another optimizer than `optimizer`")
    plateau = isinstance(scheduler, ReduceLROnPlateau)
    if plateau and monitor_values is None:
        raise ValueError("ReduceLROnPlateau steps on a metric: pass `monitor_values`, one value per scheduler step")

    warmup_steps = warmup.resolve_steps(total_steps) if warmup is not None else 0
    stand_in = _stand_in(optimizer)
    schedule = copy.deepcopy(scheduler, {id(optimizer): stand_in}) if scheduler is not None else None
    values = iter(monitor_values if monitor_values is not None else ())
    lrs = []
    with warnings.catch_warnings():
        # the stand-in optimizer never steps; silence the scheduler's step-order warnings about it
        warnings.filterwarnings("ignore", message=r"Detected call of `lr_scheduler\.step\(\)`")
        warnings.filterwarnings("ignore", message=r"Seems like `optimizer\.step\(\)` has been overridden")
        for step in range(total_steps):
            factor = warmup.factor(step, warmup_steps) if warmup is not None else 1.0
            lrs.append(float(stand_in.param_groups[param_group]["lr"]) * factor)
            if schedule is None or not _scheduler_steps(step, interval, frequency, steps_per_epoch):
                continue
            if plateau:
                value = next(values, None)
                if value is None:
                    raise ValueError(f"`monitor_values` ran out after {step + 1} optimizer steps; give one per scheduler step")
                schedule.step(value)
            else:
                schedule.step()
    return lrs


def plot_lr(
    lrs: list[float],
    path: str | os.PathLike,
    *,
    title: str = "learning rate schedule",
    log_scale: bool = False,
    warmup_steps: int = 0,
    note: str | None = None,
) -> Any:
    """Save a PNG of an LR schedule (LR vs optimizer step), e.g. from :func:`preview_lr`, and return the figure.

    Args:
        lrs: LR of each optimizer step.
        path: Where to write the PNG; missing directories are created.
        title: Plot title. Default ``"learning rate schedule"``.
        log_scale: Log-scale LR axis, with every decade labelled, so that the small LRs of
            a decaying schedule (``1e-5``, ``1e-6``) stay readable; an LR of 0 is left out
            of the drawn line. Default ``False``.
        warmup_steps: Shade the first this many steps as the warmup (0: none). Default ``0``.
        note: Text drawn in the lower left of the plot, e.g. what the curve assumes.
            Default ``None``.

    Returns:
        The matplotlib ``Figure``.

    Raises:
        ImportError: If matplotlib is not installed.
        ValueError: If ``warmup_steps`` is negative.
        TypeError: If ``log_scale`` is not a bool or ``warmup_steps`` not an int.
    """
    check_bool("log_scale", log_scale)
    check_int("warmup_steps", warmup_steps, minimum=0)
    try:
        from matplotlib.figure import Figure
        from matplotlib.ticker import LogLocator
    except ImportError as error:
        raise ImportError("plot_lr needs matplotlib: `pip install 'lit-callbacks[plot]'`") from error
    figure = Figure(figsize=(6, 3.5), layout="constrained")
    axes = figure.add_subplot()
    axes.plot(range(len(lrs)), lrs, label="learning rate")
    if log_scale:
        axes.set_yscale("log", nonpositive="mask")
        axes.yaxis.set_major_locator(LogLocator(base=10.0, numticks=15))  # a label on every decade
    if warmup_steps:
        axes.axvspan(0, warmup_steps, color="C1", alpha=0.2, linewidth=0, label=f"warmup ({warmup_steps} steps)")
        axes.legend(loc="best", fontsize=8)
    if note:
        axes.text(0.02, 0.04, note, transform=axes.transAxes, ha="left", va="bottom", fontsize=8,
                  bbox={"boxstyle": "round", "facecolor": "white", "alpha": 0.85, "edgecolor": "0.7"})
    axes.set_xlabel("optimizer step")
    axes.set_ylabel("learning rate")
    axes.set_title(title, fontsize=10)
    axes.grid(True, which="major", alpha=0.3)
    os.makedirs(os.path.dirname(os.fspath(path)) or ".", exist_ok=True)
    figure.savefig(path, dpi=100)
    return figure


def _scheduler_steps(step: int, interval: str, frequency: int, steps_per_epoch: int | None) -> bool:
    if interval == "step":
        index = step % steps_per_epoch if steps_per_epoch is not None else step
        return (index + 1) % frequency == 0
    if (step + 1) % steps_per_epoch != 0:
        return False
    return ((step + 1) // steps_per_epoch) % frequency == 0


def _stand_in(optimizer: Optimizer) -> Optimizer:
    """A bare optimizer with one scalar per param group and copies of the groups' hyperparameters."""
    groups = [
        {**{key: copy.deepcopy(value) for key, value in group.items() if key != "params"}, "params": [torch.zeros(())]}
        for group in optimizer.param_groups
    ]
    return Optimizer(groups, dict(optimizer.defaults))
