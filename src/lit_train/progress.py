"""A progress bar whose cost does not grow with the step rate."""

import time

from lightning.pytorch.callbacks import TQDMProgressBar


class ProgressBar(TQDMProgressBar):
    """Lightning's TQDM bar, redrawn at most every ``refresh_seconds`` instead of every N batches.

    Lightning's bar redraws (and formats every progress-bar metric, reading each to
    the host) every ``refresh_rate`` batches. A fixed batch count is either too
    often for a fast model (at 1000 steps/s the redraws cost a fifth of the run) or
    too rare for a slow one; a time interval is right for both. The last batch of a
    bar is always drawn.

    Args:
        refresh_seconds: Least time between two redraws of a bar.
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

    def _should_update(self, current: int, total: int) -> bool:
        if not self.is_enabled:
            return False
        now = time.monotonic()
        if current == total or now - self._last_draw >= self.refresh_seconds:
            self._last_draw = now
            return True
        return False
