"""The benchmark contenders and the step breakdown still run against the installed torch and Lightning.

Timings are the benchmarks' business (``make bench``); this only keeps the scripts from
rotting when an API they hook into changes.
"""

import importlib
import logging
import os
import subprocess
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


@pytest.mark.parametrize("contender", ["raw", "raw_no_metrics", "plain_lightning", "plain_lightning_batched",
                                       "lightning_floor", "lit_train"])
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


def test_the_gpu_benchmark_says_in_one_line_that_there_is_no_gpu(bench, monkeypatch, capsys):
    gpu = importlib.import_module("gpu")
    monkeypatch.setattr(gpu.torch.cuda, "is_available", lambda: False)
    assert gpu.main() == []
    assert capsys.readouterr().out.count("\n") == 1


@pytest.mark.parametrize(("name", "peak"), [("NVIDIA H100 80GB HBM3", 989.0), ("NVIDIA H100 PCIe", 756.0),
                                            ("NVIDIA A100-SXM4-80GB", 312.0), ("NVIDIA L40S", 362.0),
                                            ("NVIDIA L4", 121.0), ("Some Future GPU", None)])
def test_the_gpu_benchmark_knows_the_peaks_of_common_devices(bench, name, peak):
    assert importlib.import_module("gpu").peak_tflops(name) == peak


@pytest.mark.slow
def test_the_gpu_benchmark_runs_its_code_path_on_the_cpu(tmp_path):
    # Compilation itself is tested in test_compile.py; here only the benchmark's own code runs.
    result = subprocess.run([sys.executable, str(BENCHMARKS / "gpu.py"), "--smoke"], capture_output=True, text=True,
                            cwd=tmp_path, env={**os.environ, "TORCH_COMPILE_DISABLE": "1"}, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    rows = [line for line in result.stdout.splitlines() if line.startswith("| raw") or line.startswith("| lit_train")]
    assert len(rows) == 4
