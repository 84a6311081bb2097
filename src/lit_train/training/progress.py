"""A progress bar a person can read, whose cost does not grow with the step rate or the epoch rate."""

import math
import shutil
import sys
import time
from typing import Any

import lightning.pytorch as L
from lightning.pytorch.callbacks import ProgressBar as LightningProgressBar
from typing_extensions import override

#: Characters of the bar drawn on a terminal.
BAR_WIDTH = 10


def short_name(name: str) -> tuple[str, bool]:
    """A progress-bar metric's displayed name, and whether it is a per-step value.

    ``train/`` is dropped, as is Lightning's ``_step`` / ``_epoch`` suffix of a value
    logged both ways: ``train/loss`` and ``train/loss_step`` show as ``loss``,
    ``val/acc`` as ``val/acc``.
    """
    name = name.removeprefix("train/")
    if name.endswith("_step"):
        return name.removesuffix("_step"), True
    return name.removesuffix("_epoch"), False


def format_value(value: Any) -> str:
    """A metric with four significant digits (integers and text as they are)."""
    return f"{value:.4g}" if isinstance(value, float) else str(value)


def format_seconds(seconds: float) -> str:
    """An epoch's wall time: ``0.05s`` (an epoch of a small model takes tens of milliseconds), ``2.7s``."""
    return f"{seconds:.2f}s" if seconds < 1 else f"{seconds:.1f}s"


def _order(name: str) -> int:
    # The training loss first, then the validation metrics (loss first), then the rest as logged.
    if name == "loss":
        return 0
    if name.startswith("val/"):
        return 1 if name == "val/loss" else 2
    return 3


class ProgressBar(LightningProgressBar):
    """One status line on a terminal, one plain line per epoch anywhere else.

    On a terminal the status line (epoch, batch count, the latest metrics) is
    redrawn at most every ``refresh_seconds`` and never wider than the terminal;
    the finished run leaves its last epoch's line on screen, or with ``leave=True``
    every epoch's. Validation, test and predict batches show in the same line.

    When stdout is not a terminal (a log file, a pipe), nothing is drawn: every
    training epoch writes one line and nothing else, without carriage returns or
    escape codes::

        epoch 3/20  loss 0.412  val/loss 0.398  val/acc 0.951  acc 0.958  0.41s

    Metrics are the module's progress-bar metrics under short names
    (:func:`short_name`; no ``v_num``): ``loss`` is the epoch's mean training loss
    in an epoch's line, and in the status line the latest ``train/loss_step`` once
    the running epoch has logged one. They are read only when a line is written,
    so a batch costs a clock read on a terminal and nothing elsewhere.

    Args:
        refresh_seconds: Least time between two redraws of the status line. Default ``0.2``.
        leave: On a terminal, keep every epoch's line on screen, not only the last one. Default ``False``.

    Raises:
        ValueError: If ``refresh_seconds`` is not a number >= 0.

    Example::

        trainer = L.Trainer(callbacks=[ProgressBar(refresh_seconds=0.5)])
    """

    def __init__(self, refresh_seconds: float = 0.2, leave: bool = False) -> None:
        if not isinstance(refresh_seconds, (int, float)) or isinstance(refresh_seconds, bool) or refresh_seconds < 0:
            raise ValueError(f"`refresh_seconds` must be a number >= 0, got {refresh_seconds!r}")
        super().__init__()
        self.refresh_seconds = refresh_seconds
        self.leave = leave
        self.enabled = True
        self.live = False  # whether stdout is a terminal
        self._last_draw = float("-inf")
        self._shown = 0  # characters of the status line now on screen
        self._in_epoch = False
        self._epoch_first_step = 0
        self._epoch_started = 0.0
        self._finished: tuple[int, float] | None = None  # (epoch, seconds) whose line is due

    @property
    def is_enabled(self) -> bool:
        return self.enabled

    @property
    def is_disabled(self) -> bool:
        return not self.enabled

    @override
    def disable(self) -> None:
        self.enabled = False

    @override
    def enable(self) -> None:
        self.enabled = True

    @override
    def setup(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        super().setup(trainer, pl_module, stage)
        # Read at every run, and stdout itself at every write: the bar may run under pytest's capture, a pipe or a
        # terminal, and ddp_spawn pickles it (a stream does not pickle).
        self.live = sys.stdout.isatty()

    @override
    def print(self, *args: Any, sep: str = " ", **kwargs: Any) -> None:
        self._clear()  # the message starts at the line's start; the next redraw brings the status line back
        print(*args, sep=sep, **kwargs)

    @override
    def get_metrics(self, trainer: L.Trainer, pl_module: L.LightningModule) -> dict[str, Any]:
        """The progress-bar metrics under their short names, loss first, then validation's.

        Where a per-step and an epoch value share a name, the step value is shown
        once the running epoch has logged one, and the epoch value otherwise.
        """
        # Step values are logged every log_every_n_steps steps: has the running epoch passed such a step?
        every = max(1, trainer.log_every_n_steps)
        steps = self._in_epoch and trainer.global_step // every > self._epoch_first_step // every
        shown: dict[str, Any] = {}
        for name, value in trainer.progress_bar_metrics.items():
            short, per_step = short_name(name)
            if per_step == steps or short not in shown:
                shown[short] = value
        return {name: shown[name] for name in sorted(shown, key=_order)}

    @override
    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._start_epoch(trainer)  # a run resumed mid-epoch gets no on_train_epoch_start for that epoch

    @override
    def on_train_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        # The previous epoch's line is written here, not at its end: Lightning calls this callback's
        # epoch-end hook before the module logs the epoch's training means.
        self._write_finished(trainer, pl_module)
        self._start_epoch(trainer)

    @override
    def on_train_batch_end(
        self, trainer: L.Trainer, pl_module: L.LightningModule, outputs: Any, batch: Any, batch_idx: int
    ) -> None:
        if self.live and self.enabled and self._draw_due():
            self._draw(trainer, pl_module, [self._bar(batch_idx + 1, self.total_train_batches)])

    @override
    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._in_epoch = False
        self._finished = (trainer.current_epoch, time.monotonic() - self._epoch_started)

    @override
    def on_train_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._write_finished(trainer, pl_module, last=True)

    @override
    def on_validation_batch_start(
        self, trainer: L.Trainer, pl_module: L.LightningModule, batch: Any, batch_idx: int, dataloader_idx: int = 0
    ) -> None:
        if self.live:
            self.has_dataloader_changed(dataloader_idx)  # points the current-dataloader totals at this one

    @override
    def on_validation_batch_end(
        self, trainer: L.Trainer, pl_module: L.LightningModule, outputs: Any, batch: Any, batch_idx: int,
        dataloader_idx: int = 0,
    ) -> None:
        if self.live and self.enabled and not trainer.sanity_checking and self._draw_due():
            total = self.total_val_batches_current_dataloader
            self._draw(trainer, pl_module, [f"validating {self._count(batch_idx + 1, total)}"])

    @override
    def on_validation_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self.reset_dataloader_idx_tracker()
        if not trainer.training:  # trainer.validate: nothing else will overwrite the line
            self._clear()

    @override
    def on_test_batch_start(
        self, trainer: L.Trainer, pl_module: L.LightningModule, batch: Any, batch_idx: int, dataloader_idx: int = 0
    ) -> None:
        if self.live:
            self.has_dataloader_changed(dataloader_idx)

    @override
    def on_test_batch_end(
        self, trainer: L.Trainer, pl_module: L.LightningModule, outputs: Any, batch: Any, batch_idx: int,
        dataloader_idx: int = 0,
    ) -> None:
        if self.live and self.enabled and self._draw_due():
            total = self.total_test_batches_current_dataloader
            self._draw(trainer, pl_module, [f"testing {self._count(batch_idx + 1, total)}"])

    @override
    def on_test_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self.reset_dataloader_idx_tracker()
        self._clear()  # the run's summary reports the test metrics

    @override
    def on_predict_batch_start(
        self, trainer: L.Trainer, pl_module: L.LightningModule, batch: Any, batch_idx: int, dataloader_idx: int = 0
    ) -> None:
        if self.live:
            self.has_dataloader_changed(dataloader_idx)

    @override
    def on_predict_batch_end(
        self, trainer: L.Trainer, pl_module: L.LightningModule, outputs: Any, batch: Any, batch_idx: int,
        dataloader_idx: int = 0,
    ) -> None:
        if self.live and self.enabled and self._draw_due():
            total = self.total_predict_batches_current_dataloader
            self._draw(trainer, pl_module, [f"predicting {self._count(batch_idx + 1, total)}"])

    @override
    def on_predict_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self.reset_dataloader_idx_tracker()
        self._clear()

    @override
    def on_exception(self, trainer: L.Trainer, pl_module: L.LightningModule, exception: BaseException) -> None:
        if self._shown:  # the error's report starts on a line of its own
            self._write("\n")
            self._shown = 0

    def _start_epoch(self, trainer: L.Trainer) -> None:
        self._in_epoch = True
        self._epoch_first_step = trainer.global_step
        self._epoch_started = time.monotonic()

    def _draw_due(self) -> bool:
        """Whether a redraw is due now; if so, it counts as done."""
        now = time.monotonic()
        if now - self._last_draw >= self.refresh_seconds:
            self._last_draw = now
            return True
        return False

    def _epoch_label(self, trainer: L.Trainer, epoch: int) -> str:
        total = trainer.max_epochs
        return f"epoch {epoch + 1}/{total}" if total is not None and total > 0 else f"epoch {epoch + 1}"

    @staticmethod
    def _count(done: int, total: int | float) -> str:
        return f"{done}/{total}" if isinstance(total, int) else str(done)

    @staticmethod
    def _bar(done: int, total: int | float) -> str:
        if not isinstance(total, int) or total <= 0:
            return str(done)
        filled = min(BAR_WIDTH, math.floor(BAR_WIDTH * done / total))
        return f"[{'#' * filled}{'-' * (BAR_WIDTH - filled)}] {done}/{total}"

    def _line(self, trainer: L.Trainer, pl_module: L.LightningModule, head: list[str], tail: list[str],
              width: int | None) -> str:
        """``head``, the metrics and ``tail``, two spaces apart; within ``width``, up to the first that does not fit."""
        metrics = [f"{name} {format_value(value)}" for name, value in self.get_metrics(trainer, pl_module).items()]
        line = ""
        for item in [*head, *metrics, *tail]:
            candidate = f"{line}  {item}" if line else item
            if width is not None and line and len(candidate) > width:
                break
            line = candidate
        return line if width is None else line[:width]

    def _draw(self, trainer: L.Trainer, pl_module: L.LightningModule, progress: list[str]) -> None:
        """Rewrites the status line in place: a carriage return, then spaces over what is left of the old line.

        While fitting, the line starts with the epoch and shows the metrics; testing and predicting show a count.
        """
        width = shutil.get_terminal_size().columns - 1  # the last column would wrap on some terminals
        if self._in_epoch:
            head = [self._epoch_label(trainer, trainer.current_epoch), *progress]
            line = self._line(trainer, pl_module, head, [], width)
        else:
            line = "  ".join(progress)[:width]
        self._write("\r" + line + " " * max(0, self._shown - len(line)))
        self._shown = len(line)

    def _clear(self) -> None:
        if self._shown:
            self._write("\r" + " " * self._shown + "\r")
            self._shown = 0

    def _write_finished(self, trainer: L.Trainer, pl_module: L.LightningModule, last: bool = False) -> None:
        """The line of the epoch that ended, if due: always in a log; on a terminal, the last one or with ``leave``."""
        if self._finished is None:
            return
        epoch, seconds = self._finished
        self._finished = None
        if not self.enabled or (self.live and not (self.leave or last)):
            return
        width = shutil.get_terminal_size().columns - 1 if self.live else None
        line = self._line(trainer, pl_module, [self._epoch_label(trainer, epoch)], [format_seconds(seconds)], width)
        self._clear()
        self._write(line + "\n")

    @staticmethod
    def _write(text: str) -> None:
        sys.stdout.write(text)
        sys.stdout.flush()  # a log read while the run goes on (tail -f) gets each line at once
