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
    lightning_log = logging.getLogger("lightning.pytorch")
    level = lightning_log.level
    sys.path.insert(0, str(BENCHMARKS))
    try:
        with warnings.catch_warnings():  # _contenders silences warnings for the tables' sake
            modules = importlib.import_module("_contenders"), importlib.import_module("overhead")
        yield modules
    finally:
        sys.path.remove(str(BENCHMARKS))
        lightning_log.setLevel(level)


def _tiny(contenders):
    return contenders.Workload("tiny", ("data.batch_size=512",), steps=4)


@pytest.mark.parametrize("contender", ["raw", "plain_lightning", "lightning_floor", "lit_train"])
def test_every_contender_times_its_training_loop(bench, contender):
    contenders, _ = bench
    assert getattr(contenders, contender)(_tiny(contenders)) > 0


def test_the_breakdown_times_every_part_it_names(bench):
    contenders, overhead = bench
    raw_step, lit_step, parts = overhead._breakdown(_tiny(contenders), rounds=1)
    assert raw_step > 0 and lit_step > 0
    # Each hook point exists and was reached: a renamed Lightning internal would leave its part out.
    named = [label for label, *_ in overhead._PARTS]
    assert set(named) <= set(parts), set(named) - set(parts)
    assert {"callback GradientMonitor", "callback ProgressBar", "callback LearningRateMonitor"} <= set(parts)
    assert all(seconds > 0 for seconds in parts.values())
