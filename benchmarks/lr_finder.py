"""How long the LR range test takes to suggest an LR, next to plain training and Lightning's tuner.

Three contenders run on the digits MLP (lit_train's ``Classifier`` over ``MLP(64, 10,
hidden=[256, 256])``, AdamW, batch 64 over the 1259 training digits), each on a fresh
model with the same initial weights, a fresh Trainer with the same settings (CPU, no
logger, no checkpointing, no progress bar) and a fresh loader over the same tensors:

* ``lit_callbacks.lr_find``: the range test from 1e-7 to 10 over at most 100 steps,
  stopping once the smoothed loss passes 4x its best, plot off; timed from the call
  until ``finder.suggestion`` is set (fit set-up, the test, the in-memory restore,
  the suggestion, fit teardown).
* ``plain steps``: ``trainer.fit`` for as many optimizer steps as the finder took, with
  the same Trainer settings: the cost of simply training that long.
* ``lightning Tuner``: ``Tuner(trainer).lr_find(...)`` with the same range, the same
  ``num_training`` and the same early-stop threshold, then ``.suggestion()``. It saves
  and restores a checkpoint on disk around its test. Its progress bar is sent to a
  buffer so that terminal output is not part of what is timed.

Neither finder plots (Lightning's tuner draws nothing during its call): with its default
``plot=True``, ``lr_find`` also draws and saves the curve, which took about 0.27 s here,
more than the range test itself. Building the Trainer, the model and the loader is the
same for all three and is not timed; imports are not timed. The contenders alternate
round by round, and each time is the median over the rounds (:func:`_harness.alternate`).
torch runs on ``_harness.THREADS`` threads (``BENCH_THREADS``, default 1): with two
threads on this shared two-core machine, these steps ran 10-20x slower and erratically.

How to read it: ``lr_finder_vs_plain_steps`` is the finder's time over plain training of
the same number of steps (<= 1.3: the snapshot, restore and suggestion may cost at most
30%; it is usually below 1 because the finder drives the steps itself, without
Lightning's per-step hooks and logging). ``lr_finder_vs_lightning_tuner`` is its time
over the tuner's (<= 1.0: the in-memory restore must not cost more than the tuner's
checkpoint round trip on disk). Both finders' suggestions are printed for reference;
they use different rules and need not agree.

Usage: ``python benchmarks/lr_finder.py [--quick]``
"""

import contextlib
import functools
import io
import logging
import sys
import tempfile
import time
import warnings
from collections.abc import Iterator
from pathlib import Path

import lightning.pytorch as L
import torch
from lightning.pytorch.tuner import Tuner
from lit_callbacks import lr_find

from lit_train.data import DigitsDataModule, TensorLoader
from lit_train.models import MLP
from lit_train.modules import Classifier
from lit_train.training.optim import Optimization, attach_optimizers

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _harness import alternate, command_line, markdown_table, ratio_line, report

MIN_LR, MAX_LR, NUM_STEPS, THRESHOLD = 1e-7, 10.0, 100, 4.0
BATCH_SIZE, HIDDEN = 64, [256, 256]
PLAIN_BOUND, TUNER_BOUND = 1.3, 1.0
REPEATS = {True: 5, False: 11}


@functools.cache
def _digits() -> tuple[torch.Tensor, torch.Tensor]:
    datamodule = DigitsDataModule(batch_size=BATCH_SIZE, seed=0)
    datamodule.setup("fit")
    return datamodule.splits["train"]


def _model() -> Classifier:
    torch.manual_seed(0)
    module = Classifier(MLP(64, 10, hidden=HIDDEN), num_classes=10)
    attach_optimizers(module, Optimization(functools.partial(torch.optim.AdamW, lr=1e-3, weight_decay=0.01)))
    return module


def _loader() -> TensorLoader:
    x, y = _digits()
    return TensorLoader(x, y, batch_size=BATCH_SIZE, shuffle=True, seed=0)


def _trainer(root: str, **overrides) -> L.Trainer:
    return L.Trainer(accelerator="cpu", devices=1, logger=False, enable_checkpointing=False,
                     enable_progress_bar=False, enable_model_summary=False, default_root_dir=root, **overrides)


class _Runs:
    """The three contenders; each call times one run and keeps what it found."""

    def __init__(self, root: str) -> None:
        self.root = root
        self.lit_steps = NUM_STEPS
        self.lit_suggestions: set[float] = set()
        self.tuner_steps = 0
        self.tuner_suggestions: set[float | None] = set()

    def lit(self) -> float:
        trainer, model, loader = _trainer(self.root), _model(), _loader()
        started = time.perf_counter()
        finder = lr_find(trainer, model, train_dataloaders=loader, min_lr=MIN_LR, max_lr=MAX_LR,
                         num_training_steps=NUM_STEPS, early_stop_threshold=THRESHOLD, plot=False, apply=False)
        suggestion = finder.suggestion
        elapsed = time.perf_counter() - started
        self.lit_steps = len(finder.losses)
        self.lit_suggestions.add(suggestion)
        return elapsed

    def plain(self) -> float:
        trainer, model, loader = _trainer(self.root, max_steps=self.lit_steps), _model(), _loader()
        started = time.perf_counter()
        trainer.fit(model, train_dataloaders=loader)
        return time.perf_counter() - started

    def tuner(self) -> float:
        trainer, model, loader = _trainer(self.root), _model(), _loader()
        started = time.perf_counter()
        with contextlib.redirect_stderr(io.StringIO()):
            result = Tuner(trainer).lr_find(model, train_dataloaders=loader, min_lr=MIN_LR, max_lr=MAX_LR,
                                            num_training=NUM_STEPS, mode="exponential",
                                            early_stop_threshold=THRESHOLD, update_attr=False)
        suggestion = result.suggestion()
        elapsed = time.perf_counter() - started
        self.tuner_steps = len(result.results["lr"])
        self.tuner_suggestions.add(suggestion)
        return elapsed


@contextlib.contextmanager
def _quiet() -> Iterator[None]:
    """Lightning's per-fit messages and warnings off, and back on afterwards (a runner may go on)."""
    loggers = [logging.getLogger(name) for name in ("lightning.pytorch", "lightning.fabric")]
    levels = [logger.level for logger in loggers]
    for logger in loggers:
        logger.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", module="lightning")
            yield
    finally:
        for logger, level in zip(loggers, levels):
            logger.setLevel(level)


def main(quick: bool) -> list[tuple[str, bool]]:
    """Times the three contenders, prints the table and the RATIO lines, returns ``(line, met)`` pairs."""
    repeats = REPEATS[quick]
    with _quiet(), tempfile.TemporaryDirectory() as root:
        runs = _Runs(root)
        runs.lit()  # sets the step count the plain contender matches
        medians = alternate({"lit": runs.lit, "plain": runs.plain, "tuner": runs.tuner}, repeats=repeats)
    lit_suggestion = runs.lit_suggestions.pop() if len(runs.lit_suggestions) == 1 else runs.lit_suggestions
    tuner_suggestion = runs.tuner_suggestions.pop() if len(runs.tuner_suggestions) == 1 else runs.tuner_suggestions
    rows = [
        ["lit_callbacks.lr_find", medians["lit"], runs.lit_steps, 1e3 * medians["lit"] / runs.lit_steps,
         lit_suggestion, 1.0],
        ["plain steps (trainer.fit)", medians["plain"], runs.lit_steps, 1e3 * medians["plain"] / runs.lit_steps,
         "-", medians["plain"] / medians["lit"]],
        ["lightning Tuner.lr_find", medians["tuner"], runs.tuner_steps, 1e3 * medians["tuner"] / runs.tuner_steps,
         tuner_suggestion, medians["tuner"] / medians["lit"]],
    ]
    print(f"LR range test on the digits MLP, {MIN_LR:g} .. {MAX_LR:g}, up to {NUM_STEPS} steps, "
          f"median of {repeats} alternating rounds, {torch.get_num_threads()} torch thread(s)")
    print(markdown_table(["contender", "median s", "steps", "ms/step", "suggestion", "time / lr_find"], rows))
    results = [
        ratio_line("lr_finder_vs_plain_steps", medians["lit"] / medians["plain"], "<=", PLAIN_BOUND),
        ratio_line("lr_finder_vs_lightning_tuner", medians["lit"] / medians["tuner"], "<=", TUNER_BOUND),
    ]
    return report(results)


if __name__ == "__main__":
    command_line(main, __doc__, "fewer rounds (for BENCH=quick)")
