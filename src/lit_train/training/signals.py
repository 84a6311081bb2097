"""Stop signals end a run at the next optimizer step, with everything saved.

SLURM, Kubernetes and ``docker stop`` send SIGTERM some time before they kill
(SLURM's ``--signal`` SIGUSR1 or SIGUSR2); a person presses Ctrl+C (SIGINT).
Each of them ends a run the same way: the optimizer step under way finishes,
``last.ckpt`` is written at exactly the position reached, ``summary.json`` says
``interrupted`` and names the signal, and the process exits with 128 + the
signal's number, as a shell reports a process the signal killed.

The position is an optimizer-step boundary, where Lightning writes its own step
checkpoints, or the end of a validation, where it writes its epoch checkpoints;
so ``resume=auto`` continues bitwise as if the run had never stopped (a step
that validation follows stops after the validation: resumed from the step,
Lightning would skip it). Python's default SIGINT handling raises wherever the main thread is,
and Lightning's SIGTERM handling stops after any batch (mid-accumulation,
mid-validation) and exits with code 0: neither leaves a state that resumes
exactly. So lit_train's handler only records the signal, and is put back after
Lightning installs its own at the start of each stage. A second signal stops at
once (as a KeyboardInterrupt), losing the steps since the last checkpoint.

A handler installed before lit_train's (submitit's requeue on SIGUSR2, under the
SLURM launcher) is passed the signal once the checkpoint and summary are written.
"""

import os
import signal
import threading
from pathlib import Path
from types import FrameType
from typing import Any

import lightning.pytorch as L
import torch
from lightning.pytorch.callbacks import Checkpoint
from lightning.pytorch.trainer.states import TrainerFn

from lit_train._compat import validation_follows

#: The signals that end a run with a checkpoint.
STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT, signal.SIGUSR1, signal.SIGUSR2)


class StopRequested(BaseException):
    """A stop signal ended the run at a step boundary (BaseException: a module's ``except Exception`` lets it pass).

    Args:
        signum: The signal received.
        previous: The handler that was installed for it before lit_train's.
    """

    def __init__(self, signum: int, previous: Any = None) -> None:
        super().__init__(f"stopped by {signal.Signals(signum).name}")
        self.signum = signum
        self.previous = previous

    @property
    def name(self) -> str:
        """The signal's name, e.g. ``SIGTERM``."""
        return signal.Signals(self.signum).name

    @property
    def exit_code(self) -> int:
        """128 + the signal's number, as a shell reports a process ended by it."""
        return 128 + self.signum

    def pass_on(self) -> None:
        """Calls the handler installed before lit_train's (submitit requeues the job there), if it was Python's."""
        if callable(self.previous) and self.previous is not signal.default_int_handler:
            self.previous(self.signum, None)


class StopSignals:
    """While entered, records the first stop signal instead of dying of it; a second one raises KeyboardInterrupt."""

    def __init__(self) -> None:
        self.received: int | None = None
        self._previous: dict[int, Any] = {}
        self._pid = os.getpid()

    def __enter__(self) -> "StopSignals":
        if threading.current_thread() is threading.main_thread():  # Python handles signals there only
            self._pid = os.getpid()
            self._previous = {signum: signal.getsignal(signum) for signum in STOP_SIGNALS}
            self.install()
        return self

    def __exit__(self, *exc_info: Any) -> None:
        for signum, handler in self._previous.items():
            signal.signal(signum, handler if handler is not None else signal.SIG_DFL)

    def install(self) -> None:
        """(Re)installs the handler for every stop signal, over whatever Lightning installed meanwhile.

        A signal the process was started ignoring (SIGINT of a job started with ``&``) stays ignored.
        """
        for signum, previous in self._previous.items():
            if previous is not signal.SIG_IGN:
                signal.signal(signum, self._handle)

    def stop(self) -> StopRequested:
        """The exception that ends the run for the signal received."""
        assert self.received is not None
        return StopRequested(self.received, self._previous.get(self.received))

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        if os.getpid() != self._pid:
            return  # a data-loader worker forked with the handler: the main process decides
        if self.received is not None:
            raise KeyboardInterrupt
        self.received = signum
        # os.write: a print here could interrupt a print in progress ("reentrant call").
        os.write(2, (f"\nlit_train: received {signal.Signals(signum).name}: stopping after this optimizer step, "
                     "saving last.ckpt (send it again to stop at once)\n").encode())


class StopAtStepEnd(Checkpoint):
    """Ends the run at the first optimizer step (or validation) end after a stop signal, saving ``last`` first.

    A :class:`~lightning.pytorch.callbacks.Checkpoint` so that Lightning calls it
    after the other callbacks, model checkpoints included: the step's own
    checkpoint is written before the run stops.

    Args:
        signals: The signal record of this run.
        last: Where to write the checkpoint; ``None`` for runs that keep none (``lr_find``).
    """

    def __init__(self, signals: StopSignals, last: Path | None) -> None:
        self.signals = signals
        self.last = last
        self._step_before = 0

    # Lightning installs its own SIGTERM handler as each stage starts: lit_train's goes back on top.
    def on_sanity_check_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self.signals.install()

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self.signals.install()

    def on_test_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self.signals.install()

    def on_train_batch_start(self, trainer: L.Trainer, pl_module: L.LightningModule, batch: Any, batch_idx: int) -> None:
        self._step_before = trainer.global_step

    def on_train_batch_end(
        self, trainer: L.Trainer, pl_module: L.LightningModule, outputs: Any, batch: Any, batch_idx: int,
    ) -> None:
        if self.signals.received is None and trainer.world_size == 1:
            return  # the common case, every step: nothing to stop for, and no other rank to ask
        if trainer.global_step == self._step_before:
            return  # gradients are still accumulating: no step to stop after yet
        if self.last is not None and validation_follows(trainer):
            # Resumed from here, Lightning would take the validation for done and skip it: stop after it instead.
            return
        self._stop_if_requested(trainer)

    def on_validation_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if trainer.state.fn == TrainerFn.FITTING and not trainer.sanity_checking:
            self._stop_if_requested(trainer)

    def on_test_batch_end(self, trainer: L.Trainer, pl_module: L.LightningModule, *args: Any, **kwargs: Any) -> None:
        if self._stop_requested(trainer):
            raise self.signals.stop()

    def _stop_if_requested(self, trainer: L.Trainer) -> None:
        if self._stop_requested(trainer):
            if self.last is not None:
                trainer.save_checkpoint(self.last, weights_only=False)
            raise self.signals.stop()

    def _stop_requested(self, trainer: L.Trainer) -> bool:
        """Whether any rank received a signal; then every rank stops at this step, as the same signal."""
        if trainer.world_size > 1:
            received = torch.tensor(self.signals.received or 0, device=trainer.strategy.root_device)
            self.signals.received = int(trainer.strategy.reduce(received, reduce_op="max")) or None
        return self.signals.received is not None
