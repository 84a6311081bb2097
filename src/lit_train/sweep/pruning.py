"""A sweep trial's side of pruning: report the monitored metric to the study, stop when the pruner says so.

lit_train's Optuna sweeper (``hydra/sweeper=lit_optuna``) gives each job the
overrides ``+trial.storage=<url> +trial.study=<name> +trial.number=<n>``; the
runner then adds :class:`TrialPruning`, which re-opens that trial from the
study's storage and reports to it as any app's code does
(:class:`hydra_plugins.lit_train_optuna_sweeper.trial.Trial`). The job can run
in the sweeper's process or anywhere else that reaches the storage, so pruning
works with any Hydra launcher.

Optuna is imported when a trial is opened, not when this module is imported.
"""

import math
from typing import Any

import lightning.pytorch as L
from lightning.pytorch.callbacks import Callback
from typing_extensions import override

from hydra_plugins.lit_train_optuna_sweeper.trial import Trial
from lit_train._compat import state_key
from lit_train.config.messages import describe


class TrialPruning(Callback):
    """Reports ``monitor`` to an Optuna trial at every validation and stops training when the trial is pruned.

    Each validation (not sanity checking) reports the value with ``step`` = the
    number of validations before it (the epoch, when validating once an epoch),
    so trials with different batch sizes are compared at the same point. A
    pruned trial stops at once (``trainer.should_stop``); :attr:`pruned` tells
    the runner, which records ``status: "pruned"`` and skips testing. A NaN or
    infinite value is not reported: the trial is marked diverged and stops, and
    the sweeper records it as failed. Only global rank zero talks to the study;
    every rank stops together.

    Args:
        storage: The study's storage URL (e.g. ``sqlite:////abs/path/optuna.db``).
        study: The study's name.
        number: The trial's number in the study.
        monitor: The metric to report (a key of ``trainer.callback_metrics``).

    Attributes:
        pruned: Whether the pruner stopped this trial.
        stopped_reason: ``"pruned"``, ``"diverged"`` or ``None``.

    Raises:
        ValueError: For an empty storage, study or monitor, or a negative trial number.

    Example::

        trainer = L.Trainer(callbacks=[TrialPruning("sqlite:////tmp/s/optuna.db", "lit_train", 3, "val/loss")])
    """

    def __init__(self, storage: str, study: str, number: int, monitor: str) -> None:
        for name, value in (("storage", storage), ("study", study), ("monitor", monitor)):
            if not isinstance(value, str) or not value:
                raise ValueError(f"`{name}` must be a non-empty string, got {value!r}")
        if isinstance(number, bool) or not isinstance(number, int) or number < 0:
            raise ValueError(f"`number` must be an integer >= 0, got {number!r}")
        self.storage, self.study, self.number, self.monitor = storage, study, number, monitor
        self.pruned = False
        self.stopped_reason: str | None = None
        self._reports = 0
        self._trial: Any = None

    @property
    @override
    def state_key(self) -> str:
        return state_key(self, study=self.study, number=self.number)

    @override
    def setup(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        if stage == "fit" and trainer.is_global_zero and self._trial is None:
            self._trial = Trial(self.storage, self.study, self.number)

    @override
    def on_validation_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if trainer.sanity_checking or self.stopped_reason is not None:
            return
        self._report(trainer)

    @override
    def on_exception(self, trainer: L.Trainer, pl_module: L.LightningModule, exception: BaseException) -> None:
        if self._trial is not None:
            self._trial.record_error(describe(exception))

    def _report(self, trainer: L.Trainer) -> None:
        decision = None
        if trainer.is_global_zero and self._trial is not None:
            value = trainer.callback_metrics.get(self.monitor)
            decision = None if value is None else self._decide(float(value))
        decision = trainer.strategy.broadcast(decision, src=0)
        self._reports += 1
        if decision is not None:
            self.stopped_reason = decision
            self.pruned = decision == "pruned"
            trainer.should_stop = True

    def _decide(self, value: float) -> str | None:
        self._trial.report(value, self._reports)
        if not math.isfinite(value):
            return "diverged"
        return "pruned" if self._trial.should_prune() else None

    @override
    def state_dict(self) -> dict[str, Any]:
        return {"reports": self._reports, "stopped_reason": self.stopped_reason}

    @override
    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self._reports = state_dict.get("reports", 0)
        self.stopped_reason = state_dict.get("stopped_reason")
        self.pruned = self.stopped_reason == "pruned"
