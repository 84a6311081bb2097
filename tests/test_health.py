"""Every training run's health record: each curve check finds the problem planted for it through the CLI (in
summary.json, lit_train.log and the printed summary), a healthy run has none, the rules hold on synthetic curves,
and the record survives a resume with nothing lost or counted twice."""

import dataclasses
import math
import re
import shlex

import pytest
from support import ROOT, compose_config, read_summary, run_cli

from lit_train.config.validate import GROUP_RULES, validate
from lit_train.training.curves import Curves, read_curves
from lit_train.training.doctor.findings import CHECKS, SEVERITIES, TrainingFinding
from lit_train.training.health import HealthSettings, Levers, examine
from lit_train.training.health.curve_checks import divergence, loss_not_decreasing, oscillation, overfitting
from lit_train.training.health.gradient_checks import (
    exploding_gradient, no_gradient, nonfinite_gradient, vanishing_gradient,
)
from lit_train.training.run import run
from lit_train.training.summary import format_summary

QUIET = ["callbacks.progress_bar=null"]
#: Digits, two short epochs with a logged training loss every few steps, no test stage.
SHORT = [*QUIET, "trainer.max_epochs=2", "trainer.log_every_n_steps=4", "test=false"]
LEVERS = Levers(lr=0.01, weight_decay=0.01, dropout=0.0)
SETTINGS = HealthSettings()


def _steps(values, every=10):
    """A curve logged every ``every`` steps."""
    return [(every * i, float(v)) for i, v in enumerate(values)]


def _checks(findings) -> list[str]:
    return [finding.check for finding in findings]


def _readme_blocks(language: str) -> list[str]:
    return re.findall(rf"```{language}\n(.*?)```", (ROOT / "README.md").read_text(), flags=re.S)


def _checks_of(summary) -> list[str]:
    return [finding["check"] for finding in summary["health"]]


def _train(tmp_path, *overrides):
    """Trains through the CLI; returns the run directory, summary.json and the console output."""
    run_dir = tmp_path / "run"
    result = run_cli(*overrides, f"hydra.run.dir={run_dir}", cwd=tmp_path)
    assert result.returncode in (0, 3), result.stderr[-3000:]
    return run_dir, read_summary(run_dir), result.stdout


def _assert_recorded(run_dir, summary, stdout, check, severity):
    """``check`` is in summary.json's health list, lit_train.log and the health block of the printed summary."""
    (finding,) = [f for f in summary["health"] if f["check"] == check]
    assert set(finding) == {"check", "severity", "step", "message", "fix", "evidence"}
    assert finding["severity"] == severity and isinstance(finding["step"], int)
    level = severity.upper()
    logged = f"[lit_train.health][{level}] - {check} at step {finding['step']}: {finding['message']}; try {finding['fix']}"
    assert logged in (run_dir / "lit_train.log").read_text()
    assert re.search(r"^  health: .*\d " + severity, stdout, flags=re.M)
    assert f"    {severity} {check} at step {finding['step']}: {finding['message']}\n" in stdout
    assert f"      try: {finding['fix']}\n" in stdout
    assert (run_dir / "report.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    return finding


# ------------------------------------------------------------------ planted problems, through the CLI


def test_a_learning_rate_far_too_low_leaves_the_loss_at_chance_as_the_readme_shows(tmp_path):
    (command,) = [line for block in _readme_blocks("bash") for line in block.splitlines() if "optimizer.lr=1e-7" in line]
    (shown,) = [block for block in _readme_blocks("text") if block.startswith("  health:")]
    run_dir, summary, stdout = _train(tmp_path, *shlex.split(command)[3:], *QUIET)
    finding = _assert_recorded(run_dir, summary, stdout, "loss_not_decreasing", "warning")
    assert "below the chance loss 2.303" in finding["message"] and finding["fix"].startswith("optimizer.lr=1e-06 ")
    assert shown in stdout
    assert summary["status"] == "completed"  # a finding is no failure


def test_a_tiny_training_split_overfits_and_the_record_names_the_epoch_it_started(tmp_path):
    run_dir, summary, stdout = _train(tmp_path, *QUIET, "data.val_fraction=0.85", "data.test_fraction=0.05",
                                      "optimizer.lr=3e-3", "scheduler=none", "trainer.max_epochs=15", "test=false")
    finding = _assert_recorded(run_dir, summary, stdout, "overfitting", "warning")
    epoch = finding["evidence"]["best_epoch"]
    assert 2 <= epoch <= 10 and f"the validation loss rose since epoch {epoch} (step {finding['step']})" in finding["message"]
    assert finding["evidence"]["last"] > 1.1 * finding["evidence"]["best"]
    assert finding["fix"].startswith("+callbacks=early_stopping, optimizer.weight_decay=0.1, model.net.dropout=0.2")


def test_sgd_with_a_learning_rate_too_high_oscillates(tmp_path):
    run_dir, summary, stdout = _train(tmp_path, *SHORT, "optimizer=sgd", "optimizer.lr=1", "scheduler=none")
    finding = _assert_recorded(run_dir, summary, stdout, "oscillation", "warning")
    assert finding["fix"].startswith("optimizer.lr=0.333, ")
    assert "divergence" not in _checks_of(summary)


def test_sgd_with_a_huge_learning_rate_diverges(tmp_path):
    run_dir, summary, stdout = _train(tmp_path, *SHORT, "optimizer=sgd", "optimizer.lr=5", "scheduler=none")
    assert summary["status"] == "diverged"
    finding = _assert_recorded(run_dir, summary, stdout, "divergence", "error")
    assert finding["fix"].startswith("optimizer.lr=0.5, trainer.gradient_clip_val=1.0")
    # The blow-up explains the bouncing and the stall: neither is reported besides it.
    assert not {"oscillation", "loss_not_decreasing"} & set(_checks_of(summary))


def test_gradient_norms_far_above_the_threshold_explode(tmp_path):
    run_dir = tmp_path / "run"
    result = run_cli(*SHORT, "model._target_=loud_loss.LoudLossClassifier", f"hydra.run.dir={run_dir}", cwd=tmp_path,
                     env={"PYTHONPATH": str(ROOT / "tests" / "byo")})
    assert result.returncode == 0, result.stderr[-3000:]
    summary = read_summary(run_dir)
    finding = _assert_recorded(run_dir, summary, result.stdout, "exploding_gradient", "warning")
    assert set(finding["evidence"]["largest"]) == {"net.layers.0", "net.layers.2", "net.layers.4"}
    assert min(finding["evidence"]["largest"].values()) > 100
    assert _checks_of(summary) == ["exploding_gradient"]  # the loss curves are healthy: Adam ignores the scale


def test_a_healthy_run_has_an_empty_record_and_no_health_block(tmp_path):
    run_dir, summary, stdout = _train(tmp_path, *QUIET, "trainer.max_epochs=3")
    assert summary["health"] == []
    assert "  health:" not in stdout
    assert "[lit_train.health][INFO] - healthy" in (run_dir / "lit_train.log").read_text()
    assert (run_dir / "report.png").stat().st_size > 10_000
    # The keys other code reads are all still there.
    assert {"status", "best_score", "final_monitor_value", "global_step", "wall_time_s", "stopped_reason"} <= set(summary)


@pytest.mark.slow
def test_the_default_digits_run_is_healthy(tmp_path):
    run_dir, summary, stdout = _train(tmp_path, *QUIET)
    assert summary["status"] == "completed" and summary["global_step"] == 400
    assert summary["health"] == [] and "  health:" not in stdout


def test_actions_that_only_look_get_no_record_and_no_picture(tmp_path):
    run_dir, summary, _ = _train(tmp_path, *QUIET, "action=show_schedule", "trainer.max_epochs=2")
    assert "health" not in summary and not (run_dir / "report.png").exists()


@pytest.mark.slow
def test_under_ddp_rank_zero_records_the_health_once(tmp_path):
    run_dir, summary, _ = _train(tmp_path, "trainer=ddp", "trainer.accelerator=cpu", "trainer.devices=2", *SHORT,
                                 "optimizer.lr=1e-7")
    assert _checks_of(summary) == ["loss_not_decreasing"]
    assert (run_dir / "lit_train.log").read_text().count("loss_not_decreasing at step") == 1
    assert "lit_train.health" not in (run_dir / "lit_train_rank1.log").read_text()
    assert (run_dir / "report.png").is_file()


def test_a_resumed_run_keeps_the_findings_from_before_without_repeating_them(tmp_path):
    """Trained one epoch, resumed for two more: the record is that of the whole run, read once at its end."""
    common = [*SHORT, "optimizer.lr=1e-7", "trainer.accelerator=cpu"]
    run(compose_config([*common, "trainer.max_epochs=1", "health.report=false"], run_dir=tmp_path))
    assert _checks_of(read_summary(tmp_path)) == ["loss_not_decreasing"]
    assert not (tmp_path / "report.png").exists()  # health.report=false
    run(compose_config([*common, "trainer.max_epochs=3", "resume=auto"], run_dir=tmp_path))
    assert (tmp_path / "report.png").is_file()
    summary = read_summary(tmp_path)
    assert summary["resumed_at_step"] == 20 and summary["global_step"] == 60
    (finding,) = summary["health"]
    # Judged from a quarter of the whole run on: a step from before the resume, whose points are kept.
    assert finding["check"] == "loss_not_decreasing" and finding["step"] == 15
    curve = read_curves(tmp_path / "metrics.csv").series["train/loss_step"]
    assert [step for step, _ in curve] == list(range(3, 60, 4))  # every step once


# ------------------------------------------------------------------ the rules, on synthetic curves


def test_a_flat_loss_does_not_decrease_and_a_falling_one_does():
    flat = _steps([2.31, 2.30, 2.31, 2.30, 2.30])
    (finding,) = loss_not_decreasing(flat, 2.31, None, 0.25, 0.05, 4.0, LEVERS)
    assert finding.step == 10 and "less than 5% below its first value 2.31" in finding.message
    assert finding.fix.startswith("optimizer.lr=0.1 ")
    assert loss_not_decreasing(_steps([2.3, 1.5, 0.9, 0.5]), 2.3, None, 0.25, 0.05, 4.0, LEVERS) == []


def test_a_loss_that_starts_learning_late_is_not_flagged():
    late = _steps([2.3, 2.3, 2.3, 2.3, 2.3, 2.3, 1.0, 0.5])
    assert loss_not_decreasing(late, 2.3, math.log(10), 0.25, 0.05, 4.0, LEVERS) == []


def test_a_loss_that_falls_to_chance_and_stays_is_not_learning():
    (finding,) = loss_not_decreasing(_steps([5.0, 3.0, 2.31, 2.30, 2.30]), 5.0, math.log(10), 0.25, 0.05, 4.0, LEVERS)
    assert "the chance loss 2.303 (guessing uniformly)" in finding.message


def test_a_stall_after_a_blow_up_asks_for_a_lower_learning_rate():
    (finding,) = loss_not_decreasing(_steps([2.3, 50.0, 2.31, 2.30, 2.30]), 2.3, math.log(10), 0.25, 0.05, 4.0,
                                     LEVERS)
    assert "after it blew up to 50 at step 10" in finding.message and finding.fix.startswith("optimizer.lr=0.001 ")


@pytest.mark.parametrize("values", [[], [2.3], [2.3, 2.3], [math.nan, 2.3, 2.3]], ids=["empty", "one", "two", "nan"])
def test_too_few_points_say_nothing(values):
    curve = _steps(values)
    assert loss_not_decreasing(curve, 2.3, None, 0.25, 0.05, 4.0, LEVERS) == []
    assert oscillation(curve, 2.3, 0.3, 0.1, LEVERS) == []
    assert overfitting(curve, curve, {}, 0.1, 3, LEVERS) == []


def test_nan_points_are_skipped_by_the_checks_that_compare_values():
    assert loss_not_decreasing(_steps([2.3, math.nan, 1.0, math.nan, 0.5]), 2.3, None, 0.25, 0.05, 4.0, LEVERS) == []


def test_a_loss_that_ends_nan_or_far_above_its_start_diverged_from_the_step_it_never_came_back():
    (finding,) = divergence(_steps([2.3, 1.0, 50.0, 0.9, 30.0, math.nan, math.inf]), 4.0, LEVERS)
    assert (finding.check, finding.severity, finding.step) == ("divergence", "error", 40)
    assert finding.fix == "optimizer.lr=0.001, trainer.gradient_clip_val=1.0 or +callbacks=warmup"
    assert divergence(_steps([2.3, 50.0, 1.0, 0.5]), 4.0, LEVERS) == []  # a spike that recovers
    assert divergence(_steps([2.3, 1.0, 0.5, 9.0]), 4.0, LEVERS) == []  # below 4x
    (never,) = divergence(_steps([math.nan]), 4.0, LEVERS)  # never finite: diverged however short
    assert never.step == 0


def test_a_negative_first_loss_diverges_only_when_it_turns_nan():
    assert divergence(_steps([-1.0, -2.0, 5.0]), 4.0, LEVERS) == []
    assert _checks(divergence(_steps([-1.0, -2.0, math.nan]), 4.0, LEVERS)) == ["divergence"]


def test_big_swings_oscillate_and_noise_at_the_floor_does_not():
    (finding,) = oscillation(_steps([2.0, 2.5, 1.8, 2.6, 1.5, 2.2, 1.7]), 2.0, 0.3, 0.1, LEVERS)
    assert finding.step == 10 and finding.fix.startswith("optimizer.lr=0.00333, ")
    # The optimizer study's momentum run: down from 1.02 in one epoch, then noise of a few thousandths.
    floor = _steps([1.02, 0.091, 0.071, 0.034, 0.0117, 0.0126, 0.0102, 0.0099, 0.0133, 0.0098, 0.0101])
    assert oscillation(floor, 1.02, 0.3, 0.1, LEVERS) == []
    assert oscillation(_steps([2.0, 1.6, 1.3, 1.1, 1.0, 0.95]), 2.0, 0.3, 0.1, LEVERS) == []


def test_validation_rising_while_training_falls_is_overfitting_from_the_best_epoch():
    val = _steps([1.0, 0.6, 0.5, 0.55, 0.6, 0.65])
    train = _steps([1.1, 0.6, 0.4, 0.3, 0.2, 0.1])
    epochs = {step: i for i, (step, _) in enumerate(val)}
    (finding,) = overfitting(train, val, epochs, 0.1, 3, LEVERS)
    assert finding.step == 20 and finding.evidence["best_epoch"] == 2
    assert "rose since epoch 2 (step 20), from 0.5 to 0.65 over 3 validations" in finding.message
    assert overfitting(train, val, epochs, 0.5, 3, LEVERS) == []  # a rise below the threshold
    assert overfitting(train, val, epochs, 0.1, 4, LEVERS) == []  # too few validations after the best
    rising_too = _steps([1.1, 0.6, 0.4, 0.5, 0.6, 0.7])
    assert overfitting(rising_too, val, epochs, 0.1, 3, LEVERS) == []  # both rise: not overfitting
    with_nan = _steps([1.0, 0.6, 0.5, math.nan, 0.6, 0.65, 0.7])
    assert _checks(overfitting(_steps([1.1, 0.6, 0.4, 0.3, 0.2, 0.1, 0.05]), with_nan, {}, 0.1, 3, LEVERS)) == [
        "overfitting"]


def test_gradient_norms_past_their_thresholds_on_enough_logged_steps():
    layers = {"net.0": _steps([1.0, 500.0, 800.0, 2.0, 300.0]), "net.2": _steps([1.0, 200.0, 1.0, 1.0, 1.0])}
    (finding,) = exploding_gradient(layers, 100.0, 3, LEVERS)
    assert finding.step == 10 and "net.0 up to 800" in finding.message and "net.2" not in finding.message
    assert exploding_gradient(layers, 100.0, 4, LEVERS) == []
    assert "lower the learning rate (optimizer.lr=0.001)" in finding.fix
    small = {"net.0": _steps([1e-9, 1e-9, 1e-8]), "net.2": _steps([0.0, 0.0, 0.0]), "net.4": _steps([1.0] * 3)}
    assert vanishing_gradient(small, 1e-7, 3)[0].evidence["smallest"] == {"net.0": 1e-9}
    assert no_gradient(small, 3)[0].evidence["layers"] == ["net.2"]


def test_nonfinite_gradients_from_the_stop_the_skipped_steps_or_a_logged_norm():
    logged = Curves({"grad_norm/total": _steps([1.0, math.nan, 1.0])})
    stopped = {"stopped_reason": "non_finite_gradient", "skipped_steps": 1, "global_step": 17}
    assert [(f.severity, f.step) for f in nonfinite_gradient(Curves(), stopped, LEVERS)] == [("error", 17)]
    skipped = {"stopped_reason": "max_epochs", "skipped_steps": 2, "global_step": 40}
    counts = Curves({"grad_norm/skipped_steps": _steps([0.0, 0.0, 1.0, 2.0])})
    assert [(f.severity, f.step) for f in nonfinite_gradient(counts, skipped, LEVERS)] == [("warning", 20)]
    applied = {"stopped_reason": "max_epochs", "skipped_steps": 0, "global_step": 40}
    assert [(f.severity, f.step) for f in nonfinite_gradient(logged, applied, LEVERS)] == [("error", 10)]
    assert nonfinite_gradient(Curves(), applied, LEVERS) == []


def test_a_stop_for_divergence_is_a_finding_when_the_curves_cannot_show_it():
    summary = {"stopped_reason": "diverged", "skipped_steps": 0, "global_step": 39}
    (finding,) = examine(Curves(), summary, SETTINGS, LEVERS)
    assert (finding.check, finding.step) == ("divergence", 39) and "training stopped" in finding.message


def test_one_epoch_only_says_nothing():
    curves = Curves({"train/loss": [(19, 2.3)], "val/loss": [(19, 2.3)], "train/loss_step": [(9, 2.3)]}, 20, {19: 0})
    assert examine(curves, {"stopped_reason": "max_epochs", "global_step": 20}, SETTINGS, LEVERS) == []


def test_findings_come_in_step_order_and_every_check_is_in_the_vocabulary():
    curves = Curves({
        "train/loss_step": _steps([2.3, 2.31, 2.3, 2.3, 2.3]),
        "grad_norm/net.0": _steps([500.0, 500.0, 500.0, 500.0, 500.0], every=5),
    })
    found = examine(curves, {"stopped_reason": "max_epochs", "skipped_steps": 0, "global_step": 40}, SETTINGS,
                    LEVERS)
    assert [(f.check, f.step) for f in found] == [("exploding_gradient", 0), ("loss_not_decreasing", 10)]
    assert all(f.check in CHECKS and f.severity in SEVERITIES for f in found)
    with pytest.raises(ValueError, match="`check` must be one of"):
        TrainingFinding("exploding", "warning", "m", "f", step=1)


def test_a_metrics_csv_written_twice_at_a_step_counts_each_point_once(tmp_path):
    (tmp_path / "metrics.csv").write_text(
        "epoch,step,train/loss_step,val/loss\n"
        ",4,2.0,\n0,9,,1.5\n,4,1.9,\n0,9,,1.4\n,14,nan,\n"  # rows from before a resume, logged again after it
    )
    curves = read_curves(tmp_path / "metrics.csv")
    assert curves.series["train/loss_step"][:1] == [(4, 1.9)] and curves.series["val/loss"] == [(9, 1.4)]
    assert math.isnan(curves.series["train/loss_step"][1][1]) and curves.finite("train/loss_step") == [(4, 1.9)]
    assert curves.epochs == {9: 0} and curves.steps_per_epoch == 10
    assert read_curves(tmp_path / "missing.csv") == Curves()


# ------------------------------------------------------------------ the summary and the config node


def test_the_summary_prints_a_health_block_only_for_findings():
    summary = {"status": "completed", "global_step": 40, "wall_time_s": 2.0, "stopped_reason": "max_epochs",
               "monitor": "val/loss", "mode": "min", "best_score": 2.3, "run_dir": "runs/a", "test_metrics": {},
               "health": []}
    assert "health" not in format_summary(summary)
    summary["health"] = [TrainingFinding("loss_not_decreasing", "warning", "stuck", "optimizer.lr=0.1", step=10)
                         .to_dict()]
    assert format_summary(summary).splitlines()[2:] == [
        "  health: 1 warning(s)",
        "    warning loss_not_decreasing at step 10: stuck",
        "      try: optimizer.lr=0.1",
        "  run dir: runs/a",
    ]


def test_the_health_node_holds_the_settings_defaults_and_a_rule_for_each():
    node = compose_config([]).health
    defaults = {field.name: field.default for field in dataclasses.fields(HealthSettings)}
    assert dict(node) == defaults
    assert set(GROUP_RULES["health"]) == set(defaults)
    assert validate(compose_config([], run_dir="runs/a")) == []


@pytest.mark.parametrize(("override", "problem"), [
    ("health.overfitting_rise=0", "health.overfitting_rise: must be a number > 0, got 0"),
    ("health.judge_after=1.5", "health.judge_after: must be a number in (0, 1), got 1.5"),
    ("health.report=maybe", "health.report: must be true or false, got 'maybe'"),
    ("+health.overfit_rise=0.2", "health.overfit_rise: no such setting; did you mean 'overfitting_rise'? (settings: "
                                 "report, judge_after, not_decreasing_tolerance, divergence_factor, overfitting_rise,"),
])
def test_bad_thresholds_are_refused_before_anything_runs(override, problem, tmp_path):
    result = run_cli(override, cwd=tmp_path)
    assert result.returncode == 2 and problem in result.stderr
    assert not (tmp_path / "outputs").exists()
