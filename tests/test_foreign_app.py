"""hydra/sweeper=lit_optuna sweeps any Hydra app (tests/foreign_app), and runs apps written for hydra-optuna-sweeper."""

import math
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
def test_an_app_started_with_dash_m_runs_its_trial_processes_the_same_way(tmp_path):
    sweep_dir = tmp_path / "sweep"
    env = {**os.environ, "PYTHONWARNINGS": "ignore", "PYTHONPATH": str(APP.parent)}
    result = subprocess.run([sys.executable, "-m", "app", *SEARCH, "hydra.sweeper.n_trials=2", "hydra.sweeper.n_jobs=2",
                             f"hydra.sweep.dir={sweep_dir}"], cwd=tmp_path, capture_output=True, text=True,
                            timeout=300, env=env)
    assert result.returncode == 0, result.stderr[-3000:]
    assert [t.state for t in _study(sweep_dir).trials] == [TrialState.COMPLETE] * 2
    assert yaml.safe_load((sweep_dir / "best.yaml").read_text())["command"].startswith("python -m app ")


@pytest.mark.slow
def test_trial_processes_get_the_sweeps_config_name(tmp_path):
    sweep_dir = tmp_path / "sweep"
    result = _run(APP, "--config-name=shifted", *SEARCH, "hydra.sweeper.n_trials=2", "hydra.sweeper.n_jobs=2",
                  f"hydra.sweep.dir={sweep_dir}", cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    trials = _study(sweep_dir, "app").trials
    assert [t.value for t in trials] == pytest.approx([_distance(t.params) + 10.0 for t in trials])


@pytest.mark.slow
@pytest.mark.parametrize("n_jobs", [1, 2])
def test_direction_maximize_and_a_pruner_stop_trials_through_the_trial_interface(n_jobs, tmp_path):
    """In the sweeper's process (n_jobs=1) and in trial processes alike."""
    sweep_dir = tmp_path / "sweep"
    result = _run(APP, *SEARCH, "steps=4", "hydra.sweeper.n_trials=8", f"hydra.sweeper.n_jobs={n_jobs}",
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
def test_the_grid_sampler_runs_each_combination_once_and_no_more(tmp_path):
    sweep_dir = tmp_path / "sweep"
    result = _run(APP, "-m", "hydra/sweeper=lit_optuna", "hydra/sweeper/sampler=grid", "x=range(0,3)", "y=choice(-2,0)",
                  "hydra.sweeper.n_trials=10", f"hydra.sweep.dir={sweep_dir}", cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    trials = _study(sweep_dir).trials
    assert sorted((t.params["x"], t.params["y"]) for t in trials) == [(x, y) for x in range(3) for y in (-2, 0)]
    assert all(t.state == TrialState.COMPLETE for t in trials)


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


def _sweeper(app, config: dict, **settings):
    from omegaconf import OmegaConf

    from hydra_plugins.lit_train_optuna_sweeper._impl import LitOptunaSweeperImpl

    impl = LitOptunaSweeperImpl(**{"sampler": None, "pruner": None, "n_trials": 1, "n_jobs": 1, "study_name": "s",
                                   "storage": None, "params": {"x": "interval(0, 1)"}, **settings})
    impl.config = OmegaConf.create(config)
    impl.app = app(impl.config)
    return impl


@pytest.mark.parametrize(("mode", "direction", "expected"), [
    (None, None, "minimize"), ("max", None, "maximize"), ("train", None, "minimize"), ("min", "maximize", "maximize"),
])
def test_direction_follows_the_sweeper_then_the_apps_mode_then_minimizes(mode, direction, expected):
    from hydra_plugins.lit_train_optuna_sweeper.app import App

    config = {} if mode is None else {"mode": mode}
    assert _sweeper(App, config, direction=direction)._check([])[2] == expected


def test_bad_drop_in_settings_are_named_together():
    from hydra_plugins.lit_train_optuna_sweeper._impl import SweeperConfigError
    from hydra_plugins.lit_train_optuna_sweeper.app import App
    from lit_train.sweep.adapter import LitTrainApp

    impl = _sweeper(App, {}, direction=["minimize", "maximize"], max_failure_rate=1.5,
                    custom_search_space="no_such_module.configure")
    with pytest.raises(SweeperConfigError) as raised:
        impl._check([])
    assert str(raised.value).splitlines() == [
        "error: hydra.sweeper.max_failure_rate: must be a number from 0 to 1 or null, got 1.5",
        "error: hydra.sweeper.custom_search_space: No module named 'no_such_module'",
        "error: hydra.sweeper.direction: must be one of ('minimize', 'maximize') (one objective) or null for the "
        "app's mode, got ['minimize', 'maximize']",
        "lit_optuna: 3 sweeper problem(s); nothing was run.",
    ]
    lit_train = _sweeper(LitTrainApp, {"monitor": "val/acc", "mode": "max"}, direction="minimize")
    with pytest.raises(SweeperConfigError, match=r"direction: minimize disagrees with mode=max; leave it null"):
        lit_train._check([])


def test_a_trial_reports_and_is_pruned_through_the_interface(monkeypatch, tmp_path):
    from hydra_plugins.lit_train_optuna_sweeper import trial
    from hydra_plugins.lit_train_optuna_sweeper.app import NUMBER_ENV, STORAGE_ENV, STUDY_ENV
    from hydra_plugins.lit_train_optuna_sweeper.storage import DIVERGED_ATTR, PRUNED_ATTR, PRUNER_ATTR

    assert trial.current() is None  # not a trial of a sweep
    storage = f"sqlite:///{tmp_path / 'optuna.db'}"
    study = optuna.create_study(storage=storage, study_name="s")
    study.set_user_attr(PRUNER_ATTR, {"target": "optuna.pruners.ThresholdPruner", "args": {"upper": 1.0}})
    for number in range(2):
        study.ask()
    monkeypatch.setenv(STORAGE_ENV, storage)
    monkeypatch.setenv(STUDY_ENV, "s")
    for number, values in [(0, [0.5, 2.0]), (1, [0.5, math.nan])]:
        monkeypatch.setenv(NUMBER_ENV, str(number))
        this = trial.current()
        assert this is trial.current() and this.number == number
        decisions = []
        for step, value in enumerate(values):
            this.report(value, step)
            decisions.append(this.should_prune())
        attrs = study.trials[number].user_attrs
        if number == 0:  # above the threshold at step 1
            assert decisions == [False, True] and attrs[PRUNED_ATTR] == 1
        else:  # NaN: recorded as diverged at step 1, which the sweeper records as failed
            assert attrs[DIVERGED_ATTR] == 1 and PRUNED_ATTR not in attrs


def test_only_lit_train_reserves_its_trial_key():
    from hydra_plugins.lit_train_optuna_sweeper._impl import parse_search_space
    from lit_train.sweep.adapter import LitTrainApp

    assert parse_search_space({"trial.size": "choice(1,2)"}, [])[2] == []
    assert parse_search_space({"trial.size": "choice(1,2)"}, [], LitTrainApp.reserved)[2] == [
        "hydra.sweeper.params.trial.size: the trial.* keys are set by the sweeper for each trial"]
