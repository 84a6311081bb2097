"""Stop a run whose loss blows up, finite or not, and say so."""

from __future__ import annotations

import math
from collections.abc import Sequence
from functools import cached_property
from typing import Any

import lightning.pytorch as L
from lightning.pytorch.callbacks import Callback
from lightning.pytorch.trainer.states import TrainerFn
from lightning.pytorch.utilities import rank_zero_warn
from typing_extensions import override

from ._compat import generate_state_key
from ._validation import check_number


class Divergence(Callback):
    """Stop training when a monitored loss turns non-finite or grows ``factor`` times past its first value.

    A run whose loss climbs from 0.7 to 1e6 has failed as surely as one that hits NaN,
    but nothing stops it: non-finite checks pass, and early stopping waits out its
    patience. This callback checks each metric of ``monitors`` found in
    ``trainer.callback_metrics`` at the end of every training epoch
    (``on_train_epoch_end``) and after every validation run of ``fit``
    (``on_validation_end``; not during the sanity check, nor in ``trainer.validate``).
    For each metric it keeps a **reference**: the first finite value it saw. A metric
    has diverged when

    * its value is NaN or infinite, or
    * ``value > factor * reference``, with a reference ``> 0``.

    The ratio rule is for losses that start positive (cross-entropy, MSE, perplexity):
    a metric whose reference is ``<= 0`` (a log-likelihood, a loss with a negative
    offset) is checked for non-finite values only. A metric missing at a check is
    skipped, so ``"val/loss"`` in ``monitors`` costs nothing in a run without
    validation.

    On divergence it sets ``trainer.should_stop`` (training ends as for any
    ``should_stop``; ``min_epochs``/``min_steps`` still apply), warns once on rank zero
    with a one-line message naming the metric, its value, the reference, the factor and
    what to try, and sets ``stopped_reason`` to ``"diverged"`` and ``stop_message`` to
    that message. After the stop it checks nothing more.

    Under DDP the decision is reduced over all ranks (any rank's divergence stops every
    rank), so all ranks stop together even when a metric is logged without
    ``sync_dist``; each rank's message names what it saw itself. The references,
    ``stopped_reason`` and ``stop_message`` are saved in checkpoints, so a resumed run
    compares with the reference of the original run. Logs no metrics.

    Args:
        monitors: Metric names, as logged with ``self.log``, or a single name.
            Default ``("train/loss", "val/loss")``.
        factor: How many times its reference a metric may reach; ``> 1``. Default ``10.0``.

    Attributes:
        references: The reference of each monitored metric seen so far, by name.
        stopped_reason: ``"diverged"`` once this callback stopped training, else ``None``.
        stop_message: The warning of the stop, or ``None``.

    Raises:
        TypeError: If ``monitors`` is not a string or a sequence of strings, or
            ``factor`` is not a number.
        ValueError: If ``monitors`` is empty, holds an empty or repeated name, or
            ``factor`` is not above 1.

    Example::

        import lightning.pytorch as L
        from lit_callbacks import Divergence

        divergence = Divergence(monitors=("train/loss", "val/loss"), factor=10.0)
        trainer = L.Trainer(callbacks=[divergence])
        # after trainer.fit(...): divergence.stopped_reason in (None, "diverged")
    """

    REASON = "diverged"

    def __init__(self, monitors: str | Sequence[str] = ("train/loss", "val/loss"), factor: float = 10.0) -> None:
        self.monitors = self._check_monitors(monitors)
        check_number("factor", factor, minimum=1.0, strict=True)
        self.factor = factor

        self.references: dict[str, float] = {}
        self.stopped_reason: str | None = None
        self.stop_message: str | None = None

    @staticmethod
    def _check_monitors(monitors: Any) -> tuple[str, ...]:
        if isinstance(monitors, str):
            monitors = (monitors,)
        if not isinstance(monitors, Sequence):
            raise TypeError(f"`monitors` must be a metric name or a sequence of them, got {monitors!r}")
        if not monitors:
            raise ValueError("`monitors` must name at least one metric, got an empty sequence")
        for name in monitors:
            if not isinstance(name, str):
                raise TypeError(f"`monitors` must hold metric names (str), got {name!r} in {monitors!r}")
            if not name:
                raise ValueError(f"`monitors` must hold non-empty metric names, got '' in {monitors!r}")
        repeated = sorted({name for name in monitors if list(monitors).count(name) > 1})
        if repeated:
            raise ValueError(f"`monitors` names {repeated!r} more than once, got {monitors!r}")
        return tuple(monitors)

    # Cached: Lightning reads the key around every hook call. The factor is left out, so that a
    # resumed run may change it and still find its references.
    @cached_property
    @override
    def state_key(self) -> str:
        return generate_state_key(self, monitors=self.monitors)

    @override
    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._check(trainer)

    @override
    def on_validation_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if trainer.sanity_checking or trainer.state.fn != TrainerFn.FITTING:  # not `trainer.validate(...)`
            return
        self._check(trainer)

    def _check(self, trainer: L.Trainer) -> None:
        if self.stopped_reason is not None:  # agreed on by every rank, so all of them skip the reduction below
            return
        found = self._first_diverged(trainer.callback_metrics)
        if not trainer.strategy.reduce_boolean_decision(found is not None, all=False):
            return
        if found is None:
            where = "a monitored metric diverged on another rank."
        else:
            where = self._describe(*found)
        self.stop_message = (
            f"Divergence at epoch {trainer.current_epoch}, step {trainer.global_step}: {where} Stopped training;"
            " lower the optimizer's learning rate, add a warmup or clip gradients (Trainer(gradient_clip_val=1.0))."
        )
        self.stopped_reason = self.REASON
        trainer.should_stop = True
        rank_zero_warn(self.stop_message)

    def _first_diverged(self, metrics: dict[str, Any]) -> tuple[str, float] | None:
        """The first monitored metric that has diverged and its value, after taking any new references."""
        diverged = None
        for name in self.monitors:
            if name not in metrics:
                continue
            value = float(metrics[name])
            if not math.isfinite(value):
                diverged = diverged or (name, value)
                continue
            reference = self.references.setdefault(name, value)
            if reference > 0 and value > self.factor * reference:
                diverged = diverged or (name, value)
        return diverged

    def _describe(self, name: str, value: float) -> str:
        reference = self.references.get(name)
        if reference is None:
            return f"{name} = {value} before any finite value (factor={self.factor})."
        if not math.isfinite(value):
            return f"{name} = {value}, after a first finite value of {reference:.6g} (factor={self.factor})."
        return (
            f"{name} = {value:.6g} is above factor={self.factor} times its first finite value {reference:.6g}"
            f" (limit {self.factor * reference:.6g})."
        )

    @override
    def state_dict(self) -> dict[str, Any]:
        return {
            "references": dict(self.references),
            "stopped_reason": self.stopped_reason,
            "stop_message": self.stop_message,
        }

    @override
    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.references = dict(state_dict.get("references", {}))
        self.stopped_reason = state_dict.get("stopped_reason")
        self.stop_message = state_dict.get("stop_message")
