"""TrialPruning: a Lightning run reporting to an Optuna trial, stopped when the pruner says so."""

import math
import pickle

import lightning.pytorch as L
import optuna
import pytest
import torch
from support import FAST, compose_config, read_summary
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from hydra_plugins.lit_train_optuna_sweeper.storage import DIVERGED_ATTR, ERROR_ATTR, PRUNED_ATTR, PRUNER_ATTR
from hydra_plugins.lit_train_optuna_sweeper.trial import open_trial
from lit_train.sweep.pruning import TrialPruning
from lit_train.training.run import run
from lit_train.config.validate import validate

MEDIAN = {"target": "optuna.pruners.MedianPruner", "args": {"n_startup_trials": 1, "n_warmup_steps": 1}}


class Scripted(L.LightningModule):
    """Two optimizer steps per epoch; logs ``val/loss`` = ``values[epoch]`` (or raises at ``fail_at``)."""

    def __init__(self, values: list[float], fail_at: int | None = None) -> None:
        super().__init__()
        self.values, self.fail_at = values, fail_at
        self.layer = nn.Linear(1, 1)

    def training_step(self, batch, batch_idx):
        if self.current_epoch == self.fail_at:
            raise RuntimeError("boom\non two lines")
        return self.layer(batch[0]).pow(2).mean()

    def validation_step(self, batch, batch_idx):
        self.log("val/loss", self.values[self.current_epoch])

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.1)

    def train_dataloader(self):
        return DataLoader(TensorDataset(torch.ones(4, 1)), batch_size=2)

    def val_dataloader(self):
        return DataLoader(TensorDataset(torch.ones(2, 1)), batch_size=2)


@pytest.fixture
def study(tmp_path):
    """A study (minimize) with one finished trial that reported 1.0 at steps 0..4, and the median pruner."""
    storage = f"sqlite:///{tmp_path / 'optuna.db'}"
    study = optuna.create_study(storage=storage, study_name="s", direction="minimize")
    study.set_user_attr(PRUNER_ATTR, MEDIAN)
    first = study.ask()
    for step in range(5):
        first.report(1.0, step)
    study.tell(first, 1.0)
    return study, storage


def _fit(callback: TrialPruning, module: L.LightningModule, max_epochs: int = 5) -> L.Trainer:
    trainer = L.Trainer(max_epochs=max_epochs, callbacks=[callback], logger=False, enable_checkpointing=False,
                        enable_progress_bar=False, enable_model_summary=False, num_sanity_val_steps=1)
    trainer.fit(module)
    return trainer


def test_a_trial_worse_than_the_median_stops_right_after_that_validation(study):
    study, storage = study
    trial = study.ask()
    callback = TrialPruning(storage, "s", trial.number, "val/loss")
    trainer = _fit(callback, Scripted([2.0, 2.0, 2.0, 2.0, 2.0]))
    assert (callback.pruned, callback.stopped_reason) == (True, "pruned")
    # Step 0 is the pruner's warm-up; at step 1 it prunes: epochs 0 and 1 ran, then training stopped.
    assert (trainer.current_epoch, trainer.global_step) == (2, 4)
    frozen = study.trials[trial.number]
    assert frozen.intermediate_values == {0: 2.0, 1: 2.0}  # the sanity check reported nothing
    assert frozen.user_attrs[PRUNED_ATTR] == 1


def test_a_good_trial_reports_every_validation_and_runs_to_the_end(study):
    study, storage = study
    trial = study.ask()
    callback = TrialPruning(storage, "s", trial.number, "val/loss")
    trainer = _fit(callback, Scripted([0.75, 0.5, 0.25, 0.125, 0.0625]))
    assert (callback.pruned, callback.stopped_reason, trainer.current_epoch) == (False, None, 5)
    assert study.trials[trial.number].intermediate_values == {0: 0.75, 1: 0.5, 2: 0.25, 3: 0.125, 4: 0.0625}


def test_a_non_finite_metric_marks_the_trial_diverged_and_stops(study):
    study, storage = study
    trial = study.ask()
    callback = TrialPruning(storage, "s", trial.number, "val/loss")
    trainer = _fit(callback, Scripted([0.5, math.nan, 0.25, 0.25, 0.25]))
    assert (callback.pruned, callback.stopped_reason, trainer.current_epoch) == (False, "diverged", 2)
    frozen = study.trials[trial.number]
    assert frozen.intermediate_values == {0: 0.5} and frozen.user_attrs[DIVERGED_ATTR] == 1


def test_an_error_in_training_is_recorded_on_the_trial(study):
    study, storage = study
    trial = study.ask()
    with pytest.raises(RuntimeError, match="boom"):
        _fit(TrialPruning(storage, "s", trial.number, "val/loss"), Scripted([0.5] * 5, fail_at=1))
    assert study.trials[trial.number].user_attrs[ERROR_ATTR] == "RuntimeError: boom on two lines"


def test_state_dict_round_trip_and_pickle(study):
    study, storage = study
    callback = TrialPruning(storage, "s", study.ask().number, "val/loss")
    _fit(callback, Scripted([2.0, 2.0, 2.0, 2.0, 2.0]))
    restored = TrialPruning(storage, "s", callback.number, "val/loss")
    restored.load_state_dict(callback.state_dict())
    assert (restored.pruned, restored.stopped_reason, restored._reports) == (True, "pruned", 2)
    older = TrialPruning(storage, "s", callback.number, "val/loss")
    older.load_state_dict({})
    assert (older.pruned, older._reports) == (False, 0)
    assert callback.state_key != TrialPruning(storage, "s", callback.number + 1, "val/loss").state_key
    assert pickle.loads(pickle.dumps(TrialPruning(storage, "s", 0, "val/loss"))).number == 0


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"storage": ""}, "`storage` must be a non-empty string, got ''"),
        ({"study": None}, "`study` must be a non-empty string, got None"),
        ({"number": -1}, "`number` must be an integer >= 0, got -1"),
        ({"number": True}, "`number` must be an integer >= 0, got True"),
        ({"monitor": ""}, "`monitor` must be a non-empty string, got ''"),
    ],
)
def test_bad_arguments(kwargs, message):
    arguments = {"storage": "sqlite:///x.db", "study": "s", "number": 0, "monitor": "val/loss", **kwargs}
    with pytest.raises(ValueError, match=f"^{message}$".replace("(", r"\(").replace(")", r"\)")):
        TrialPruning(**arguments)


def test_open_trial_names_a_missing_trial(study):
    study, storage = study
    with pytest.raises(ValueError, match=r"trial: no trial 7 of study 's' in sqlite:///"):
        open_trial(storage, "s", 7)
    assert open_trial(storage, "s", 0).number == 0


def _trial_keys(storage: str, number: int) -> list[str]:
    return [f"+trial.storage='{storage}'", "+trial.study=s", f"+trial.number={number}"]


def test_the_runner_records_a_pruned_trial_and_skips_testing(study, tmp_path):
    """The sweeper's trial keys make run() report to the study; pruned -> summary status "pruned"."""
    study, storage = study
    trial = study.ask()
    run_dir = tmp_path / "run"
    # val/loss on digits stays near 2.3 for a few steps, above the finished trial's 1.0: pruned after the warm-up.
    overrides = [*FAST, "trainer.max_epochs=3", "callbacks.progress_bar=null", *_trial_keys(storage, trial.number)]
    cfg = compose_config(overrides, run_dir=run_dir)
    assert validate(cfg) == []
    run(cfg)
    summary = read_summary(run_dir)
    assert (summary["status"], summary["stopped_reason"], summary["test_metrics"]) == ("pruned", "pruned", {})
    assert summary["global_step"] == 4  # two epochs of limit_train_batches=2, pruned at the second validation
    assert study.trials[trial.number].user_attrs[PRUNED_ATTR] == 1


def test_validation_accepts_the_trial_keys_and_names_bad_ones(tmp_path):
    good = compose_config(_trial_keys("sqlite:///x.db", 3), run_dir=tmp_path)
    assert validate(good) == []
    bad = compose_config(["+trial.storage=''", "+trial.number=-2", "+trial.studdy=s"], run_dir=tmp_path)
    assert validate(bad) == [
        "trial.storage: must be a non-empty string, got ''",
        "trial.number: must be an integer >= 0, got -2",
        "trial.study: missing (the lit_optuna sweeper sets storage, study, number together)",
        "trial.studdy: no such key; did you mean 'study'? (keys: storage, study, number)",
    ]
