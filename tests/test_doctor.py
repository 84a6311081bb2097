"""action=doctor: each check finds the problem planted for it (tests/byo/doctor_cases.py), the default digits job
is healthy, doctor.json keeps its schema, an error finding exits 4, and the doctor leaves the module as it found it."""

import dataclasses
import json
import math
import random
from pathlib import Path

import lightning.pytorch as L
import numpy as np
import pytest
import torch
from support import ROOT, compose_config, read_summary, run_cli

from lit_train.config.validate import GROUP_RULES, validate
from lit_train.training.construct import construct
from lit_train.training.doctor import CHECKS, SEVERITIES, DoctorSettings, run_doctor
from lit_train.training.doctor.data_checks import data_shapes
from lit_train.training.doctor.findings import CheckSkipped
from lit_train.training.doctor.optimization_checks import lr_checks
from lit_train.training.optim import attach_optimizers
from lit_train.training.run import build_optimization, build_trainer, run
from lit_train.training.signals import StopSignals

BYO = {"PYTHONPATH": str(ROOT / "tests" / "byo")}
QUIET = ["callbacks.progress_bar=null"]
#: The LR range test is the slow part; the in-process cases skip it (it does not run under fast_dev_run).
NO_LR_TEST = [*QUIET, "logger=none", "trainer.fast_dev_run=true"]
PLANTED_MODEL = "model._target_=doctor_cases.PlantedClassifier"
PLANTED_DATA = "data._target_=doctor_cases.PlantedData"


@pytest.fixture
def byo(monkeypatch):
    monkeypatch.syspath_prepend(str(ROOT / "tests" / "byo"))


def _doctor(run_dir: Path, *overrides: str) -> dict:
    """Runs action=doctor in this process; returns doctor.json."""
    run(compose_config(["action=doctor", *overrides], run_dir=run_dir))
    return json.loads((run_dir / "doctor.json").read_text())


def _found(report: dict, check: str) -> list[dict]:
    return [finding for finding in report["findings"] if finding["check"] == check]


def _check_schema(report: dict) -> None:
    assert set(report) == {"verdict", "findings", "skipped"}
    assert report["verdict"] in ("healthy", "problems")
    for finding in report["findings"]:
        assert set(finding) == {"check", "severity", "message", "fix", "evidence"}
        assert finding["check"] in CHECKS and finding["severity"] in SEVERITIES
        assert finding["message"] and finding["fix"] and isinstance(finding["evidence"], dict)
    for skipped in report["skipped"]:
        assert set(skipped) == {"check", "reason"} and skipped["check"] in CHECKS and skipped["reason"]
    ran = {finding["check"] for finding in report["findings"]}
    assert not ran & {skipped["check"] for skipped in report["skipped"]}


# ------------------------------------------------------------------ end to end, through the CLI


def test_the_default_digits_job_is_healthy(tmp_path):
    run_dir = tmp_path / "run"
    result = run_cli("action=doctor", *QUIET, f"hydra.run.dir={run_dir}", cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    report = json.loads((run_dir / "doctor.json").read_text())
    _check_schema(report)
    assert report["verdict"] == "healthy"
    assert [f for f in report["findings"] if f["severity"] != "info"] == []
    # Every check ran, but the one the model gives nothing to look at (no tanh or sigmoid).
    assert [skipped["check"] for skipped in report["skipped"]] == ["activation_saturation"]
    assert (run_dir / "doctor.png").stat().st_size > 10_000
    assert read_summary(run_dir)["doctor"] == {"verdict": "healthy", "errors": 0, "warnings": 0}
    assert "lit_train doctor: healthy (0 error(s), 0 warning(s), 0 info(s))" in result.stdout
    assert "lit_train: doctor completed in " in result.stdout and "best" not in result.stdout


def test_an_error_finding_exits_with_4_and_keeps_the_report(tmp_path):
    run_dir = tmp_path / "run"
    result = run_cli("action=doctor", PLANTED_DATA, "+data.problem=labels", *QUIET, f"hydra.run.dir={run_dir}",
                     cwd=tmp_path, env=BYO)
    assert result.returncode == 4, result.stderr[-3000:]
    report = json.loads((run_dir / "doctor.json").read_text())
    _check_schema(report)
    (finding,) = _found(report, "label_range")
    assert finding["severity"] == "error" and finding["evidence"]["max"] == 10 and finding["evidence"]["num_classes"] == 10
    assert "error   label_range: 92 of 640 labels are outside [0, 10)" in result.stdout
    # Cross-entropy cannot run on such labels: the checks that need a loss say so instead of failing the doctor.
    skipped = {entry["check"]: entry["reason"] for entry in report["skipped"]}
    assert "IndexError" in skipped["init_loss"] and "IndexError" in skipped["lr_too_high"]
    assert read_summary(run_dir)["status"] == "completed"


def test_a_module_with_its_own_configure_optimizers_and_no_forward(tmp_path):
    run_dir = tmp_path / "run"
    result = run_cli("action=doctor", "model._target_=byo_models.OwnOptimizerModule",
                     "data._target_=byo_models.BlobsDataModule", *QUIET, f"hydra.run.dir={run_dir}", cwd=tmp_path,
                     env=BYO)
    assert result.returncode == 0, result.stderr[-3000:]
    report = json.loads((run_dir / "doctor.json").read_text())
    _check_schema(report)
    # BlobsDataModule serves the same tensors for training, validation and testing.
    assert {f["evidence"]["split"] for f in _found(report, "split_overlap")} == {"validation", "test"}
    skipped = {entry["check"]: entry["reason"] for entry in report["skipped"]}
    assert "has no forward(inputs)" in skipped["label_range"] and "has no forward(inputs)" in skipped["init_loss"]
    # Its own optimizer (SGD, lr 0.0123) is the one overfitted and compared with the range test.
    assert "cannot_overfit" not in skipped and "lr_too_high" not in skipped and "lr_too_low" not in skipped
    assert "OwnOptimizerModule has its own configure_optimizers" in result.stdout


@pytest.mark.parametrize(("override", "problem"), [
    ("doctor.overfit_steps=0", "doctor.overfit_steps: must be an integer >= 1, got 0"),
    ("doctor.vanishing_ratio=0.5", "doctor.vanishing_ratio: must be a number > 1, got 0.5"),
])
def test_bad_thresholds_are_refused_before_anything_runs(override, problem, tmp_path):
    result = run_cli("action=doctor", override, cwd=tmp_path)
    assert result.returncode == 2 and problem in result.stderr


# ------------------------------------------------------------------ each check, on a planted problem (in-process)


@pytest.mark.parametrize(("problem", "extra", "check", "severity", "names"), [
    ("overconfident", [], "init_loss", "warning", "6.458"),
    ("saturated", ["model.net.activation=tanh"], "activation_saturation", "warning", "net.layers.1"),
    ("dead", [], "dead_units", "warning", "net.layers.3 100%"),
    ("nan_layer", [], "nonfinite_forward", "error", "net.layers.1 (_Broken)"),
    ("detached", [], "no_gradient", "warning", "net.layers.0.weight, net.layers.0.bias"),
    ("vanishing", [], "vanishing_gradient", "warning", "net.layers.0"),
    ("exploding", [], "exploding_gradient", "warning", "net.layers.0"),
    ("nonfinite_gradient", [], "nonfinite_gradient", "error", "net.layers.0.weight"),
    ("shuffled", [], "cannot_overfit", "error", "not 100%"),
])
def test_a_planted_model_problem_is_found(problem, extra, check, severity, names, tmp_path, byo):
    report = _doctor(tmp_path, PLANTED_MODEL, f"+model.problem={problem}", *extra, *NO_LR_TEST)
    _check_schema(report)
    (finding,) = _found(report, check)
    assert (finding["severity"], report["verdict"]) == (severity, "problems")
    assert names in finding["message"]


@pytest.mark.parametrize(("problem", "check", "severity", "names"), [
    ("nonfinite", "data_nonfinite", "error", "2 in the inputs"),
    ("scale", "data_scale", "warning", "mean 49.9, std 100"),
    ("imbalance", "label_imbalance", "warning", "class 0 has 623 training samples"),
    ("overlap", "split_overlap", "warning", "128 of 128 validation samples"),
])
def test_a_planted_data_problem_is_found(problem, check, severity, names, tmp_path, byo):
    report = _doctor(tmp_path, PLANTED_DATA, f"+data.problem={problem}", *NO_LR_TEST)
    (finding,) = _found(report, check)
    assert finding["severity"] == severity and names in finding["message"]


def test_non_finite_inputs_are_traced_to_the_batch_not_a_layer(tmp_path, byo):
    report = _doctor(tmp_path, PLANTED_DATA, "+data.problem=nonfinite", *NO_LR_TEST)
    (finding,) = _found(report, "nonfinite_forward")
    assert finding["evidence"] == {"module": "net.layers.0", "type": "Linear", "finite_inputs": False,
                                   "loss": "nan"}


def test_checks_that_cannot_run_are_listed_with_the_reason(tmp_path, byo):
    report = _doctor(tmp_path, PLANTED_DATA, "+data.problem=no_val", *NO_LR_TEST)
    skipped = {entry["check"]: entry["reason"] for entry in report["skipped"]}
    assert skipped == {
        "split_overlap": "no validation or test data to compare with the training data",
        "activation_saturation": "the model has no tanh- or sigmoid-like activation modules",
        "lr_too_high": "the LR range test does not run under trainer.fast_dev_run",
        "lr_too_low": "the LR range test does not run under trainer.fast_dev_run",
    }
    assert report["verdict"] == "healthy"


def test_shapes_or_dtypes_that_change_between_batches():
    x, y = torch.zeros(4, 8), torch.zeros(4, dtype=torch.long)
    assert data_shapes([(x, y), (x[:2], y[:2])]) == []  # a short last batch is fine
    (finding,) = data_shapes([(x, y), (torch.zeros(4, 9), y), (x.double(), y)])
    assert finding.check == "data_shapes" and finding.message == (
        "per-sample shapes or dtypes differ between batches: inputs: [8] float32, [8] float64, [9] float32")


# A range-test curve: flat until 1e-4, falling fastest around 1e-3, lowest at 1e-1, then exploding.
LRS = [10 ** (-7 + 8 * i / 99) for i in range(100)]
LOSSES = [2.3 if lr < 1e-4 else 2.3 - 0.7 * math.log10(lr / 1e-4) if lr <= 1e-1 else 0.2 + 5 * math.log10(lr / 1e-1)
          for lr in LRS]


def _use(lr: float) -> str:
    return f"optimizer.lr={lr:.3g}"


@pytest.mark.parametrize(("lr", "check"), [(1.0, "lr_too_high"), (1e-6, "lr_too_low"), (1e-3, None), (3e-2, None)])
def test_the_lr_is_held_against_the_range_test(lr, check):
    found = lr_checks(lr, LRS, LOSSES, 1e-3, 30.0, _use)
    assert [finding.check for finding in found] == ([check] if check else [])
    if check:
        assert found[0].fix.startswith("optimizer.lr=0.001 ") and found[0].evidence["suggestion"] == 1e-3


def test_a_range_test_without_a_descent_suggests_nothing():
    with pytest.raises(CheckSkipped, match="never clearly fell"):
        lr_checks(1e-3, LRS, [2.3] * 100, None, 30.0, _use)


def test_a_too_low_lr_is_found_by_the_range_test_and_explains_a_failed_overfit(tmp_path):
    report = _doctor(tmp_path, "optimizer=sgd", "optimizer.lr=1e-5", *QUIET, "logger=none")
    (low,) = _found(report, "lr_too_low")
    assert low["fix"].startswith("optimizer.lr=") and low["evidence"]["lr"] == 1e-5
    (overfit,) = _found(report, "cannot_overfit")
    assert overfit["severity"] == "warning" and overfit["fix"].startswith(low["fix"])


# ------------------------------------------------------------------ the doctor changes nothing


def _built(tmp_path: Path, overrides: list[str]):
    cfg = compose_config(["action=doctor", *QUIET, "logger=none", *overrides], run_dir=tmp_path)
    L.seed_everything(cfg.seed)
    datamodule, module = construct(cfg.data, "data"), construct(cfg.model, "model")
    optimization = build_optimization(cfg)
    attach_optimizers(module, optimization)
    return cfg, datamodule, module, optimization


def _rng() -> tuple:
    return torch.get_rng_state(), np.random.get_state()[1].copy(), random.getstate()


def _fit(module, datamodule) -> dict:
    trainer = L.Trainer(max_steps=3, accelerator="cpu", logger=False, enable_checkpointing=False,
                        enable_progress_bar=False, enable_model_summary=False, limit_val_batches=0)
    trainer.fit(module, datamodule=datamodule)
    return {name: value.clone() for name, value in module.state_dict().items()}


def test_the_doctor_restores_the_module_and_the_rng_and_training_after_it_is_unchanged(tmp_path):
    cfg, datamodule, module, optimization = _built(tmp_path / "a", ["trainer.max_epochs=1"])
    before, rng = {k: v.clone() for k, v in module.state_dict().items()}, _rng()
    with StopSignals() as signals:
        trainer = build_trainer(cfg, tmp_path / "a", signals)
        report = run_doctor(trainer, module, datamodule, tmp_path / "a", optimization, cfg.doctor)
    assert "lr_too_high" not in {skipped.check for skipped in report.skipped}  # the range test ran
    assert all(torch.equal(before[k], v) for k, v in module.state_dict().items())
    after = _rng()
    assert torch.equal(rng[0], after[0]) and np.array_equal(rng[1], after[1]) and rng[2] == after[2]
    trained_after_doctor = _fit(module, datamodule)

    _, datamodule, module, _ = _built(tmp_path / "b", ["trainer.max_epochs=1"])
    trained_alone = _fit(module, datamodule)
    assert all(torch.equal(trained_alone[k], v) for k, v in trained_after_doctor.items())


# ------------------------------------------------------------------ the doctor config node


def test_the_doctor_node_holds_the_settings_defaults_and_a_rule_for_each():
    node = compose_config([]).doctor
    defaults = {field.name: field.default for field in dataclasses.fields(DoctorSettings)}
    assert dict(node) == defaults
    assert set(GROUP_RULES["doctor"]) == set(defaults)
    assert validate(compose_config(["action=doctor"], run_dir="runs/a")) == []
