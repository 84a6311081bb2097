"""The LR range test: ramp the LR over a few batches, record the smoothed loss, suggest an LR."""

from __future__ import annotations

import copy
import importlib.util
import math
import os
from collections.abc import Iterator, Mapping, Sequence
from itertools import chain
from typing import Any

import lightning.pytorch as L
import torch
from lightning.pytorch.callbacks import Callback
from lightning.pytorch.strategies import DDPStrategy, SingleDeviceStrategy
from lightning.pytorch.utilities import CombinedLoader, rank_zero_info, rank_zero_only, rank_zero_warn
from lightning.pytorch.utilities.exceptions import MisconfigurationException
from lightning.pytorch.utilities.seed import isolate_rng
from lightning.pytorch.utilities.signature_utils import is_param_in_hook_signature
from torch import Tensor
from torch.optim import Optimizer
from torch.optim.lr_scheduler import CyclicLR, OneCycleLR
from typing_extensions import override

from ._compat import (
    TunerExitException,
    drop_logged_results,
    fresh_loader,
    generate_state_key,
    last_lrs,
    nested_schedulers,
    on_before_batch_transfer,
    running_hook,
)
from ._deprecation import renamed_arguments
from ._validation import check_bool, check_choice, check_int, check_number


@renamed_arguments(num_steps="num_training_steps", divergence_threshold="early_stop_threshold")
class LRFinder(Callback):
    """Run the LR range test when training starts, then (optionally) train with its suggestion.

    Before the first real training step, the finder trains for up to ``num_training_steps``
    optimizer steps while raising the LR of every param group from ``min_lr`` to
    ``max_lr`` (``exponential``: ``min_lr * (max_lr / min_lr) ** (i / (n - 1))`` with
    ``n = num_training_steps``;
    ``linear``: evenly spaced). It records the loss of each step smoothed by a debiased
    exponential moving average (``avg = s * avg + (1 - s) * loss``, recorded as
    ``avg / (1 - s ** (i + 1))`` with ``s = smoothing``) and stops early once the smoothed
    loss exceeds ``early_stop_threshold`` times the best one so far, or the loss is not
    finite. Then it puts back, bitwise and in memory (no checkpoint files), everything the
    test touched: model parameters and buffers, the optimizer's param groups and state,
    scheduler and AMP grad-scaler state, the torch/CUDA/numpy/Python RNG states and the
    random generators of the train dataloader. The training dataloader is read through a
    fresh iterator, so the real run starts at its first batch as if the test had not
    happened. A map-style dataset (or an ``IterableDataset`` that yields the same stream on
    every ``iter()``) is assumed.

    The test drives the steps itself: for each step it calls ``training_step`` (through
    the strategy, so DDP synchronizes gradients and the precision plugin's autocast
    applies), backward (scaled under fp16 AMP), the module's
    ``configure_gradient_clipping`` with the trainer's clipping settings, and
    ``optimizer.step()``. With ``accumulate_grad_batches=n`` every step accumulates ``n``
    batches. Other callbacks and the module's batch/optimizer hooks are not called, and
    nothing is logged, during the test. Under DDP the loss of every step is averaged over
    the ranks, so all ranks stop on the same step and apply the same suggestion.

    Suggestion methods (on the finite part of the smoothed curve):

    * ``"steepest"``: where the loss falls fastest. Only the stretch from the start of the
      clear descent (the last point still above ``min + 0.9 * (start - min)``, where
      ``start`` is the median loss of the first tenth of the curve) to the loss minimum is
      searched, and the slope of loss vs ``log(lr)`` is measured over a window spanning a
      quarter of that stretch (at least one point, at most one decade of LR), so noise in
      the flat start cannot win. The suggestion is the LR at the start of the steepest
      window.
    * ``"valley"``: fastai's valley: the LR halfway through the longest strictly
      descending run of the curve (longest decreasing subsequence).
    * ``"minimum"``: the LR at the loss minimum divided by 10.

    After the test, :attr:`suggestion`, :attr:`lrs` and :attr:`losses` are set and the
    suggestion is printed on rank zero. With ``apply=True`` the suggestion becomes the LR
    of every param group of the live optimizer and schedulers, so it also works when
    ``configure_optimizers`` built them with ``functools.partial``: each group's LR
    fields are scaled by ``suggestion / reference``. The reference is the group's
    ``initial_lr`` (or ``lr``), so ``lr``, ``initial_lr``, the schedulers' ``base_lrs``
    and ``_last_lr`` all move with it; this handles every scheduler whose LRs are
    proportional to its base LR (StepLR, MultiStepLR, ExponentialLR, CosineAnnealingLR
    with ``eta_min=0``, CosineAnnealingWarmRestarts, LinearLR, ConstantLR, LambdaLR,
    PolynomialLR, ReduceLROnPlateau, and SequentialLR/ChainedScheduler of these). For
    OneCycleLR the suggestion becomes ``max_lr`` (``initial_lr`` and ``min_lr`` keep
    their ratios to it); for CyclicLR it becomes ``max_lr`` and ``base_lr`` keeps its
    ratio. Absolute floors (``eta_min``, ``min_lr`` of ReduceLROnPlateau) are unchanged.

    With ``plot=True`` (and matplotlib installed) rank zero saves ``lr_finder.png``
    (:meth:`figure`: smoothed loss vs LR, log x-axis, suggestion marked and in the title,
    an exploding end cut off) into ``trainer.log_dir`` (``trainer.default_root_dir``,
    the working directory unless set, when there is no logger) and adds the figure to every logger whose experiment has ``add_figure`` (TensorBoard) as
    ``lr_finder``; other loggers are skipped. Nothing else is logged.

    The callback's state (whether the test ran, its curve and suggestion) is saved in
    checkpoints. A run resumed from a checkpoint does not test again: it keeps the LR
    stored in the checkpoint's optimizer state. The test is also skipped under
    ``fast_dev_run``. To only run the test, use :func:`lr_find`.

    The EMA lags the raw loss by tens of steps, which moves the smoothed curve towards
    higher LRs; the suggestion rules are calibrated for the default 100 steps over
    1e-7 .. 10. With far fewer steps over the same range, lower ``smoothing``.

    The arguments Lightning's ``LearningRateFinder`` also has carry its names and meaning
    (``min_lr``, ``max_lr``, ``num_training_steps``, ``mode``, ``early_stop_threshold``).
    ``apply`` is not its ``update_attr``: it sets the LR on the live optimizer and
    schedulers, not on a module attribute that ``configure_optimizers`` reads. The old
    names ``num_steps`` and ``divergence_threshold`` still work for this release, with a
    ``DeprecationWarning``.

    Args:
        min_lr: LR of the first step. Default ``1e-7``.
        max_lr: LR of the last step. Default ``10.0``.
        num_training_steps: Most optimizer steps the test takes. Default ``100``.
        mode: ``"exponential"`` or ``"linear"`` LR ramp. Default ``"exponential"``.
        method: ``"steepest"``, ``"valley"`` or ``"minimum"``. Default ``"steepest"``.
        apply: Set the suggestion on the optimizer and schedulers. Default ``True``.
        plot: Save and log the loss-vs-LR plot. Default ``True``.
        smoothing: EMA factor ``s`` of the recorded loss, in ``[0, 1)``. Default ``0.98``.
        early_stop_threshold: Stop when the smoothed loss exceeds this many times the best
            smoothed loss (assumes a positive loss); ``None`` never stops early.
            Default ``4.0``.

    Attributes:
        suggestion: The suggested LR, or ``None`` before the test or when the curve has no
            descent to suggest from.
        lrs: LR of each recorded step.
        losses: Smoothed loss of each recorded step.
        plot_path: Path of the saved plot, or ``None``.

    Raises:
        ValueError: If an argument is out of range or not one of the allowed values.
        TypeError: If an argument has the wrong type, or both a deprecated name and its
            new name are given.
        lightning.pytorch.utilities.exceptions.MisconfigurationException: When the test
            starts, if the module uses manual optimization, has no or several optimizers,
            or the strategy is neither single-device nor DDP.

    Example::

        import lightning.pytorch as L
        from lit_callbacks import LRFinder

        finder = LRFinder(num_training_steps=50)
        trainer = L.Trainer(max_epochs=3, callbacks=[finder])
        trainer.fit(model, datamodule=dm)  # range test, apply the suggestion, train
        print(finder.suggestion)
    """

    MODES = ("exponential", "linear")
    METHODS = ("minimum", "steepest", "valley")
    PLOT_NAME = "lr_finder.png"

    def __init__(
        self,
        min_lr: float = 1e-7,
        max_lr: float = 10.0,
        num_training_steps: int = 100,
        mode: str = "exponential",
        method: str = "steepest",
        apply: bool = True,
        plot: bool = True,
        smoothing: float = 0.98,
        early_stop_threshold: float | None = 4.0,
    ) -> None:
        check_number("min_lr", min_lr, minimum=0.0, strict=True)
        check_number("max_lr", max_lr, minimum=0.0, strict=True)
        if not max_lr > min_lr:
            raise ValueError(f"`max_lr` must be above `min_lr`, got min_lr={min_lr!r}, max_lr={max_lr!r}")
        check_int("num_training_steps", num_training_steps, minimum=10)
        check_choice("mode", mode, self.MODES)
        check_choice("method", method, self.METHODS)
        check_bool("apply", apply)
        check_bool("plot", plot)
        check_number("smoothing", smoothing, minimum=0.0)
        if not smoothing < 1.0:
            raise ValueError(f"`smoothing` must be < 1, got {smoothing!r}")
        if early_stop_threshold is not None:
            check_number("early_stop_threshold", early_stop_threshold, minimum=1.0, strict=True)
        self.min_lr = min_lr
        self.max_lr = max_lr
        self.num_training_steps = num_training_steps
        self.mode = mode
        self.method = method
        self.apply = apply
        self.plot = plot
        self.smoothing = smoothing
        self.early_stop_threshold = early_stop_threshold

        self.suggestion: float | None = None
        self.lrs: list[float] = []
        self.losses: list[float] = []
        self.plot_path: str | None = None
        self._done = False
        self._exit_after_test = False  # set by `lr_find`: end `fit` right after the test

    @property
    @override
    def state_key(self) -> str:
        # `num_steps` is the argument's old name, kept in the key so that older checkpoints still restore.
        return generate_state_key(
            self,
            min_lr=self.min_lr,
            max_lr=self.max_lr,
            num_steps=self.num_training_steps,
            mode=self.mode,
            method=self.method,
        )

    @override
    def state_dict(self) -> dict[str, Any]:
        return {"done": self._done, "suggestion": self.suggestion, "lrs": list(self.lrs), "losses": list(self.losses)}

    @override
    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self._done = state_dict.get("done", False)
        self.suggestion = state_dict.get("suggestion")
        self.lrs = list(state_dict.get("lrs", []))
        self.losses = list(state_dict.get("losses", []))

    def schedule(self) -> list[float]:
        """The LR of each of the ``num_training_steps`` test steps."""
        last = self.num_training_steps - 1
        if self.mode == "linear":
            return [self.min_lr + (self.max_lr - self.min_lr) * i / last for i in range(self.num_training_steps)]
        return [self.min_lr * (self.max_lr / self.min_lr) ** (i / last) for i in range(self.num_training_steps)]

    @override
    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if self._done:
            rank_zero_info("LRFinder: the range test already ran for this run; the optimizer keeps its restored LR.")
        elif trainer.ckpt_path is not None:
            rank_zero_info("LRFinder: resumed from a checkpoint; skipping the range test, the checkpoint's LR is kept.")
        elif trainer.fast_dev_run:
            rank_zero_warn("LRFinder: skipping the range test because `fast_dev_run` is enabled.")
        else:
            self._find(trainer, pl_module)
        if self._exit_after_test:
            raise TunerExitException()

    def _find(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        optimizer = _single_optimizer(trainer, pl_module)
        loader = trainer.train_dataloader
        if loader is None:
            raise MisconfigurationException("LRFinder needs a training dataloader, but the trainer has none.")
        snapshot = _Snapshot(trainer, pl_module, optimizer, loader)
        try:
            with isolate_rng():
                lrs, losses = self._range_test(trainer, pl_module, optimizer, loader)
        finally:
            snapshot.restore()
            drop_logged_results(trainer)  # what `self.log` in `training_step` recorded during the test
        self.lrs, self.losses = trainer.strategy.broadcast((lrs, losses), src=0)
        found = suggest_lr(self.lrs, self.losses, self.method)
        self.suggestion = found[0] if found is not None else None
        self._done = True
        self._announce()
        if self.apply and self.suggestion is not None:
            apply_lr(optimizer, [config.scheduler for config in trainer.lr_scheduler_configs], self.suggestion)
        if self.plot:
            self._plot(trainer)

    def _range_test(
        self, trainer: L.Trainer, pl_module: L.LightningModule, optimizer: Optimizer, loader: Any
    ) -> tuple[list[float], list[float]]:
        batches = _batches(loader)
        trainer.model.train()
        lrs: list[float] = []
        losses: list[float] = []
        average, best = 0.0, math.inf
        for step, lr in enumerate(self.schedule()):
            for group in optimizer.param_groups:
                _set_lr(group, "lr", lr)
            loss = _train_step(trainer, pl_module, optimizer, batches)
            if not math.isfinite(loss):
                break
            average = self.smoothing * average + (1.0 - self.smoothing) * loss
            smoothed = average / (1.0 - self.smoothing ** (step + 1))
            lrs.append(lr)
            losses.append(smoothed)
            best = min(best, smoothed)
            if self.early_stop_threshold is not None and smoothed > self.early_stop_threshold * best:
                break
        return lrs, losses

    def _announce(self) -> None:
        if self.suggestion is None:
            rank_zero_warn(
                f"LRFinder: no suggestion, the loss did not descend over the {len(self.losses)} recorded steps"
                f" (LR {self.min_lr:.3g} .. {self.max_lr:.3g}); the optimizer keeps its LR. Widen"
                " `min_lr`/`max_lr` or raise `num_training_steps`."
            )
            return
        applied = "; set on the optimizer" if self.apply else ""
        rank_zero_info(
            f"LRFinder: suggested lr = {self.suggestion:.4g} (method={self.method!r}, {len(self.losses)} steps,"
            f" LR {self.lrs[0]:.3g} .. {self.lrs[-1]:.3g}){applied}"
        )

    def _plot(self, trainer: L.Trainer) -> None:
        if importlib.util.find_spec("matplotlib") is None:
            rank_zero_warn("LRFinder: `plot=True` needs matplotlib (`pip install matplotlib`); skipping the plot.")
            return
        directory = trainer.log_dir or trainer.default_root_dir  # `log_dir` must be read on every rank
        self.plot_path = os.path.join(directory, self.PLOT_NAME)
        self._save_plot(trainer, self.plot_path)

    @rank_zero_only
    def _save_plot(self, trainer: L.Trainer, path: str) -> None:
        os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
        figure = self.figure()
        figure.savefig(path, dpi=100)
        for logger in trainer.loggers:
            experiment = getattr(logger, "experiment", None)
            if callable(getattr(experiment, "add_figure", None)):
                experiment.add_figure("lr_finder", figure, global_step=trainer.global_step)

    def figure(self) -> Any:
        """A matplotlib ``Figure`` of the smoothed loss vs LR (log x-axis), suggestion marked and in the title.

        Non-finite points are left out. When the loss explodes at the end, the y axis stops
        at the starting loss plus its drop to the minimum (the drop counted as at least 10%
        of the starting loss), so the descent keeps the height of the plot. The starting
        loss is the median of the first tenth of the curve, as for ``"steepest"``.
        """
        from matplotlib.figure import Figure

        points = [(lr, loss) for lr, loss in zip(self.lrs, self.losses) if math.isfinite(lr) and math.isfinite(loss)]
        lrs, losses = [lr for lr, _ in points], [loss for _, loss in points]
        figure = Figure(figsize=(6, 4))
        axes = figure.add_subplot()
        axes.plot(lrs, losses)
        axes.set_xscale("log")
        axes.set_xlabel("learning rate")
        axes.set_ylabel("smoothed training loss")
        found = "no suggestion" if self.suggestion is None else f"suggested lr {self.suggestion:.3g} ({self.method})"
        axes.set_title(f"LR range test: {found}")
        if self.suggestion is not None:
            axes.axvline(self.suggestion, color="red", linestyle="--", label=f"suggestion {self.suggestion:.3g}")
            axes.legend()
        top = _loss_axis_top(losses)
        if top is not None and max(losses) > top:
            low = min(losses)
            axes.set_ylim(low - 0.05 * (top - low), top)
        figure.tight_layout()
        return figure


def _loss_axis_top(losses: list[float]) -> float | None:
    """The starting loss plus its drop to the minimum (at least 10% of it); ``None`` for fewer than two losses."""
    if len(losses) < 2:
        return None
    head = sorted(losses[: max(1, len(losses) // 10)])
    start = head[len(head) // 2]
    return start + max(start - min(losses), 0.1 * abs(start), 1e-12)


def lr_find(
    trainer: L.Trainer,
    model: L.LightningModule,
    datamodule: L.LightningDataModule | None = None,
    train_dataloaders: Any = None,
    **finder_kwargs: Any,
) -> LRFinder:
    """Run only the LR range test and return the finder; the model is not trained.

    Calls ``trainer.fit`` with an :class:`LRFinder` in front of the trainer's callbacks
    and the sanity check turned off, and ends the fit right after the test. The model's
    weights come back exactly as they were, so the same model can be trained afterwards
    (a later ``fit`` calls ``configure_optimizers`` again; pass ``finder.suggestion`` to it).

    Args:
        trainer: The trainer to run the test with (its strategy, precision, gradient
            clipping and accumulation are used).
        model: The LightningModule to test.
        datamodule: Optional datamodule providing the training data.
        train_dataloaders: Optional training dataloader(s), as for ``trainer.fit``.
        **finder_kwargs: Arguments of :class:`LRFinder` (``min_lr``, ``num_training_steps``, ...).

    Returns:
        The finder, with ``suggestion``, ``lrs`` and ``losses`` set.

    Example::

        from lit_callbacks import lr_find

        finder = lr_find(L.Trainer(logger=False), model, datamodule=dm, num_training_steps=50)
        model.hparams.lr = finder.suggestion
    """
    finder = LRFinder(**finder_kwargs)
    finder._exit_after_test = True
    sanity_steps = trainer.num_sanity_val_steps
    trainer.callbacks = [finder, *trainer.callbacks]
    trainer.num_sanity_val_steps = 0
    try:
        trainer.fit(model, train_dataloaders=train_dataloaders, datamodule=datamodule)
    finally:
        trainer.callbacks = [callback for callback in trainer.callbacks if callback is not finder]
        trainer.num_sanity_val_steps = sanity_steps
    return finder


def suggest_lr(lrs: Sequence[float], losses: Sequence[float], method: str = "steepest") -> tuple[float, int] | None:
    """Suggest an LR from a range-test curve.

    Args:
        lrs: Increasing LRs, one per step.
        losses: Smoothed loss at each LR. The curve is cut at its first non-finite loss.
        method: ``"steepest"``, ``"valley"`` or ``"minimum"`` (see :class:`LRFinder`).
            Default ``"steepest"``.

    Returns:
        ``(lr, index)``: the suggested LR and the index of the recorded point it sits on
        (for ``"minimum"``, the point nearest to it), or ``None`` if the curve has fewer
        than three finite points or never descends.

    Raises:
        ValueError: If ``method`` is not one of the allowed values or the lengths differ.
    """
    check_choice("method", method, LRFinder.METHODS)
    if len(lrs) != len(losses):
        raise ValueError(f"`lrs` and `losses` must have the same length, got {len(lrs)} and {len(losses)}")
    finite = next((i for i, loss in enumerate(losses) if not math.isfinite(loss)), len(losses))
    lrs, losses = [float(lr) for lr in lrs[:finite]], [float(loss) for loss in losses[:finite]]
    if len(losses) < 3:
        return None
    lowest = min(range(len(losses)), key=losses.__getitem__)
    if method == "minimum":
        target = lrs[lowest] / 10.0
        index = min(range(len(lrs)), key=lambda i: abs(math.log(lrs[i] / target)))
        return target, index
    index = _steepest_index(lrs, losses, lowest) if method == "steepest" else _valley_index(losses)
    return (lrs[index], index) if index is not None else None


def _steepest_index(lrs: list[float], losses: list[float], lowest: int) -> int | None:
    """Start of the window with the steepest fall of loss vs log(lr), searched from the start of the descent."""
    head = sorted(losses[: max(1, len(losses) // 10)])
    drop = head[len(head) // 2] - losses[lowest]
    if lowest == 0 or not drop > 0:
        return None
    above = losses[lowest] + 0.9 * drop
    begin = max(i for i in range(lowest + 1) if losses[i] >= above or i == 0)
    if lowest - begin < 2:
        return None
    log_lrs = [math.log(lr) for lr in lrs]
    decades = (log_lrs[lowest] - log_lrs[begin]) / math.log(10.0)
    points_per_decade = (lowest - begin) / decades if decades > 0 else float(lowest - begin)
    window = max(1, min((lowest - begin) // 4, int(points_per_decade)))
    slopes = [
        ((losses[i + window] - losses[i]) / (log_lrs[i + window] - log_lrs[i]), i)
        for i in range(begin, lowest - window + 1)
        if log_lrs[i + window] > log_lrs[i]
    ]
    return min(slopes)[1] if slopes else None


def _valley_index(losses: list[float]) -> int | None:
    """fastai's valley: halfway through the longest strictly descending run (longest decreasing subsequence)."""
    lengths = [1] * len(losses)
    best_end, best_start = 0, 0
    for i in range(1, len(losses)):
        for j in range(i):
            if losses[i] < losses[j] and lengths[i] < lengths[j] + 1:
                lengths[i] = lengths[j] + 1
        if lengths[i] > lengths[best_end]:
            best_end, best_start = i, i - lengths[i]
    if lengths[best_end] < 2:
        return None
    sections = (best_end - best_start) / 3
    return max(0, best_start + int(sections) + int(sections / 2))


def apply_lr(optimizer: Optimizer, schedulers: Sequence[Any], lr: float) -> None:
    """Make ``lr`` the LR of every param group of ``optimizer`` and of its ``schedulers``, in place.

    Each group's LR fields are scaled by ``lr / reference``: the reference is the group's
    ``max_lr`` under OneCycleLR, the scheduler's ``max_lrs`` entry under CyclicLR, and the
    group's ``initial_lr`` (or ``lr``) otherwise. Scaled are the group's ``lr``,
    ``initial_lr`` (and OneCycleLR's ``max_lr``/``min_lr``), and every scheduler's
    ``base_lrs``, ``_last_lr`` and CyclicLR's ``max_lrs``, including the schedulers inside
    SequentialLR/ChainedScheduler. Call it before the schedulers have stepped.

    Args:
        optimizer: The live optimizer.
        schedulers: The live schedulers of that optimizer (may be empty).
        lr: The new LR.
    """
    flat = list(_flatten_schedulers(schedulers))
    one_cycle = any(isinstance(scheduler, OneCycleLR) for scheduler in flat)
    cyclic = next((scheduler for scheduler in flat if isinstance(scheduler, CyclicLR)), None)
    for index, group in enumerate(optimizer.param_groups):
        if one_cycle:
            reference = float(group["max_lr"])
        elif cyclic is not None:
            reference = float(cyclic.max_lrs[index])
        else:
            reference = float(group.get("initial_lr", group["lr"]))
        ratio = lr / reference if reference > 0 else None

        def scaled(value: Any, ratio: float | None = ratio) -> float:
            return lr if ratio is None else float(value) * ratio

        for key in ("lr", "initial_lr", "max_lr", "min_lr") if one_cycle else ("lr", "initial_lr"):
            if key in group:
                _set_lr(group, key, scaled(group[key]))
        for scheduler in flat:
            for values in (getattr(scheduler, "base_lrs", None), last_lrs(scheduler), getattr(scheduler, "max_lrs", None)):
                if isinstance(values, list) and index < len(values):
                    values[index] = scaled(values[index])


def _flatten_schedulers(schedulers: Sequence[Any]) -> Iterator[Any]:
    for scheduler in schedulers:
        yield scheduler
        yield from _flatten_schedulers(nested_schedulers(scheduler))


def _set_lr(group: dict[str, Any], key: str, value: float) -> None:
    if isinstance(group[key], Tensor):
        group[key].fill_(value)
    else:
        group[key] = value


def _single_optimizer(trainer: L.Trainer, pl_module: L.LightningModule) -> Optimizer:
    strategy = trainer.strategy
    if not isinstance(strategy, (SingleDeviceStrategy, DDPStrategy)) or strategy.handles_gradient_accumulation:
        raise MisconfigurationException(
            f"LRFinder supports single-device and DDP strategies, got {type(strategy).__name__}. Run the range test"
            " on one device (`lr_find(L.Trainer(devices=1), model, datamodule)`) and pass the suggestion to your"
            " optimizer."
        )
    if not pl_module.automatic_optimization:
        raise MisconfigurationException(
            "LRFinder drives the optimizer itself and needs automatic optimization, but"
            " `automatic_optimization` is False. Run the range test on a module with automatic optimization, or"
            " sweep the LR yourself."
        )
    if len(trainer.optimizers) != 1:
        raise MisconfigurationException(
            f"LRFinder tunes exactly one optimizer, `configure_optimizers` returned {len(trainer.optimizers)}."
            " Return a single optimizer (one param group per LR you need)."
        )
    return trainer.optimizers[0]


def _batches(loader: Any) -> Iterator[tuple[int, Any]]:
    """``(batch_idx, batch)`` pairs from fresh passes over the train dataloader(s), forever."""
    if isinstance(loader, (Mapping, Sequence)):
        loader = CombinedLoader(loader, "max_size_cycle")
    elif getattr(loader, "persistent_workers", False) and getattr(loader, "num_workers", 0) > 0:
        loader = fresh_loader(loader)  # `iter()` on the loader itself would reset the trainer's iterator
    while True:
        batch_idx = -1
        for batch_idx, item in enumerate(loader):
            yield batch_idx, (item[0] if isinstance(loader, CombinedLoader) else item)
        if batch_idx < 0:
            raise MisconfigurationException("LRFinder: the training dataloader yielded no batches.")


# The test runs its steps itself rather than through Lightning's fit loop, as Lightning's own finder
# does: the loop would call every callback and batch hook, log, advance the step counters and the
# dataloader, all of which the test must leave untouched, and Lightning's finder then needs a
# checkpoint file and private loop resets to undo it. Lightning has no public call for one step
# outside its loop; the two pieces of that step this needs come from `_compat`.
def _train_step(trainer: L.Trainer, pl_module: L.LightningModule, optimizer: Optimizer, batches: Iterator) -> float:
    """One optimizer step of the range test; returns the loss averaged over micro-batches and ranks."""
    accumulate = trainer.accumulate_grad_batches
    scaler = _grad_scaler(trainer)
    with_batch_idx = is_param_in_hook_signature(pl_module.training_step, "batch_idx", min_args=2)
    optimizer.zero_grad(set_to_none=True)
    total = torch.zeros((), device=trainer.strategy.root_device)
    for _ in range(accumulate):
        batch_idx, batch = next(batches)
        batch = trainer.precision_plugin.convert_input(batch)
        batch = on_before_batch_transfer(pl_module, batch)
        batch = trainer.strategy.batch_to_device(batch, dataloader_idx=0)
        with running_hook(pl_module, "training_step"):  # so that `self.log` in it is accepted
            output = trainer.strategy.training_step(*((batch, batch_idx) if with_batch_idx else (batch,)))
        loss = output.get("loss") if isinstance(output, Mapping) else output
        if not isinstance(loss, Tensor):
            raise MisconfigurationException(
                "LRFinder needs `training_step` to return the loss as a Tensor or in a dict under 'loss',"
                f" got {type(output).__name__}."
            )
        trainer.strategy.pre_backward(loss)
        scaled = loss / accumulate
        (scaler.scale(scaled) if scaler is not None else scaled).backward()
        total = total + loss.detach().float()
    if scaler is not None:
        scaler.unscale_(optimizer)
    pl_module.configure_gradient_clipping(optimizer, trainer.gradient_clip_val, trainer.gradient_clip_algorithm)
    if scaler is not None:
        scaler.step(optimizer)
        scaler.update()
    else:
        optimizer.step()
    mean = trainer.strategy.reduce(total / accumulate, reduce_op="mean")
    return float(mean)


def _grad_scaler(trainer: L.Trainer) -> Any:
    scaler = getattr(trainer.precision_plugin, "scaler", None)
    return scaler if scaler is not None and scaler.is_enabled() else None


class _Snapshot:
    """In-memory copy of everything the range test changes, put back bitwise by :meth:`restore`."""

    def __init__(self, trainer: L.Trainer, pl_module: L.LightningModule, optimizer: Optimizer, loader: Any) -> None:
        tensors = {id(t): t for t in chain(pl_module.parameters(), pl_module.buffers())}
        self._tensors = [(tensor, tensor.detach().clone()) for tensor in tensors.values()]
        self._modes = [(module, module.training) for module in {*trainer.model.modules(), *pl_module.modules()}]
        self._optimizer = optimizer
        self._groups = [{k: copy.deepcopy(v) for k, v in g.items() if k != "params"} for g in optimizer.param_groups]
        self._state = {param: copy.deepcopy(state) for param, state in optimizer.state.items()}
        self._scheduler_states = [
            (config.scheduler, copy.deepcopy(config.scheduler.state_dict())) for config in trainer.lr_scheduler_configs
        ]
        self._scaler = _grad_scaler(trainer)
        self._scaler_state = copy.deepcopy(self._scaler.state_dict()) if self._scaler is not None else None
        self._generators = [(g, g.get_state()) for g in _loader_generators(loader)]
        self._pl_module = pl_module

    def restore(self) -> None:
        with torch.no_grad():
            for tensor, saved in self._tensors:
                tensor.copy_(saved)
        for module, training in self._modes:
            module.training = training
        self._pl_module.zero_grad(set_to_none=True)
        for group, saved in zip(self._optimizer.param_groups, self._groups):
            for key in [key for key in group if key != "params" and key not in saved]:
                del group[key]
            group.update(saved)
        self._optimizer.state.clear()
        self._optimizer.state.update(self._state)
        for scheduler, state in self._scheduler_states:
            scheduler.load_state_dict(state)
        if self._scaler is not None:
            self._scaler.load_state_dict(self._scaler_state)
        for generator, state in self._generators:
            generator.set_state(state)


def _loader_generators(loader: Any) -> list[torch.Generator]:
    """Random generators owned by the train dataloader(s) and their samplers."""
    loaders = loader.values() if isinstance(loader, Mapping) else loader if isinstance(loader, Sequence) else [loader]
    found: dict[int, torch.Generator] = {}
    for item in loaders:
        batch_sampler = getattr(item, "batch_sampler", None)
        for owner in (item, getattr(item, "sampler", None), batch_sampler, getattr(batch_sampler, "sampler", None)):
            generator = getattr(owner, "generator", None)
            if isinstance(generator, torch.Generator):
                found[id(generator)] = generator
    return list(found.values())
