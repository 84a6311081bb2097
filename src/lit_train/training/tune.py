"""Look before training: the LR range test alone, and the LR schedule of a config."""

import math
import shlex
from collections.abc import Sequence
from pathlib import Path

import lightning.pytorch as L
from lit_callbacks import LRFinder, Warmup, lr_find, plot_lr, preview_lr
from torch.optim.lr_scheduler import ReduceLROnPlateau

from lit_train.training.optim import Optimization

_FINDER_SETTINGS = ("min_lr", "max_lr", "num_training_steps", "mode", "method", "plot", "smoothing", "early_stop_threshold")


def find_lr(trainer: L.Trainer, module: L.LightningModule, datamodule: L.LightningDataModule) -> float | None:
    """Runs only the LR range test (with the settings of a configured ``lr_finder``, if any).

    Returns:
        The suggested LR, or ``None`` if the loss never clearly fell.
    """
    return range_test(trainer, module, datamodule).suggestion


def range_test(trainer: L.Trainer, module: L.LightningModule, datamodule: L.LightningDataModule,
               **overrides: object) -> LRFinder:
    """The LR range test alone, with a configured ``lr_finder``'s settings and then ``overrides``; returns the finder.

    The module's weights, the optimizer and the RNG states come back as they were (see :func:`lit_callbacks.lr_find`).
    """
    configured = next((c for c in trainer.callbacks if isinstance(c, LRFinder)), None)
    settings = {}
    if configured is not None:
        settings = {name: getattr(configured, name) for name in _FINDER_SETTINGS}
        trainer.callbacks.remove(configured)
    return lr_find(trainer, module, datamodule=datamodule, **{**settings, **overrides, "apply": False})


def use_lr_command(lr: float, overrides: Sequence[str] = ()) -> str:
    """The command that trains with ``lr``: the run's ``overrides`` but ``action`` and ``optimizer.lr``, then ``lr``.

    Example::

        use_lr_command(0.00335, ["action=lr_find", "model=cnn"])  # python -m lit_train model=cnn optimizer.lr=0.00335
    """
    replaced = ("action", "optimizer.lr")
    kept = [override for override in overrides if override.split("=", 1)[0].lstrip("+~") not in replaced]
    return shlex.join(["python", "-m", "lit_train", *kept, f"optimizer.lr={lr:.4g}"])


def run_length(trainer: L.Trainer, datamodule: L.LightningDataModule) -> tuple[int, int]:
    """``(total optimizer steps, optimizer steps per epoch)`` of a run, without starting it."""
    datamodule.setup("fit")
    batches = len(datamodule.train_dataloader())
    limit = trainer.limit_train_batches
    if limit is not None:
        batches = min(batches, limit if isinstance(limit, int) else int(batches * limit))
    per_epoch = max(1, math.ceil(batches / trainer.accumulate_grad_batches))
    lengths = [trainer.max_steps] if trainer.max_steps not in (-1, None) else []
    if trainer.max_epochs not in (-1, None):
        lengths.append(trainer.max_epochs * per_epoch)
    return min(lengths), per_epoch


def show_schedule(
    trainer: L.Trainer, module: L.LightningModule, datamodule: L.LightningDataModule, optimization: Optimization,
    path: Path, log_scale: bool | None = None,
) -> list[float]:
    """The LR of every optimizer step of the configured run, printed as a short table and plotted to ``path``.

    The plot's title names the scheduler; a configured :class:`~lit_callbacks.Warmup` is
    shaded. A plateau scheduler is previewed as if the monitored metric never improved,
    and the plot says so.

    Args:
        log_scale: Log-scale LR axis; ``None`` picks it when a quarter of the run's steps
            train at 1/30 of the highest LR or below (decays over decades, like a
            plateau's 1e-3 .. 1e-6), which a linear axis would squash onto zero.
            Default ``None``.
    """
    total, per_epoch = run_length(trainer, datamodule)
    length = total if optimization.interval == "step" else trainer.max_epochs
    optimizer, scheduler = optimization.build(module, length, optimization.lr_factor(trainer))
    warmup = next((c for c in trainer.callbacks if isinstance(c, Warmup)), None)
    lrs = preview_lr(
        optimizer, scheduler, total_steps=total, interval=optimization.interval, frequency=optimization.frequency,
        steps_per_epoch=per_epoch, warmup=warmup, monitor_values=[1.0] * (total + 1),
    )
    shown = sorted({0, *range(0, total, max(1, total // 10)), total - 1})
    print(f"LR schedule: {total} optimizer steps, {per_epoch} per epoch")
    for step in shown:
        print(f"  step {step:>7d}  lr {lrs[step]:.6g}")
    warmup_steps = warmup.resolve_steps(total) if warmup is not None else 0
    note = None
    if isinstance(scheduler, ReduceLROnPlateau):
        monitored = optimization.monitor or "the monitored metric"
        note = f"ReduceLROnPlateau: drawn as if {monitored} never improves;\nin training, the LR drops when it stalls"
    plot_lr(lrs, path, title=schedule_title(optimization, warmup_steps), warmup_steps=warmup_steps, note=note,
            log_scale=_log_scale_helps(lrs) if log_scale is None else log_scale)
    print(f"  plot: {path}")
    return lrs


def schedule_title(optimization: Optimization, warmup_steps: int = 0) -> str:
    """``LR schedule: CosineAnnealingLR per step + 40 warmup steps``."""
    factory = optimization.scheduler
    if factory is None:
        name = "constant (no scheduler)"
    else:
        target = getattr(factory, "func", factory)  # the scheduler class (or function) of the config's _target_
        name = f"{getattr(target, '__name__', type(target).__name__)} per {optimization.interval}"
    warmup = f" + {warmup_steps} warmup steps" if warmup_steps else ""
    return f"LR schedule: {name}{warmup}"


def _log_scale_helps(lrs: list[float]) -> bool:
    """Whether a quarter of the steps train at 1/30 of the highest LR or below."""
    return max(lrs) > 0 and sorted(lrs)[len(lrs) // 4] <= max(lrs) / 30
