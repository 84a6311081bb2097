"""Lightning's early stopping plus divergence and LR-floor stops, with the reason it stopped."""

from __future__ import annotations

import math
from typing import Any

import lightning.pytorch as L
from lightning.pytorch.callbacks.early_stopping import EarlyStoppingReason
from lightning.pytorch.utilities.exceptions import MisconfigurationException
from torch import Tensor
from typing_extensions import override

from ._compat import ExtensibleEarlyStopping
from ._validation import check_choice, check_int, check_number


class EarlyStopping(ExtensibleEarlyStopping):
    """Lightning's :class:`~lightning.pytorch.callbacks.EarlyStopping`, plus two stops and a stop reason.

    A drop-in for Lightning's: everything Lightning's callback does is kept (``patience``,
    ``min_delta``, ``check_finite``, ``stopping_threshold``, ``divergence_threshold``, the
    check after validation or at the end of the training epoch, the stop decision reduced
    over all ranks, the exceptions it raises), and without ``divergence_factor`` and
    ``min_lr`` it stops exactly where Lightning's does. On top of it, at each check:

    * **Divergence** (``divergence_factor``): stop when the monitored value is worse
      than the best value so far by more than that factor: ``current > factor * best``
      in ``"min"`` mode, ``current < best / factor`` in ``"max"`` mode. The ratio only
      means something for positive metrics (losses, perplexities, accuracies), so the
      check applies only while the best value is finite and positive.
    * **LR floor** (``min_lr``): stop when the learning rate of every param group of
      every optimizer is at or below ``min_lr`` (within a relative ``1e-6`` so that
      ``1e-3 * 0.1 ** 3`` counts as ``1e-6``); for plateau schedules that have decayed
      as far as is useful. The LRs are read when the metric is checked, so they are
      the ones the scheduler set before that check.

    The checks run in this order and the first that fires names the reason: Lightning's
    own (non-finite, stopping threshold, divergence threshold, improvement or patience),
    then divergence, then LR floor. Lightning's ``stopping_reason`` enum has no member
    for the two new stops and stays ``NOT_STOPPED`` for them; ``stopped_reason`` covers
    all of them. To add a stop of your own, override :meth:`evaluate_stopping_criteria`
    and call ``super()`` first.

    Patience survives resuming: ``wait_count``, ``best_score``, ``stopped_epoch`` and
    ``stopped_reason`` are in the state dict, so a run resumed mid-patience stops at the
    same epoch as an uninterrupted one. Logs no metrics.

    Args:
        monitor: Metric to monitor, as logged with ``self.log``.
        min_delta: Smallest change that counts as an improvement. Default ``0.0``.
        patience: Checks without improvement before stopping. Default ``3``.
        verbose: Log each check's outcome. Default ``False``.
        mode: ``"min"`` or ``"max"``. Default ``"min"``.
        strict: Raise if ``monitor`` is missing at a check. Default ``True``.
        check_finite: Stop when the monitored value is NaN or infinite. Default ``True``.
        stopping_threshold: Stop as soon as the value is better than this. Default ``None``.
        divergence_threshold: Stop as soon as the value is worse than this. Default ``None``.
        check_on_train_epoch_end: Check at the end of the training epoch instead of after
            validation; ``None`` lets Lightning decide. Default ``None``.
        log_rank_zero_only: Log the status on rank zero only. Default ``False``.
        divergence_factor: Factor for the divergence stop (``> 1``); ``None`` disables it.
            Default ``None``.
        min_lr: LR floor (``>= 0``); ``None`` disables it. Default ``None``.

    Attributes:
        stopped_reason: Why this callback stopped training: one of :attr:`REASONS`, or
            ``None`` if it did not.
        stopped_epoch: The epoch at which it stopped training; ``0`` if it did not.

    Raises:
        lightning.pytorch.utilities.exceptions.MisconfigurationException: If ``mode`` is not
            ``"min"`` or ``"max"``, as Lightning's callback raises.
        ValueError: If ``monitor`` is empty, or ``min_delta``, ``patience``,
            ``divergence_factor`` or ``min_lr`` is out of range (Lightning's callback takes
            an empty ``monitor`` and a negative ``min_delta`` or ``patience`` unchecked).
        TypeError: If an argument has the wrong type.
        RuntimeError: At a check, with ``strict=True``, if ``monitor`` was not logged (as in
            Lightning).

    Example::

        from lit_callbacks import EarlyStopping

        stopper = EarlyStopping("val_loss", patience=5, divergence_factor=10.0, min_lr=1e-6)
        # after trainer.fit(...): stopper.stopped_reason in (None, "patience", "divergence", ...)
    """

    MODES = ("min", "max")
    REASONS = ("patience", "non_finite", "stopping_threshold", "divergence_threshold", "divergence", "lr_floor")
    LR_FLOOR_RTOL = 1e-6

    _LIGHTNING_REASONS = {
        EarlyStoppingReason.PATIENCE_EXHAUSTED: "patience",
        EarlyStoppingReason.NON_FINITE_METRIC: "non_finite",
        EarlyStoppingReason.STOPPING_THRESHOLD: "stopping_threshold",
        EarlyStoppingReason.DIVERGENCE_THRESHOLD: "divergence_threshold",
    }

    def __init__(
        self,
        monitor: str,
        min_delta: float = 0.0,
        patience: int = 3,
        verbose: bool = False,
        mode: str = "min",
        strict: bool = True,
        check_finite: bool = True,
        stopping_threshold: float | None = None,
        divergence_threshold: float | None = None,
        check_on_train_epoch_end: bool | None = None,
        log_rank_zero_only: bool = False,
        divergence_factor: float | None = None,
        min_lr: float | None = None,
    ) -> None:
        if not isinstance(monitor, str):
            raise TypeError(f"`monitor` must be a metric name (str), got {monitor!r}")
        if not monitor:
            raise ValueError("`monitor` must be a non-empty metric name, got ''")
        # Lightning's own check raises MisconfigurationException; code written against it catches that.
        check_choice("mode", mode, self.MODES, error=MisconfigurationException)
        check_number("min_delta", min_delta, minimum=0.0)
        check_int("patience", patience, minimum=0)
        if divergence_factor is not None:
            check_number("divergence_factor", divergence_factor, minimum=1.0, strict=True)
        if min_lr is not None:
            check_number("min_lr", min_lr, minimum=0.0)
        super().__init__(
            monitor=monitor,
            min_delta=min_delta,
            patience=patience,
            verbose=verbose,
            mode=mode,
            strict=strict,
            check_finite=check_finite,
            stopping_threshold=stopping_threshold,
            divergence_threshold=divergence_threshold,
            check_on_train_epoch_end=check_on_train_epoch_end,
            log_rank_zero_only=log_rank_zero_only,
        )
        self.divergence_factor = divergence_factor
        self.min_lr = min_lr
        self.stopped_reason: str | None = None
        self._lrs: list[float] = []

    # Lightning checks the metric in these two hooks: the LRs read first are those the check sees.
    @override
    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._read_lrs(trainer)
        super().on_train_epoch_end(trainer, pl_module)

    @override
    def on_validation_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._read_lrs(trainer)
        super().on_validation_end(trainer, pl_module)

    def _read_lrs(self, trainer: L.Trainer) -> None:
        if self.min_lr is not None:
            self._lrs = [float(group["lr"]) for optimizer in trainer.optimizers for group in optimizer.param_groups]

    @override
    def evaluate_stopping_criteria(self, current: Tensor) -> tuple[bool, str | None]:
        should_stop, message = super().evaluate_stopping_criteria(current)
        if should_stop:
            self.stopped_reason = self._LIGHTNING_REASONS[self.stopping_reason]
            return should_stop, message
        if self._diverged(current):
            self.stopped_reason = "divergence"
            limit = "above" if self.mode == "min" else "below"
            return True, (
                f"Monitored metric {self.monitor} = {float(current):.6g} is {limit} the divergence limit"
                f" (factor {self.divergence_factor} of the best {float(self.best_score):.6g})."
                " Signaling Trainer to stop."
            )
        if self._at_lr_floor():
            self.stopped_reason = "lr_floor"
            return True, (
                f"Every learning rate ({', '.join(f'{lr:.3g}' for lr in self._lrs)}) is at or below"
                f" min_lr={self.min_lr}. Signaling Trainer to stop."
            )
        return should_stop, message

    def _diverged(self, current: Tensor) -> bool:
        if self.divergence_factor is None:
            return False
        best = float(self.best_score)
        if not (math.isfinite(best) and best > 0):
            return False
        value = float(current)
        if self.mode == "min":
            return value > self.divergence_factor * best
        return value < best / self.divergence_factor

    def _at_lr_floor(self) -> bool:
        if self.min_lr is None or not self._lrs:
            return False
        return all(lr <= self.min_lr * (1.0 + self.LR_FLOOR_RTOL) for lr in self._lrs)

    @override
    def state_dict(self) -> dict[str, Any]:
        return {**super().state_dict(), "stopped_reason": self.stopped_reason}

    @override
    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        super().load_state_dict(state_dict)
        self.stopped_reason = state_dict.get("stopped_reason")
