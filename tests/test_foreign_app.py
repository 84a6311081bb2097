"""hydra/sweeper=lit_optuna sweeps any Hydra app (tests/foreign_app), and runs apps written for hydra-optuna-sweeper."""

import os
import subprocess
import sys

import optuna
import pytest
import yaml
from optuna.trial import TrialState
from support import ROOT

APP = ROOT / "tests" / "foreign_app" / "app.py"
OPTUNA_APP = ROOT / "tests" / "foreign_app" / "app_optuna.py"
SEARCH = ["-m", "hydra/sweeper=lit_optuna", "hydra/sweeper/sampler=random", "hydra.sweeper.sampler.seed=0",
          "x=interval(-2,2)", "y=choice(-2,0,2)"]


def _run(app, *args: str, cwd) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONWARNINGS": "ignore"}
    return subprocess.run([sys.executable, str(app), *args], cwd=cwd, capture_output=True, text=True, timeout=300,
                          env=env)


def _study(sweep_dir, name: str = "app") -> optuna.Study:
    return optuna.load_study(study_name=name, storage=f"sqlite:///{sweep_dir / 'optuna.db'}")


def _distance(params: dict) -> float:
    return (params["x"] - 1.0) ** 2 + (float(params["y"]) + 2.0) ** 2


def test_the_generic_sweeper_imports_nothing_of_lit_train():
    modules = ["_impl", "app", "callbacks", "config", "optuna_sweeper", "storage", "trial"]
    code = "; ".join([*(f"import hydra_plugins.lit_train_optuna_sweeper.{m}" for m in modules), "import sys",
                      "print(sorted(m for m in sys.modules if m.partition('.')[0] == 'lit_train'))"])
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "[]"


@pytest.mark.slow
@pytest.mark.parametrize("n_jobs", [1, 2])
def test_a_foreign_app_is_swept_and_its_best_trial_written(n_jobs, tmp_path):
    sweep_dir = tmp_path / "sweep"
    result = _run(APP, *SEARCH, "hydra.sweeper.n_trials=5", f"hydra.sweeper.n_jobs={n_jobs}",
                  f"hydra.sweep.dir={sweep_dir}", cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    trials = _study(sweep_dir).trials
    # What each trial's job returned reached the study, from the sweeper's process or from the trial's own.
    assert [t.state for t in trials] == [TrialState.COMPLETE] * 5
    assert all(t.value == pytest.approx(_distance(t.params)) for t in trials)
    assert _study(sweep_dir).direction == optuna.study.StudyDirection.MINIMIZE
    best = yaml.safe_load((sweep_dir / "best.yaml").read_text())
    assert best["value"] == min(t.value for t in trials)
    assert (best["monitor"], best["mode"]) == ("value", "min")
    assert best["command"].startswith(f"python {APP} ")
    assert "lit_optuna: best of 5 trials (5 complete, 0 pruned, 0 failed)" in result.stdout


@pytest.mark.slow
def test_direction_maximize_and_a_pruner_stop_trials_through_the_trial_interface(tmp_path):
    sweep_dir = tmp_path / "sweep"
    result = _run(APP, *SEARCH, "steps=4", "hydra.sweeper.n_trials=8", "hydra.sweeper.n_jobs=2",
                  "hydra.sweeper.direction=maximize", "hydra/sweeper/pruner=median",
                  "hydra.sweeper.pruner.n_startup_trials=2", "hydra.sweeper.pruner.n_warmup_steps=0",
                  f"hydra.sweep.dir={sweep_dir}", cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    study = _study(sweep_dir)
    assert study.direction == optuna.study.StudyDirection.MAXIMIZE
    pruned = [t for t in study.trials if t.state == TrialState.PRUNED]
    assert pruned and all(len(t.intermediate_values) < 4 for t in pruned)
    assert all(len(t.intermediate_values) == 4 for t in study.trials if t.state == TrialState.COMPLETE)


@pytest.mark.slow
@pytest.mark.parametrize(("rate", "code"), [(None, 1), (1.0, 0)])
def test_max_failure_rate_ends_the_sweep_when_more_trials_fail(rate, code, tmp_path):
    sweep_dir = tmp_path / "sweep"
    rate_override = [] if rate is None else [f"hydra.sweeper.max_failure_rate={rate}"]
    result = _run(APP, *SEARCH, "fail=choice(false,true)", "hydra.sweeper.n_trials=6", "hydra.sweeper.n_jobs=2",
                  *rate_override, f"hydra.sweep.dir={sweep_dir}", cwd=tmp_path)
    states = [t.state for t in _study(sweep_dir).trials]
    assert result.returncode == code, result.stderr[-3000:]
    if rate is None:  # hydra-optuna-sweeper's default, 0.0: the first failure ends the sweep
        assert "more than hydra.sweeper.max_failure_rate=0.0 allows" in result.stderr
        assert "(ValueError: fail=True)" in result.stderr
        assert len(states) < 6
    else:
        assert len(states) == 6 and TrialState.FAIL in states


@pytest.mark.slow
def test_an_app_written_for_hydra_optuna_sweeper_runs_with_lit_optuna(tmp_path):
    """tests/foreign_app/optuna_conf is hydra-optuna-sweeper's example config with optuna -> lit_optuna."""
    result = _run(OPTUNA_APP, "-m", f"hydra.sweep.dir={tmp_path / 'sweep'}", cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    study = _study(tmp_path / "sweep", "sphere")
    assert study.direction == optuna.study.StudyDirection.MAXIMIZE
    trials = study.trials
    assert len(trials) == 6 and all(t.state == TrialState.COMPLETE for t in trials)
    for t in trials:  # z, drawn by custom_search_space near x, and its returned +w reached every job
        assert abs(t.params["z"] - t.params["x"]) <= 0.5
        assert t.value == pytest.approx(-(t.params["x"] ** 2 + float(t.params["y"]) ** 2 + t.params["z"] ** 2 + 0.5))
    assert yaml.safe_load((tmp_path / "sweep" / "best.yaml").read_text())["value"] == study.best_value
