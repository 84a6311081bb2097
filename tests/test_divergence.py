"""A run that fails numerically says so: status "diverged", exit code 3 and the reason in summary.json, whether
gradients turned NaN, the loss blew up while staying finite, or too many steps had to be skipped; a sweep records
such a job as failed with the reason and goes on. stopped_reason holds whatever the test stage reloads."""

import json

import pytest
from support import FAST, ROOT, read_summary, run_cli

from lit_train.training.summary import EXIT_DIVERGED

BYO = {"PYTHONPATH": str(ROOT / "tests" / "byo")}
QUIET = ["callbacks.progress_bar=null", "test=false"]


def test_exploding_gradients_end_the_run_as_diverged(tmp_path):
    run_dir = tmp_path / "run"
    result = run_cli("optimizer=sgd", "optimizer.lr=1e12", "scheduler=none", *QUIET, f"hydra.run.dir={run_dir}",
                     cwd=tmp_path)
    assert result.returncode == EXIT_DIVERGED == 3, result.stderr[-3000:]
    summary = read_summary(run_dir)
    assert (summary["status"], summary["stopped_reason"]) == ("diverged", "non_finite_gradient")
    assert "lit_train: diverged after" in result.stdout and "lower the learning rate (optimizer.lr)" in result.stdout
    assert (run_dir / "checkpoints" / "last.ckpt").is_file()  # nothing trained is lost


def test_a_finite_blow_up_of_the_validation_loss_ends_the_run_as_diverged(tmp_path):
    run_dir = tmp_path / "run"
    result = run_cli("model._target_=blowup.BlowUpClassifier", *FAST, "trainer.max_epochs=5", *QUIET,
                     f"hydra.run.dir={run_dir}", cwd=tmp_path, env=BYO)
    assert result.returncode == 3, result.stderr[-3000:]
    summary = read_summary(run_dir)
    assert (summary["status"], summary["stopped_reason"], summary["epoch"]) == ("diverged", "diverged", 2)


def test_the_divergence_rule_is_off_with_one_key(tmp_path):
    run_dir = tmp_path / "run"
    result = run_cli("model._target_=blowup.BlowUpClassifier", *FAST, "trainer.max_epochs=3", *QUIET,
                     "callbacks.divergence=null", f"hydra.run.dir={run_dir}", cwd=tmp_path, env=BYO)
    assert result.returncode == 0, result.stderr[-3000:]
    assert read_summary(run_dir)["status"] == "completed"


def test_skipping_most_steps_ends_the_run_as_diverged(tmp_path):
    run_dir = tmp_path / "run"
    poisoned = "[" + ",".join(str(step) for step in range(0, 12, 2)) + "]"  # every other step
    result = run_cli("model._target_=planted_nan.PoisonedClassifier", f"+model.poison_steps={poisoned}", *FAST,
                     "trainer.max_epochs=3", "trainer.limit_train_batches=4", *QUIET,
                     "callbacks.gradient_monitor.on_nonfinite=skip", "callbacks.gradient_monitor.log_every_n_steps=1",
                     f"hydra.run.dir={run_dir}", cwd=tmp_path, env=BYO)
    assert result.returncode == 3, result.stderr[-3000:]
    summary = read_summary(run_dir)
    assert (summary["status"], summary["stopped_reason"]) == ("diverged", "too_many_skipped_steps")


def test_stopped_reason_survives_the_test_stage_reloading_the_best_checkpoint(tmp_path):
    run_dir = tmp_path / "run"
    result = run_cli(*FAST, "trainer.max_epochs=6", "+callbacks=early_stopping", "callbacks.early_stopping.patience=1",
                     "callbacks.early_stopping.min_delta=10", "callbacks.progress_bar=null", "test=true",
                     f"hydra.run.dir={run_dir}", cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    summary = read_summary(run_dir)
    assert (summary["stopped_reason"], summary["epoch"]) == ("patience", 2) and summary["test_metrics"]


@pytest.mark.slow
def test_a_sweep_records_a_diverged_job_and_goes_on(tmp_path):
    sweep = tmp_path / "sweep"
    result = run_cli("-m", "optimizer=sgd", "scheduler=none", "optimizer.lr=1e12,0.01", *FAST, *QUIET,
                     f"hydra.sweep.dir={sweep}", cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    statuses = [json.loads((sweep / job / "summary.json").read_text())["status"] for job in ("0", "1")]
    assert statuses == ["diverged", "completed"]
