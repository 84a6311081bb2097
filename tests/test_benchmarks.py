"""The benchmark contenders and the step breakdown still run against the installed torch and Lightning.

Timings are the benchmarks' business (``make bench``); this only keeps the scripts from
rotting when an API they hook into changes.
"""

import importlib
import logging
import sys
import warnings
from pathlib import Path

import pytest

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"


@pytest.fixture(scope="module")
def bench():
    """The benchmark modules, imported without letting their quiet settings leak into other tests."""
    logs = [logging.getLogger(name) for name in ("lightning.pytorch", "lightning.fabric.utilities.seed")]
    levels = [log.level for log in logs]
    sys.path.insert(0, str(BENCHMARKS))
    try:
        with warnings.catch_warnings():  # _contenders silences warnings for the tables' sake
            modules = importlib.import_module("_contenders"), importlib.import_module("overhead")
            modules += (importlib.import_module("lr_finder"),)
        yield modules
    finally:
        sys.path.remove(str(BENCHMARKS))
        for log, level in zip(logs, levels):
            log.setLevel(level)


def _tiny(contenders):
    return contenders.Workload("tiny", ("data.batch_size=512",), steps=4)


@pytest.mark.parametrize("contender", ["raw", "plain_lightning", "lightning_floor", "lit_train"])
def test_every_contender_times_its_training_loop(bench, contender):
    contenders, *_ = bench
    assert getattr(contenders, contender)(_tiny(contenders)) > 0


def test_the_breakdown_times_every_part_it_names(bench):
    contenders, overhead, _ = bench
    raw_step, lit_step, parts = overhead._breakdown(_tiny(contenders), rounds=1)
    assert raw_step > 0 and lit_step > 0
    # Each hook point exists and was reached: a renamed Lightning internal would leave its part out.
    named = [label for label, *_ in overhead._PARTS]
    assert set(named) <= set(parts), set(named) - set(parts)
    assert {"callback GradientMonitor", "callback ProgressBar", "callback LearningRateMonitor"} <= set(parts)
    assert all(seconds > 0 for seconds in parts.values())


class _Records(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(record.getMessage())


def test_lit_train_runs_in_the_benchmarks_do_not_announce_their_seed(bench):
    contenders, *_ = bench
    seed_log, records = logging.getLogger(contenders.SEED_LOGGER), _Records()
    seed_log.addHandler(records)
    try:
        contenders.lit_train(_tiny(contenders))
    finally:
        seed_log.removeHandler(records)
    assert not [message for message in records.messages if message.startswith("Seed set to")]


def test_the_lr_finder_benchmark_writes_only_under_its_own_folder(bench, tmp_path, monkeypatch):
    *_, lr_finder = bench
    out, elsewhere = tmp_path / "out", tmp_path / "cwd"
    out.mkdir()
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)  # `make bench` runs from the repository root
    monkeypatch.setattr(lr_finder, "NUM_STEPS", 20)
    runs = lr_finder._Runs(str(out))
    with lr_finder._quiet():
        assert runs.lit() > 0 and runs.tuner() > 0
    assert len(runs.lit_suggestions) == 1 and runs.tuner_steps > 0
    assert list(elsewhere.iterdir()) == []
    assert not [path for path in out.rglob("*") if path.is_file()]  # the finders keep nothing once done
