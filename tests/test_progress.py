"""The progress bar: a time-throttled status line on a terminal, one plain line per epoch elsewhere."""

import io
import sys
from types import SimpleNamespace

import pytest

from lit_train.training import progress
from lit_train.training.progress import ProgressBar, short_name

METRICS = {"train/loss_step": 0.75, "val/loss": 0.398, "val/acc": 0.951, "train/loss": 0.41234, "train/acc": 0.958}


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


@pytest.fixture
def clock(monkeypatch):
    """A settable ``time.monotonic`` for the progress module."""
    now = SimpleNamespace(value=0.0)
    monkeypatch.setattr(progress.time, "monotonic", lambda: now.value)
    return now


@pytest.fixture
def reads(monkeypatch):
    """Every read of the trainer's progress-bar metrics, as the bar makes it."""
    done = []
    original = ProgressBar.get_metrics
    monkeypatch.setattr(ProgressBar, "get_metrics", lambda self, *args: done.append(1) or original(self, *args))
    return done


def _trainer(**values) -> SimpleNamespace:
    defaults = dict(is_global_zero=True, num_training_batches=6, max_epochs=3, max_steps=-1, global_step=0,
                    current_epoch=0, log_every_n_steps=50, sanity_checking=False, training=True,
                    progress_bar_metrics=dict(METRICS))
    return SimpleNamespace(**{**defaults, **values})


def _bar(monkeypatch, stream, trainer, leave=False) -> ProgressBar:
    monkeypatch.setattr(sys, "stdout", stream)
    bar = ProgressBar(refresh_seconds=0.2, leave=leave)
    bar.setup(trainer, None, "fit")
    return bar


def _epoch(bar, trainer, clock, times) -> None:
    """One training epoch whose batches end at ``times``."""
    bar.on_train_epoch_start(trainer, None)
    for batch_idx, clock.value in enumerate(times):
        trainer.global_step += 1
        bar.on_train_batch_end(trainer, None, None, None, batch_idx)
    bar.on_train_epoch_end(trainer, None)
    trainer.current_epoch += 1


def test_names_are_short_and_a_step_value_is_marked():
    assert short_name("train/loss") == ("loss", False)
    assert short_name("train/loss_step") == ("loss", True)
    assert short_name("val/acc") == ("val/acc", False)
    assert short_name("my_metric_epoch") == ("my_metric", False)


def test_metrics_show_loss_first_then_validation_and_no_version(monkeypatch):
    trainer = _trainer(loggers=[SimpleNamespace(version=3)])  # Lightning's bar would show it as v_num
    bar = _bar(monkeypatch, io.StringIO(), trainer)
    assert list(bar.get_metrics(trainer, None).items()) == [
        ("loss", 0.41234), ("val/loss", 0.398), ("val/acc", 0.951), ("acc", 0.958),
    ]


def test_in_a_log_every_epoch_is_one_plain_line_and_a_batch_writes_and_reads_nothing(monkeypatch, clock, reads):
    stream, trainer = io.StringIO(), _trainer()
    bar = _bar(monkeypatch, stream, trainer)
    bar.on_train_start(trainer, None)
    _epoch(bar, trainer, clock, [0.1, 0.2, 0.3, 0.4, 0.5, 0.6])
    assert (stream.getvalue(), reads) == ("", [])  # the epoch's line waits for the module's epoch means
    _epoch(bar, trainer, clock, [1.0, 1.1, 1.2, 1.3, 1.4, 1.5])
    bar.on_train_end(trainer, None)
    assert stream.getvalue().splitlines() == [
        "epoch 1/3  loss 0.4123  val/loss 0.398  val/acc 0.951  acc 0.958  0.60s",
        "epoch 2/3  loss 0.4123  val/loss 0.398  val/acc 0.951  acc 0.958  0.90s",
    ]
    assert len(reads) == 2


def test_on_a_terminal_the_status_line_redraws_at_most_every_refresh_seconds(monkeypatch, clock, reads):
    stream, trainer = Terminal(), _trainer()
    bar = _bar(monkeypatch, stream, trainer)
    bar.on_train_start(trainer, None)
    _epoch(bar, trainer, clock, [0.0, 0.05, 0.1, 0.25, 0.3, 0.31])
    assert stream.getvalue().count("\r") == 2 and len(reads) == 2  # at 0.0 and 0.25
    assert stream.getvalue().split("\r")[-1].startswith("epoch 1/3  [######----] 4/6  loss 0.4123")


def test_on_a_terminal_epoch_boundaries_cost_nothing_and_the_last_epoch_stays(monkeypatch, clock, reads):
    stream, trainer = Terminal(), _trainer()
    bar = _bar(monkeypatch, stream, trainer)
    bar.on_train_start(trainer, None)
    for epoch in range(3):
        _epoch(bar, trainer, clock, [epoch + 0.5])  # one draw per epoch, at its only batch
    assert len(reads) == 3
    bar.on_train_end(trainer, None)
    assert stream.getvalue().endswith("\repoch 3/3  loss 0.4123  val/loss 0.398  val/acc 0.951  acc 0.958  1.0s\n")
    assert stream.getvalue().count("\n") == 1


def test_on_a_terminal_leave_keeps_every_epochs_line(monkeypatch, clock):
    stream, trainer = Terminal(), _trainer()
    bar = _bar(monkeypatch, stream, trainer, leave=True)
    bar.on_train_start(trainer, None)
    for epoch in range(3):
        _epoch(bar, trainer, clock, [epoch + 0.5])
    bar.on_train_end(trainer, None)
    lines = [line.split("\r")[-1] for line in stream.getvalue().split("\n")[:-1]]
    assert [line.split("  ")[0] for line in lines] == ["epoch 1/3", "epoch 2/3", "epoch 3/3"]


def test_the_status_line_shows_the_step_loss_once_the_epoch_logged_one(monkeypatch, clock):
    stream, trainer = Terminal(), _trainer(log_every_n_steps=2, global_step=10)
    bar = _bar(monkeypatch, stream, trainer)
    bar.on_train_epoch_start(trainer, None)
    trainer.global_step = 11
    assert bar.get_metrics(trainer, None)["loss"] == 0.41234  # no logging step yet: the last epoch's mean
    trainer.global_step = 12
    assert bar.get_metrics(trainer, None)["loss"] == 0.75


@pytest.mark.parametrize("columns", [80, 40])
def test_the_status_line_fits_the_terminal_leaving_out_whole_metrics(monkeypatch, clock, columns):
    monkeypatch.setenv("COLUMNS", str(columns))
    stream, trainer = Terminal(), _trainer(max_epochs=1000, num_training_batches=12345)
    bar = _bar(monkeypatch, stream, trainer)
    bar.on_train_start(trainer, None)
    bar.on_train_batch_end(trainer, None, None, None, 1234)
    line = stream.getvalue().removeprefix("\r")
    assert len(line) < columns
    assert line == {80: "epoch 1/1000  [#---------] 1235/12345  loss 0.4123  val/loss 0.398",
                    40: "epoch 1/1000  [#---------] 1235/12345"}[columns]


def test_validation_and_test_batches_show_in_the_status_line_and_test_clears_it(monkeypatch, clock):
    stream, trainer = Terminal(), _trainer(num_val_batches=[5], num_test_batches=[4])
    bar = _bar(monkeypatch, stream, trainer)
    bar.on_train_start(trainer, None)
    bar.on_validation_batch_start(trainer, None, None, 2)
    bar.on_validation_batch_end(trainer, None, None, None, 2)
    assert stream.getvalue().split("\r")[-1].startswith("epoch 1/3  validating 3/5  loss")
    bar.on_train_epoch_end(trainer, None)
    bar.on_train_end(trainer, None)
    clock.value = 1.0
    bar.on_test_batch_start(trainer, None, None, 0)
    bar.on_test_batch_end(trainer, None, None, None, 0)
    assert stream.getvalue().split("\r")[-1] == "testing 1/4"
    bar.on_test_end(trainer, None)
    assert stream.getvalue().endswith("\r" + " " * len("testing 1/4") + "\r")


def test_other_ranks_write_nothing(monkeypatch, clock):
    stream, trainer = io.StringIO(), _trainer(is_global_zero=False)
    bar = _bar(monkeypatch, stream, trainer)
    bar.on_train_start(trainer, None)
    _epoch(bar, trainer, clock, [0.1])
    bar.on_train_end(trainer, None)
    assert stream.getvalue() == ""


@pytest.mark.parametrize("value", [-0.1, "fast", True])
def test_refresh_must_be_a_number_at_least_zero(value):
    with pytest.raises(ValueError, match=rf"`refresh_seconds` must be a number >= 0, got {value!r}"):
        ProgressBar(refresh_seconds=value)
