"""A progress bar whose cost does not grow with the step rate or the epoch rate."""

import contextlib
import time
from collections.abc import Iterator
from typing import Any

import lightning.pytorch as L
from lightning.pytorch.callbacks import TQDMProgressBar
from tqdm import tqdm


@contextlib.contextmanager
def _undrawn(bar: tqdm) -> Iterator[None]:
    """Within the block, the bar's state changes (reset, description) without redrawing it."""
    bar.refresh = lambda *args, **kwargs: None  # an instance attribute shadows the method
    try:
        yield
    finally:
        del bar.refresh


class ProgressBar(TQDMProgressBar):
    """Lightning's TQDM bar, redrawn at most every ``refresh_seconds`` instead of every N batches.

    Lightning's bar redraws (and formats every progress-bar metric, reading each to
    the host) every ``refresh_rate`` batches, and twice more at every epoch's start
    and end. A fixed batch count is either too often for a fast model (at 1000
    steps/s the redraws cost a fifth of the run) or too rare for a slow one, and
    with short epochs (a few batches each) the per-epoch redraws cost more than the
    batches; a time interval is right for all of them. With ``leave=True`` every
    epoch's bar ends drawn at its last batch, as it stays on screen; so does every
    validation, test and predict bar.

    Args:
        refresh_seconds: Least time between two redraws.
        leave: Leave the finished epoch's bar on screen.

    Example::

        trainer = L.Trainer(callbacks=[ProgressBar(refresh_seconds=0.5)])
    """

    def __init__(self, refresh_seconds: float = 0.2, leave: bool = False) -> None:
        if not isinstance(refresh_seconds, (int, float)) or isinstance(refresh_seconds, bool) or refresh_seconds < 0:
            raise ValueError(f"`refresh_seconds` must be a number >= 0, got {refresh_seconds!r}")
        super().__init__(refresh_rate=1, leave=leave)
        self.refresh_seconds = refresh_seconds
        self._last_draw = float("-inf")

    def _draw_due(self) -> bool:
        """Whether a redraw is due now; if so, it counts as done."""
        now = time.monotonic()
        if now - self._last_draw >= self.refresh_seconds:
            self._last_draw = now
            return True
        return False

    def _should_update(self, current: int, total: int) -> bool:
        # Lightning asks this for the validation, test and predict bars: their last batch is always
        # drawn, as a test or validate run leaves its bar on screen.
        if not self.is_enabled:
            return False
        return self._draw_due() or current == total

    def on_train_batch_end(
        self, trainer: L.Trainer, pl_module: L.LightningModule, outputs: Any, batch: Any, batch_idx: int
    ) -> None:
        # The training bar is drawn by time only: drawing every epoch's last batch, as Lightning does, is most
        # of its cost when epochs are a few batches long. Every batch is counted, drawn or not, so that
        # whatever redraws the bar next (validation's end) shows the current count.
        bar = self.train_progress_bar
        bar.n = batch_idx + 1
        if self.is_enabled and (self._draw_due() or (self._leave and bar.n == bar.total)):
            bar.set_postfix(self.get_metrics(trainer, pl_module))  # draws the bar, with its count

    def on_train_epoch_start(self, trainer: L.Trainer, *args: Any) -> None:
        if self._leave or self._draw_due():
            super().on_train_epoch_start(trainer, *args)
            return
        with _undrawn(self.train_progress_bar):
            super().on_train_epoch_start(trainer, *args)

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        # Lightning reads every progress-bar metric here to redraw; skip both unless a redraw is due.
        if self._leave or self._draw_due():
            super().on_train_epoch_end(trainer, pl_module)
