"""lit_train's Optuna sweeper (hydra/sweeper=lit_optuna): search space, outcomes, resume, failures, best file."""

import json
import math

import optuna
import pytest
import yaml
from hydra.core.utils import JobReturn, JobStatus
from omegaconf import OmegaConf
from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution
from optuna.trial import TrialState
from support import ROOT, compose_config, compose_with_hydra, read_summary, run_cli

from hydra_plugins.lit_train_optuna_sweeper import config as sweeper_config
from hydra_plugins.lit_train_optuna_sweeper._impl import (
    FAILURE_ATTR,
    LitOptunaSweeperImpl,
    _build,
    parse_search_space,
)
from hydra_plugins.lit_train_optuna_sweeper.storage import DIVERGED_ATTR, PRUNED_ATTR
from lit_train.config.validate import validate
from lit_train.sweep.adapter import LitTrainApp

#: Trials of a few optimizer steps each.
TINY = ["trainer.accelerator=cpu", "trainer.devices=1", "trainer.max_epochs=3", "trainer.limit_train_batches=2",
        "trainer.limit_val_batches=1", "test=false", "callbacks.progress_bar=null"]
RANDOM = ["-m", "hydra/sweeper=lit_optuna", "hydra/sweeper/sampler=random", "hydra.sweeper.sampler.seed=0"]


def _states(sweep_dir) -> list[str]:
    study = optuna.load_study(study_name="lit_train", storage=f"sqlite:///{sweep_dir / 'optuna.db'}")
    return [trial.state.name for trial in study.trials]


# -- the search space -------------------------------------------------------------------------------------------


def test_search_space_grammar_maps_to_optuna_distributions():
    space, fixed, problems = parse_search_space(
        {
            "optimizer.lr": "tag(log, interval(1e-4, 1e-1))",
            "model.net.dropout": "interval(0, 0.5)",
            "data.batch_size": "choice(32, 64)",
            "model.net.hidden": "choice([64], [128, 128])",
            "trainer.max_epochs": "range(2, 9, 3)",
            "seed": "tag(log, range(1, 5))",
            "optimizer": "sgd,adam",
            "model.net.activation": "relu",
        },
        ["data.batch_size=16", "optimizer.weight_decay=interval(0.0, 0.1)"],
    )
    assert problems == []
    params = {param.key: param for param in space}
    assert params["optimizer.lr"].distribution == FloatDistribution(1e-4, 1e-1, log=True)
    assert params["model.net.dropout"].distribution == FloatDistribution(0.0, 0.5)
    assert params["trainer.max_epochs"].distribution == IntDistribution(2, 8, step=3)  # range's stop is exclusive
    assert params["seed"].distribution == IntDistribution(1, 4, log=True)
    assert params["optimizer"].distribution == CategoricalDistribution(["sgd", "adam"])
    assert params["optimizer.weight_decay"].distribution == FloatDistribution(0.0, 0.1)
    hidden = params["model.net.hidden"]
    assert hidden.distribution == CategoricalDistribution(["[64]", "[128,128]"])
    assert hidden.override("[128,128]") == "model.net.hidden=[128,128]"
    assert params["optimizer.lr"].override(0.00123) == "optimizer.lr=0.00123"
    # The command line's plain value replaces the config's choice; plain values go to every trial.
    assert "data.batch_size" not in params
    assert fixed == ["data.batch_size=16", "model.net.activation=relu"]


def test_search_space_problems_are_collected_with_their_source():
    _, _, problems = parse_search_space(
        {"optimizer.lr": "tag(lg, interval(1, 0))", "model.net.dropout": "tag(log, choice(0.1, 0.2))",
         "seed": "tag(log, range(0, 10, 2))", "data.batch_size": "choice(,"},
        ["+trial.number=3", "optimizer.weight_decay=tag(log, interval(0, 1))"],
        reserved=LitTrainApp.reserved,
    )
    assert problems == [
        "hydra.sweeper.params.data.batch_size: no viable alternative at input 'choice(,'",
        "command line: +trial.number=3: the trial.* keys are set by the sweeper for each trial",
        "hydra.sweeper.params.optimizer.lr: unknown tag 'lg'; did you mean 'log'? (tags: log)",
        "hydra.sweeper.params.optimizer.lr: interval(1, 0) must have start < end",
        "hydra.sweeper.params.model.net.dropout: tag(log, ...) applies to interval() and integer range(), "
        "not to tag(log, choice(0.1, 0.2))",
        "hydra.sweeper.params.seed: a log range needs step 1 and values above 0, got tag(log, range(0, 10, 2))",
        "command line: optimizer.weight_decay=tag(log, interval(0, 1)): a log interval must be above 0, "
        "got interval(0, 1)",
    ]


def test_the_optuna_preset_composes_and_searches_six_keys(tmp_path):
    cfg = compose_config(["hparams_search=optuna"], run_dir=tmp_path)
    assert validate(cfg) == []
    assert (cfg.monitor, cfg.mode, cfg.model.net._target_) == ("val/acc", "max", "lit_train.models.MLP")
    sweeper = compose_with_hydra(["hparams_search=optuna"]).hydra.sweeper
    assert (sweeper.sampler._target_, sweeper.sampler.seed, sweeper.pruner._target_, sweeper.n_trials) == (
        "optuna.samplers.TPESampler", 0, "optuna.pruners.PercentilePruner", 30)
    space, fixed, problems = parse_search_space(OmegaConf.to_container(sweeper.params), [])
    assert problems == [] and fixed == []
    assert {p.key for p in space} == {"optimizer", "optimizer.lr", "optimizer.weight_decay", "model.net.dropout",
                                     "model.net.hidden", "data.batch_size"}


@pytest.mark.parametrize(("kind", "name"), [("sampler", n) for n in sweeper_config.SAMPLERS]
                         + [("pruner", n) for n in sweeper_config.PRUNERS])
def test_every_sampler_and_pruner_option_builds(kind, name):
    node = OmegaConf.structured((sweeper_config.SAMPLERS | sweeper_config.PRUNERS)[name])
    problems: list[str] = []
    built, spec = _build(kind, node, problems, seed_offset=3)
    assert problems == [] and built is not None
    assert spec["target"] == node._target_
    if kind == "sampler":
        assert spec["args"]["seed"] is None  # no seed stays no seed


def test_a_resumed_study_moves_the_seed_on_and_bad_arguments_are_named():
    problems: list[str] = []
    _, spec = _build("sampler", OmegaConf.create({"_target_": "optuna.samplers.TPESampler", "seed": 0}), problems, 6)
    assert spec["args"]["seed"] == 6
    _build("pruner", OmegaConf.create({"_target_": "optuna.pruners.MedianPruner", "n_startup": 1}), problems)
    _build("sampler", OmegaConf.create({"seed": 0}), problems)
    assert problems == [
        "hydra.sweeper.pruner: cannot build optuna.pruners.MedianPruner with {'n_startup': 1}: "
        "MedianPruner.__init__() got an unexpected keyword argument 'n_startup'",
        "hydra.sweeper.sampler: must be a config with a _target_ (choose hydra/sweeper/sampler=tpe, ...), "
        "got {'seed': 0}",
    ]


# -- how a trial ended --------------------------------------------------------------------------------------------


@pytest.fixture
def sweeper(tmp_path):
    """A sweeper whose study (maximize val/acc) has one running trial, without any launcher."""
    storage = optuna.storages.RDBStorage(f"sqlite:///{tmp_path / 'optuna.db'}")
    study = optuna.create_study(storage=storage, study_name="lit_train", direction="maximize")
    impl = LitOptunaSweeperImpl(sampler=None, pruner=None, n_trials=1, n_jobs=1, study_name="lit_train",
                                storage=None, params={})
    impl.config = OmegaConf.create({"monitor": "val/acc", "mode": "max"})
    impl.app = LitTrainApp(impl.config)
    impl._storage, impl._study_id = storage, storage.get_study_id_from_name("lit_train")
    return impl, study, study.ask()


def test_parallel_trials_run_torch_on_one_thread_each(sweeper, monkeypatch, tmp_path):
    """Trials started as processes of their own share the cores: each gets one torch thread."""
    import hydra_plugins.lit_train_optuna_sweeper.app as app_module

    impl, _, _ = sweeper
    impl.config = OmegaConf.create({"monitor": "val/acc", "mode": "max", "hydra": {
        "overrides": {"hydra": []}, "job": {"config_name": "config"}, "runtime": {"config_sources": []}}})
    impl.app = LitTrainApp(impl.config, warm_start=False)
    started = {}
    monkeypatch.setattr(app_module.subprocess, "Popen", lambda command, env: started.update(command=command, env=env))
    impl._start(3, ["optimizer.lr=0.1"], tmp_path / "3")
    assert (started["env"]["OMP_NUM_THREADS"], started["env"]["MKL_NUM_THREADS"]) == ("1", "1")
    assert started["command"][1:4] == ["-m", "lit_train", "optimizer.lr=0.1"]


def _returned(value=None, error=None) -> JobReturn:
    ret = JobReturn(status=JobStatus.FAILED if error else JobStatus.COMPLETED)
    ret.return_value = error if error else value
    return ret


@pytest.mark.parametrize(
    ("value", "error", "attrs", "state", "note"),
    [
        (0.9, None, {}, TrialState.COMPLETE, ""),
        (0.9, None, {PRUNED_ATTR: 2}, TrialState.PRUNED, "pruned after 3 validation(s)"),
        (None, None, {}, TrialState.FAIL, "the job returned None, not a number"),
        (math.nan, None, {}, TrialState.FAIL, "the job returned nan"),
        (math.inf, None, {}, TrialState.FAIL, "the job returned inf"),
        (0.9, None, {DIVERGED_ATTR: 0}, TrialState.FAIL, "diverged: val/acc was not finite at validation 1"),
        (None, ValueError("bad\nvalue"), {}, TrialState.FAIL, "ValueError: bad value"),
    ],
)
def test_outcome_of_a_job(sweeper, value, error, attrs, state, note):
    impl, study, trial = sweeper
    for key, attr in attrs.items():
        trial.set_user_attr(key, attr)
    outcome = impl._outcome(trial, _returned(value, error))
    assert (outcome.state, outcome.note) == (state, note)
    impl._tell(study, trial, outcome, "somewhere")
    frozen = study.trials[0]
    assert frozen.state == state
    assert frozen.user_attrs.get(FAILURE_ATTR, "") == (note if state == TrialState.FAIL else "")


ORPHANED = "its process ended after its warm parent, without a finished run's summary.json"


@pytest.mark.parametrize(("summary", "state", "note"), [
    (None, TrialState.FAIL, ORPHANED),
    ({"status": "interrupted", "best_score": 0.5}, TrialState.FAIL, ORPHANED),
    ({"status": "completed", "best_score": 0.9}, TrialState.COMPLETE, ""),
])
def test_a_trial_whose_exit_code_died_with_its_warm_parent_is_judged_by_its_summary(sweeper, tmp_path, summary,
                                                                                     state, note):
    impl, study, trial = sweeper
    job_dir = tmp_path / "0"
    job_dir.mkdir()
    if summary is not None:
        (job_dir / "summary.json").write_text(json.dumps(summary))
    ret = impl._end(study, trial, ["optimizer.lr=0.1"], job_dir, None)
    frozen = study.trials[0]
    assert (frozen.state, frozen.user_attrs.get(FAILURE_ATTR, "")) == (state, note)
    assert ret.status == (JobStatus.COMPLETED if state == TrialState.COMPLETE else JobStatus.FAILED)


# -- end to end, through the CLI ---------------------------------------------------------------------------------


@pytest.mark.slow
def test_sweep_prunes_writes_best_and_report_then_resumes(tmp_path):
    sweep_dir = tmp_path / "sweep"
    args = [*RANDOM, "hydra/sweeper/pruner=median", "hydra.sweeper.pruner.n_startup_trials=1",
            "optimizer=sgd", "optimizer.lr=tag(log,interval(1e-4,1.0))", *TINY, f"hydra.sweep.dir={sweep_dir}"]
    result = run_cli(*args, "hydra.sweeper.n_trials=4", cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    states = _states(sweep_dir)
    assert len(states) == 4 and "PRUNED" in states and "COMPLETE" in states, states
    trials = optuna.load_study(study_name="lit_train", storage=f"sqlite:///{sweep_dir / 'optuna.db'}").trials
    for number, state in enumerate(states):
        summary = read_summary(sweep_dir / str(number))  # job directories are numbered by trial
        assert summary["status"] == {"COMPLETE": "completed", "PRUNED": "pruned"}[state]
        # Two steps an epoch; a pruned trial stops right after the validation that pruned it.
        validations = trials[number].user_attrs[PRUNED_ATTR] + 1 if state == "PRUNED" else 3
        assert summary["global_step"] == 2 * validations
        assert len(trials[number].intermediate_values) == validations
    best = yaml.safe_load((sweep_dir / "best.yaml").read_text())
    assert states[best["trial"]] == "COMPLETE" and (best["monitor"], best["mode"]) == ("val/loss", "min")
    assert best["value"] == read_summary(sweep_dir / str(best["trial"]))["best_score"]
    assert best["overrides"][0] == "optimizer=sgd" and best["overrides"][-1].startswith("optimizer.lr=")
    assert not any("trial." in o for o in best["overrides"])
    assert best["command"] == " ".join(["python -m lit_train", *best["overrides"]])
    assert f"trial {best['trial']}, val/loss" in result.stdout
    rows = (sweep_dir / "leaderboard.csv").read_text().splitlines()
    assert len(rows) == 5 and rows[1].split(",")[1] == str(best["trial"])
    assert (sweep_dir / "report.png").stat().st_size > 10_000

    first_summary = (sweep_dir / "0" / "summary.json").read_text()
    result = run_cli(*args, "hydra.sweeper.n_trials=6", cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "4 trial(s) done, 2 to run" in result.stdout + result.stderr
    assert len(_states(sweep_dir)) == 6
    assert (sweep_dir / "0" / "summary.json").read_text() == first_summary  # trial 0 did not run again
    assert {p.name for p in sweep_dir.iterdir() if p.name.isdigit()} == {"0", "1", "2", "3", "4", "5"}
    assert len((sweep_dir / "leaderboard.csv").read_text().splitlines()) == 7
    # Asking for no more than the study holds runs nothing.
    result = run_cli(*args, "hydra.sweeper.n_trials=5", cwd=tmp_path)
    assert result.returncode == 0 and "6 trial(s) done, 0 to run" in result.stdout + result.stderr


@pytest.mark.slow
def test_a_failing_trial_is_recorded_as_failed_and_the_sweep_goes_on(tmp_path):
    sweep_dir = tmp_path / "sweep"
    env = {"PYTHONPATH": str(ROOT / "tests" / "byo")}
    # With this seed the random sampler picks the failing module first, then lit_train's own.
    result = run_cli(*RANDOM, "hydra.sweeper.n_trials=2", "model._target_=choice(lit_train.modules.Classifier,"
                     "byo_models.FailingModule)", *TINY, f"hydra.sweep.dir={sweep_dir}", cwd=tmp_path, env=env)
    assert result.returncode == 0, result.stderr[-3000:]
    assert _states(sweep_dir) == ["FAIL", "COMPLETE"]
    study = optuna.load_study(study_name="lit_train", storage=f"sqlite:///{sweep_dir / 'optuna.db'}")
    assert study.trials[0].user_attrs[FAILURE_ATTR] == "RuntimeError: shapes do not match (a second line)"
    assert "Trial 0: failed (RuntimeError: shapes do not match (a second line))" in result.stdout + result.stderr
    assert read_summary(sweep_dir / "0")["status"] == "failed"
    assert "(1 complete, 0 pruned, 1 failed): trial 1" in result.stdout
    rows = [row.split(",") for row in (sweep_dir / "leaderboard.csv").read_text().splitlines()[1:]]
    assert [(row[1], row[7]) for row in rows] == [("1", "completed"), ("0", "failed")]


@pytest.mark.slow
def test_parallel_trials_start_as_soon_as_any_trial_ends_and_resume(tmp_path):
    sweep_dir = tmp_path / "sweep"
    env = {"PYTHONPATH": str(ROOT / "tests" / "byo")}
    # With this seed the random sampler makes trials 0 and 2 fail at their first step and trial 1 train for
    # 80 epochs; the resumed study's trial 3 trains lit_train's own module.
    args = ["-m", "hydra/sweeper=lit_optuna", "hydra/sweeper/sampler=random", "hydra.sweeper.sampler.seed=1",
            "model._target_=choice(lit_train.modules.Classifier,byo_models.FailingModule)", *TINY,
            "trainer.max_epochs=choice(1,80)", "hydra.sweeper.n_jobs=2", f"hydra.sweep.dir={sweep_dir}"]
    result = run_cli(*args, "hydra.sweeper.n_trials=3", cwd=tmp_path, env=env)
    assert result.returncode == 0, result.stderr[-3000:]
    trials = optuna.load_study(study_name="lit_train", storage=f"sqlite:///{sweep_dir / 'optuna.db'}").trials
    assert [t.state.name for t in trials] == ["FAIL", "COMPLETE", "FAIL"]
    assert trials[1].params == {"model._target_": "lit_train.modules.Classifier", "trainer.max_epochs": 80}
    error = "RuntimeError: shapes do not match (a second line)"
    assert [t.user_attrs.get(FAILURE_ATTR) for t in trials] == [error, None, error]
    assert [read_summary(sweep_dir / str(n))["status"] for n in range(3)] == ["failed", "completed", "failed"]
    # Trials 0 and 1 ran together; trial 2 started when trial 0 ended, without waiting for the slow trial 1.
    started, ended = [t.datetime_start for t in trials], [t.datetime_complete for t in trials]
    assert started[1] < ended[0] <= started[2] < ended[1]
    best = yaml.safe_load((sweep_dir / "best.yaml").read_text())
    assert best["trial"] == 1 and best["value"] == read_summary(sweep_dir / "1")["best_score"]
    assert len((sweep_dir / "leaderboard.csv").read_text().splitlines()) == 4

    slow_summary = (sweep_dir / "1" / "summary.json").read_text()
    result = run_cli(*args, "hydra.sweeper.n_trials=4", cwd=tmp_path, env=env)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "3 trial(s) done, 1 to run" in result.stdout + result.stderr
    assert _states(sweep_dir) == ["FAIL", "COMPLETE", "FAIL", "COMPLETE"]
    assert (sweep_dir / "1" / "summary.json").read_text() == slow_summary
    assert len((sweep_dir / "leaderboard.csv").read_text().splitlines()) == 5


def test_bad_sweeper_settings_fail_before_any_trial(tmp_path):
    sweep_dir = tmp_path / "sweep"
    result = run_cli("-m", "hydra/sweeper=lit_optuna", "hydra.sweeper.n_trials=0", "hydra.sweeper.n_jobs=-1",
                     "optimizer.lr=tag(lg,interval(1,0))", f"hydra.sweep.dir={sweep_dir}", cwd=tmp_path)
    assert result.returncode == 2
    assert result.stderr.splitlines()[:5] == [
        "error: hydra.sweeper.n_trials: must be an integer >= 1, got 0",
        "error: hydra.sweeper.n_jobs: must be an integer >= 1, got -1",
        "error: command line: optimizer.lr=tag(lg,interval(1,0)): unknown tag 'lg'; did you mean 'log'? (tags: log)",
        "error: command line: optimizer.lr=tag(lg,interval(1,0)): interval(1, 0) must have start < end",
        "lit_train: 4 sweeper problem(s); nothing was run.",
    ]
    assert "Traceback" not in result.stderr
    assert not sweep_dir.exists()

    result = run_cli("-m", "hydra/sweeper=lit_optuna", "seed=1", f"hydra.sweep.dir={sweep_dir}", cwd=tmp_path)
    assert result.returncode == 2
    assert result.stderr.splitlines()[0] == ("error: hydra.sweeper.params: nothing to search; give a range, e.g. "
                                            "optimizer.lr=tag(log,interval(1e-4,1e-1))")


@pytest.mark.slow
@pytest.mark.parametrize("n_jobs", [1, 2])  # trials in the sweep's process, and each in a process of its own
def test_a_diverged_trial_is_recorded_as_failed_with_the_reason_and_the_sweep_goes_on(n_jobs, tmp_path):
    sweep_dir = tmp_path / "sweep"
    result = run_cli(*RANDOM, "hydra.sweeper.n_trials=3", f"hydra.sweeper.n_jobs={n_jobs}", "optimizer=sgd", "scheduler=none",
                     "optimizer.lr=choice(1e12,0.01)", *TINY, f"hydra.sweep.dir={sweep_dir}", cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    trials = optuna.load_study(study_name="lit_train", storage=f"sqlite:///{sweep_dir / 'optuna.db'}").trials
    outcomes = {(t.params["optimizer.lr"], t.state.name, t.user_attrs.get(FAILURE_ATTR, "")[:8]) for t in trials}
    assert outcomes == {(1e12, "FAIL", "diverged"), (0.01, "COMPLETE", "")}
