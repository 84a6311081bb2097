"""Checkpointing that keeps a resumable ``last.ckpt`` from the very first steps."""

from typing import Any

import lightning.pytorch as L
from lightning.pytorch.callbacks import ModelCheckpoint as LightningModelCheckpoint


class ModelCheckpoint(LightningModelCheckpoint):
    """Lightning's ``ModelCheckpoint`` that also writes ``last.ckpt`` every ``every_n_train_steps`` steps
    before the monitored metric first exists.

    Lightning defers a step-interval save, ``last.ckpt`` included, until the
    monitored (validation) metric is logged, so a job killed during its first
    epoch has nothing to resume from. Here only the best-checkpoint choice waits
    for the metric; ``last.ckpt`` is written on schedule.
    """

    def on_train_batch_end(self, trainer: L.Trainer, pl_module: L.LightningModule, outputs: Any, batch: Any,
                           batch_idx: int) -> None:
        super().on_train_batch_end(trainer, pl_module, outputs, batch, batch_idx)
        if not (self.save_last and self._every_n_train_steps >= 1) or trainer.global_step % self._every_n_train_steps:
            return
        candidates = self._monitor_candidates(trainer)
        if self.monitor is not None and self.monitor not in candidates and not self._should_skip_saving_checkpoint(trainer):
            self._save_last_checkpoint(trainer, candidates)
