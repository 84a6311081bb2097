"""Where lit_train's training step spends the time the raw loop does not: a per-step breakdown.

Runs the raw loop and lit_train's default training path (as in ``throughput.py``)
on the digits MLP, and times the parts of lit_train's step with wall-clock timers
wrapped around them for the measurement only: the model's step (forward, loss and
metrics), the backward pass, the optimizer and scheduler math, each callback, and
the epoch end (with the callbacks' epoch-end hooks). What is left of the step is Lightning's loop itself (hook dispatch,
closures, progress tracking, batch transfer). Every number is a median over rounds,
in microseconds per optimizer step; the timers add about a microsecond per call.

This is a diagnosis, not a target: it prints no RATIO line.

Usage: ``python benchmarks/overhead.py [--quick]``
"""

import functools
import statistics
import time
from collections import defaultdict
from collections.abc import Callable
from typing import Any

import lightning.pytorch.trainer.call as lightning_call
from hydra.utils import get_object
from lightning.pytorch.callbacks import Checkpoint, EarlyStopping
from _contenders import Workload, lit_train, raw
from _harness import command_line, markdown_table

#: (label, owner, attribute): the timed parts, each inclusive of what it calls.
_PARTS = [
    ("model step: forward, loss, metrics", "lit_train.modules.task.TaskModule", "training_step"),
    ("backward", "lightning.pytorch.core.module.LightningModule", "backward"),
    ("optimizer math (AdamW)", "torch.optim.adam", "adam"),
    ("LR scheduler step", "torch.optim.lr_scheduler.LRScheduler", "step"),
    ("zero_grad", "torch.optim.Optimizer", "zero_grad"),
    ("next batch (loader and Lightning's fetcher)", "lightning.pytorch.loops.fetchers._PrefetchDataFetcher", "__next__"),
    ("epoch end (hooks, epoch metrics, logging)", "lightning.pytorch.loops.fit_loop._FitLoop", "on_advance_end"),
    ("of which self.log (model step and epoch end)", "lightning.pytorch.core.module.LightningModule", "log"),
]


class _Timers:
    """Wall-clock totals of wrapped callables, and of each callback's hook bodies."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = defaultdict(float)
        self._undo: list[Callable[[], None]] = []

    def wrap(self, label: str, owner: Any, name: str) -> None:
        original = getattr(owner, name)

        @functools.wraps(original)
        def timed(*args: Any, **kwargs: Any) -> Any:
            started = time.perf_counter()
            try:
                return original(*args, **kwargs)
            finally:
                self.seconds[label] += time.perf_counter() - started

        setattr(owner, name, timed)
        self._undo.append(lambda: setattr(owner, name, original))

    def time_callbacks(self) -> None:
        """Times each callback's hook bodies, but for epoch ends; Lightning's dispatch stays in the remainder."""
        original = lightning_call._call_callback_hooks

        def dispatch(trainer: Any, hook_name: str, *args: Any, monitoring_callbacks: bool | None = None,
                     **kwargs: Any) -> None:
            pl_module = trainer.lightning_module
            previous, pl_module._current_fx_name = pl_module._current_fx_name, hook_name
            for callback in trainer.callbacks:
                monitoring = isinstance(callback, (EarlyStopping, Checkpoint))
                if monitoring_callbacks is not None and monitoring != monitoring_callbacks:
                    continue
                started = time.perf_counter()
                getattr(callback, hook_name)(trainer, pl_module, *args, **kwargs)
                if not hook_name.endswith("epoch_end"):  # those count in the epoch-end row
                    self.seconds[f"callback {type(callback).__name__}"] += time.perf_counter() - started
            pl_module._current_fx_name = previous

        lightning_call._call_callback_hooks = dispatch
        self._undo.append(lambda: setattr(lightning_call, "_call_callback_hooks", original))

    def restore(self) -> None:
        for undo in reversed(self._undo):
            undo()
        self._undo.clear()


def _breakdown(workload: Workload, rounds: int) -> tuple[float, float, dict[str, float]]:
    """Median seconds per step of the raw loop and of lit_train, and of each timed part of lit_train's step."""
    raw_times, lit_times, parts = [], [], defaultdict(list)
    lit_train(workload)  # warm-up
    for _ in range(rounds):
        raw_times.append(raw(workload) / workload.steps)
        timers = _Timers()
        for label, owner, name in _PARTS:
            timers.wrap(label, get_object(owner), name)
        timers.time_callbacks()
        try:
            lit_times.append(lit_train(workload) / workload.steps)
        finally:
            timers.restore()
        for label, seconds in timers.seconds.items():
            parts[label].append(seconds / workload.steps)
    return statistics.median(raw_times), statistics.median(lit_times), {
        label: statistics.median(values) for label, values in parts.items()}


def main(quick: bool = False) -> list[tuple[str, bool]]:
    rounds = 3 if quick else 5
    for batch_size, steps in ((64, 300 if quick else 1200), (512, 150 if quick else 600)):
        workload = Workload(f"digits_bs{batch_size}", (f"data.batch_size={batch_size}",), steps)
        raw_step, lit_step, parts = _breakdown(workload, rounds)
        top_level = [label for label, *_ in _PARTS[:-1]]
        callbacks = sorted((label for label in parts if label.startswith("callback ")), key=lambda k: -parts[k])
        rest = lit_step - sum(parts.get(label, 0.0) for label in top_level + callbacks)
        rows = [[label, parts.get(label, 0.0) * 1e6, parts.get(label, 0.0) / lit_step]
                for label in [*top_level, _PARTS[-1][0], *callbacks]]
        rows.append(["Lightning's loop (the rest)", rest * 1e6, rest / lit_step])
        rows.append(["lit_train step", lit_step * 1e6, 1.0])
        rows.append(["raw loop step (the same math, no callbacks)", raw_step * 1e6, raw_step / lit_step])
        print(f"### Step time breakdown, digits MLP, batch {batch_size} ({steps} steps, medians of {rounds} rounds)\n")
        print(markdown_table(["part", "us per step", "share of lit_train's step"], rows))
        print()
    return []


if __name__ == "__main__":
    command_line(main, __doc__, "fewer steps and rounds")
