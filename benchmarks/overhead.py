"""Where lit_train's training step spends the time the raw loop does not: a per-step breakdown.

Runs the raw loop and lit_train's default training path (as in ``throughput.py``, the
same math) on the digits MLP, and times the parts of lit_train's step with wall-clock
timers wrapped around them for the measurement only: the model's step (forward, loss and
metrics), the backward pass, the optimizer and scheduler math, the body of each callback
hook (and of the forward hooks a callback registers), and the epoch end (with the
callbacks' epoch-end hooks). Lightning's own dispatch stays as it is; what is left of the
step is Lightning's loop itself (hook dispatch, closures, progress tracking, batch
transfer). Every number is a median over rounds, in microseconds per optimizer step; the
timers add about a microsecond per call. Both contenders get a warm-up run.

The monitors' bounds are read from these timings, not from the difference of two noisy
totals (``monitors.py`` keeps those as a cross-check): ``overhead_<monitor>_per_hook`` is
``1 + hook time / step time without it``, at batch 64: the gradient monitor (a default
callback) <= 1.03, the activation monitor (added for a third breakdown) <= 1.02.

Usage: ``python benchmarks/overhead.py [--quick]``
"""

import functools
import statistics
import time
from collections import defaultdict
from collections.abc import Callable
from typing import Any

import lightning.pytorch as L
from hydra.utils import get_object
from torch import nn
from _contenders import Workload, lit_train, raw
from _harness import command_line, markdown_table, ratio_line, report

#: (label, owner, attribute): the timed parts, each inclusive of what it calls.
_PARTS = [
    ("model step: forward, loss, metrics", "lit_train.modules.task.TaskModule", "training_step"),
    ("backward", "lightning.pytorch.core.module.LightningModule", "backward"),
    ("optimizer math (AdamW)", "torch.optim.adam", "adam"),
    ("LR scheduler step", "torch.optim.lr_scheduler.LRScheduler", "step"),
    ("zero_grad", "torch.optim.Optimizer", "zero_grad"),
    ("next batch (loader and Lightning's fetcher)", "lightning.pytorch.loops.fetchers._PrefetchDataFetcher", "__next__"),
    ("epoch end (hooks, epoch metrics, logging)", "lightning.pytorch.loops.fit_loop._FitLoop", "on_advance_end"),
    ("of which the epoch means (summed over ranks, read, logged)", "lit_train.modules.task.TaskModule", "_log_epoch"),
]


#: Callback hooks timed per step (epoch-end hooks run inside the fit loop's epoch end, timed there).
_HOOKS = tuple(name for name in vars(L.Callback) if name.startswith("on_") and not name.endswith("epoch_end")
               and name not in ("on_exception", "on_save_checkpoint", "on_load_checkpoint"))


#: The label prefix of forward hooks' time: part of the model step's, so not subtracted from the rest again.
_FORWARD_HOOKS = "of which forward hooks of "


def _timed(function: Callable[..., Any], add: Callable[[float], None]) -> Callable[..., Any]:
    @functools.wraps(function)
    def timed(*args: Any, **kwargs: Any) -> Any:
        started = time.perf_counter()
        try:
            return function(*args, **kwargs)
        finally:
            add(time.perf_counter() - started)

    return timed


class _Timers:
    """Wall-clock totals of wrapped callables, and of each callback's hook bodies."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = defaultdict(float)
        self._undo: list[Callable[[], None]] = []

    def wrap(self, label: str, owner: Any, name: str) -> None:
        original = getattr(owner, name)
        had_own = name in vars(owner)
        setattr(owner, name, _timed(original, lambda seconds: self.add(label, seconds)))
        self._undo.append(lambda: setattr(owner, name, original) if had_own else delattr(owner, name))

    def time_callbacks(self) -> None:
        """Times the bodies of every callback's hooks (epoch ends aside: those count in the epoch-end row), and of
        the forward hooks a callback registers, wrapping them on each instance once the Trainer holds its callbacks."""
        original_fit, register = L.Trainer.fit, nn.Module.register_forward_hook
        timers = self

        def fit(trainer: L.Trainer, *args: Any, **kwargs: Any) -> Any:
            for callback in trainer.callbacks:
                label = f"callback {type(callback).__name__}"
                for hook in _HOOKS:
                    if getattr(type(callback), hook) is not getattr(L.Callback, hook):
                        timers.wrap(label, callback, hook)
            return original_fit(trainer, *args, **kwargs)

        def register_forward_hook(module: nn.Module, hook: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
            owner = hook.__qualname__.split(".")[0]  # the class whose method made the hook
            timed = _timed(hook, lambda seconds: timers.add(f"{_FORWARD_HOOKS}{owner}", seconds))
            return register(module, timed, *args, **kwargs)

        L.Trainer.fit, nn.Module.register_forward_hook = fit, register_forward_hook
        self._undo.append(lambda: (setattr(L.Trainer, "fit", original_fit),
                                   setattr(nn.Module, "register_forward_hook", register)))

    def add(self, label: str, seconds: float) -> None:
        self.seconds[label] += seconds

    def restore(self) -> None:
        for undo in reversed(self._undo):
            undo()
        self._undo.clear()


def _breakdown(workload: Workload, rounds: int) -> tuple[float, float, dict[str, float]]:
    """Median seconds per step of the raw loop and of lit_train, and of each timed part of lit_train's step."""
    raw_times, lit_times, parts = [], [], defaultdict(list)
    raw(workload), lit_train(workload)  # warm-up, alike for both
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


#: Monitor -> (the overrides that add it to lit_train's run, the bound of its per-hook ratio).
MONITORS = {"GradientMonitor": ((), 1.03), "ActivationMonitor": (("callbacks=[default,activation_monitor]",), 1.02)}


def _table(workload: Workload, rounds: int) -> dict[str, float]:
    """Prints the breakdown of ``workload``; returns seconds per step by part, and of the whole lit_train step."""
    raw_step, lit_step, parts = _breakdown(workload, rounds)
    top_level = [label for label, *_ in _PARTS[:-1]]
    callbacks = sorted((label for label in parts if label.startswith("callback ")), key=lambda k: -parts[k])
    rest = lit_step - sum(parts.get(label, 0.0) for label in top_level + callbacks)
    nested = [_PARTS[-1][0], *sorted(label for label in parts if label.startswith(_FORWARD_HOOKS))]
    rows = [[label, parts.get(label, 0.0) * 1e6, parts.get(label, 0.0) / lit_step]
            for label in [*top_level, *nested, *callbacks]]
    rows.append(["Lightning's loop (the rest)", rest * 1e6, rest / lit_step])
    rows.append(["lit_train step", lit_step * 1e6, 1.0])
    rows.append(["raw loop step (the same math, no callbacks)", raw_step * 1e6, raw_step / lit_step])
    extra = f", with {' '.join(workload.lit_overrides)}" if workload.lit_overrides else ""
    print(f"### Step time breakdown, digits MLP, batch {workload.name.split('bs')[-1]}{extra} "
          f"({workload.steps} steps, medians of {rounds} rounds)\n")
    print(markdown_table(["part", "us per step", "share of lit_train's step"], rows))
    print()
    return {**parts, "step": lit_step}


def main(quick: bool = False) -> list[tuple[str, bool]]:
    rounds = 3 if quick else 5
    results = []
    for batch_size, steps in ((64, 300 if quick else 1200), (512, 150 if quick else 600)):
        parts = _table(Workload(f"digits_bs{batch_size}", (f"data.batch_size={batch_size}",), steps), rounds)
        if batch_size == 64:
            by_monitor = {"GradientMonitor": parts}
    by_monitor["ActivationMonitor"] = _table(
        Workload("digits_bs64", ("data.batch_size=64",), 300 if quick else 1200, MONITORS["ActivationMonitor"][0]),
        rounds)
    for monitor, (_, bound) in MONITORS.items():
        parts = by_monitor[monitor]
        hooks = parts.get(f"callback {monitor}", 0.0) + parts.get(f"{_FORWARD_HOOKS}{monitor}", 0.0)
        name = "".join(f"_{c.lower()}" if c.isupper() else c for c in monitor).lstrip("_")
        results.append(ratio_line(f"overhead_{name}_per_hook", 1 + hooks / (parts["step"] - hooks), "<=", bound))
    return report(results)


if __name__ == "__main__":
    command_line(main, __doc__, "fewer steps and rounds")
