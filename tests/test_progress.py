"""The time-throttled progress bar."""

import io
from types import SimpleNamespace

import pytest
from lightning.pytorch.callbacks.progress.tqdm_progress import Tqdm

from lit_train.training import progress
from lit_train.training.progress import ProgressBar


@pytest.fixture
def clock(monkeypatch):
    """A settable ``time.monotonic`` for the progress module."""
    now = SimpleNamespace(value=0.0)
    monkeypatch.setattr(progress.time, "monotonic", lambda: now.value)
    return now


def _enabled_bar(leave: bool = False) -> ProgressBar:
    bar = ProgressBar(refresh_seconds=0.2, leave=leave)
    bar._trainer = SimpleNamespace(num_training_batches=6, max_epochs=3, max_steps=-1)
    return bar


def test_evaluation_bars_redraw_at_most_every_refresh_seconds_and_at_their_last_batch(clock):
    bar = _enabled_bar()
    drawn = []
    for clock.value in [0.0, 0.05, 0.1, 0.25, 0.3, 0.31]:
        drawn.append(bar._should_update(len(drawn) + 1, total=6))
    assert drawn == [True, False, False, True, False, True]  # a test run leaves its bar on screen


@pytest.mark.parametrize(("leave", "last_drawn"), [(False, False), (True, True)])
def test_the_training_bar_redraws_by_time_and_counts_every_batch(clock, monkeypatch, leave, last_drawn):
    bar = _enabled_bar(leave)
    displays = []
    monkeypatch.setattr(Tqdm, "display", lambda self, *args, **kwargs: displays.append(self.n))
    monkeypatch.setattr(ProgressBar, "get_metrics", lambda self, *args: {})
    bar.train_progress_bar = Tqdm(file=io.StringIO(), total=3)
    displays.clear()
    for batch_idx, clock.value in enumerate([0.0, 0.05, 0.1]):
        bar.on_train_batch_end(None, None, None, None, batch_idx)
    # One draw for the first batch; the last one of the epoch only if the bar stays on screen.
    assert displays == ([1, 3] if last_drawn else [1])
    bar.train_progress_bar.refresh()  # as validation's end does
    assert displays[-1] == 3


def test_epoch_boundaries_redraw_and_read_metrics_only_when_due(clock, monkeypatch):
    bar = _enabled_bar()
    displays, reads = [], []
    monkeypatch.setattr(Tqdm, "display", lambda self, *args, **kwargs: displays.append(self.desc))
    monkeypatch.setattr(ProgressBar, "get_metrics", lambda self, *args: reads.append(1) or {})
    bar.train_progress_bar = Tqdm(file=io.StringIO(), total=6)
    displays.clear()
    trainer = SimpleNamespace(current_epoch=0)

    assert bar._should_update(1, total=6)  # a draw at t=0
    bar.train_progress_bar.n = 6
    clock.value, trainer.current_epoch = 0.1, 1
    bar.on_train_epoch_end(trainer, None)
    bar.on_train_epoch_start(trainer)
    # Not due: the bar restarts (count, total, epoch) without a redraw and no metric is read.
    assert (displays, reads) == ([], [])
    assert (bar.train_progress_bar.n, bar.train_progress_bar.total, bar.train_progress_bar.desc) == (0, 6, "Epoch 1: ")

    clock.value, trainer.current_epoch = 0.5, 2
    bar.on_train_epoch_end(trainer, None)
    assert reads == [1] and len(displays) == 1
    clock.value = 0.8
    bar.on_train_epoch_start(trainer)
    assert displays[-1] == "Epoch 2: "


@pytest.mark.parametrize("value", [-0.1, "fast", True])
def test_refresh_must_be_a_number_at_least_zero(value):
    with pytest.raises(ValueError, match=rf"`refresh_seconds` must be a number >= 0, got {value!r}"):
        ProgressBar(refresh_seconds=value)
