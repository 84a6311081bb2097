"""Callbacks that signal their own process at a given point of training, as a cluster or a person would."""

import os
import signal

import lightning.pytorch as L


class KillAt(L.Callback):
    """SIGKILLs the process after optimizer step ``step``, as a preempted job dies."""

    def __init__(self, step: int) -> None:
        self.step = step

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        if trainer.global_step == self.step:
            os.kill(os.getpid(), signal.SIGKILL)


class SignalAt(L.Callback):
    """Sends ``signal`` (a name: SIGTERM) to the process once: after optimizer step ``step``, or during the
    validation that follows it (``during_validation``)."""

    def __init__(self, signal: str, step: int, during_validation: bool = False) -> None:
        self.signum = getattr(__import__("signal"), signal)
        self.step = step
        self.during_validation = during_validation
        self.sent = False

    def _send(self, trainer) -> None:
        if not self.sent and trainer.global_step >= self.step:
            self.sent = True
            os.kill(os.getpid(), self.signum)

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        if not self.during_validation:
            self._send(trainer)

    def on_validation_batch_end(self, trainer, pl_module, outputs, batch, batch_idx, dataloader_idx=0) -> None:
        if self.during_validation and not trainer.sanity_checking:
            self._send(trainer)
