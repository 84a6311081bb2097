"""Bring your own model and data through a config folder of your own and an experiment file, via the real CLI.

``tests/byo/my_pkg`` is written as a user writes a package: constructors with their own
arguments only, one module with its own ``configure_optimizers`` and one without, and a
``conf`` folder whose files become options of lit_train's groups.
"""

import pytest
import torch
import yaml
from support import ROOT, read_summary, run_cli

MY_PKG = {"PYTHONPATH": str(ROOT / "tests" / "byo")}
SEARCHPATH = "hydra.searchpath=[pkg://my_pkg.conf]"
SHORT = ["trainer.limit_train_batches=4", "trainer.limit_val_batches=2"]


def _last(run_dir) -> dict:
    return torch.load(run_dir / "checkpoints" / "last.ckpt", weights_only=True)


def test_own_group_options_train_a_module_with_lit_trains_optimizer(tmp_path):
    result = run_cli(SEARCHPATH, "model=my_classifier", "data=my_digits", "optimizer=adamw", "optimizer.lr=0.003",
                     "scheduler=none", "allowed_targets=[my_pkg]", "trainer.max_epochs=1", *SHORT,
                     f"hydra.run.dir={tmp_path}", cwd=tmp_path, env=MY_PKG)
    assert result.returncode == 0, result.stderr[-3000:]
    checkpoint = _last(tmp_path)
    (group, *_) = checkpoint["optimizer_states"][0]["param_groups"]
    assert group["lr"] == 0.003 and "amsgrad" in group  # AdamW's, from lit_train's optimizer group
    assert checkpoint["state_dict"]["net.0.weight"].shape == (32, 64)  # hidden: 32 from my_classifier.yaml
    assert read_summary(tmp_path)["global_step"] == 4
    assert "lit_train: my_pkg.MyClassifier takes no" not in result.stdout  # its option holds only its own keys
    assert "lit_train: MyClassifier has no test_step; the test stage is skipped (test=false silences this line)\n" in result.stdout
    assert read_summary(tmp_path)["test_metrics"] == {}


def test_testing_a_module_without_test_step_is_refused(tmp_path):
    trained = tmp_path / "trained"
    assert run_cli(SEARCHPATH, "model=my_classifier", "data=my_digits", "allowed_targets=[my_pkg]", "trainer.max_epochs=1",
                   *SHORT, f"hydra.run.dir={trained}", cwd=tmp_path, env=MY_PKG).returncode == 0
    result = run_cli(SEARCHPATH, "model=my_classifier", "data=my_digits", "allowed_targets=[my_pkg]", "train=false",
                     f"ckpt_path={trained / 'checkpoints' / 'last.ckpt'}", f"hydra.run.dir={tmp_path / 'test'}",
                     cwd=tmp_path, env=MY_PKG)
    assert result.returncode == 2
    assert "error: test: MyClassifier has no test_step, so train=false test=true has nothing to do\n" in result.stderr
    assert not (tmp_path / "test").exists()


def test_an_experiment_file_selects_the_packages_options_and_run_length(tmp_path):
    result = run_cli(SEARCHPATH, "experiment=my_pkg", "allowed_targets=[my_pkg]", *SHORT, "test=false",
                     f"hydra.run.dir={tmp_path}", cwd=tmp_path, env=MY_PKG)
    assert result.returncode == 0, result.stderr[-3000:]
    summary = read_summary(tmp_path)
    assert (summary["global_step"], summary["status"]) == (5 * 4, "completed")  # trainer.max_epochs: 5
    (group,) = _last(tmp_path)["optimizer_states"][0]["param_groups"]
    assert (group["lr"], group["momentum"]) == (0.05, 0.9)  # the module's own SGD, at lr: 0.05 from my_module.yaml
    assert "lit_train: MyLitModule has its own configure_optimizers" in result.stdout


def test_an_experiment_from_a_package_is_refused_without_allowing_it(tmp_path):
    result = run_cli(SEARCHPATH, "experiment=my_pkg", f"hydra.run.dir={tmp_path / 'run'}", cwd=tmp_path, env=MY_PKG)
    assert result.returncode == 2
    assert "model._target_: 'my_pkg.MyLitModule' is not an allowed target; to allow it add allowed_targets=[my_pkg]" in result.stderr
    assert not (tmp_path / "run").exists()


def test_a_typo_in_an_own_option_is_told_with_the_own_options_among_the_choices(tmp_path):
    result = run_cli(SEARCHPATH, "model=my_classifier", "data=my_digitz", "allowed_targets=[my_pkg]",
                     f"hydra.run.dir={tmp_path / 'run'}", cwd=tmp_path, env=MY_PKG)
    assert result.returncode == 2
    assert result.stderr.splitlines()[0] == ("error: data: unknown option 'my_digitz'; did you mean 'my_digits'? "
                                             "(choose from blobs, cubic, digits, my_digits, regression, text, xor)")
    assert not (tmp_path / "run").exists()


def test_a_module_with_its_own_configure_optimizers_takes_the_groups_it_asks_for(tmp_path):
    result = run_cli(SEARCHPATH, "model=my_finetuner", "data=my_digits", "allowed_targets=[my_pkg]", "optimizer=adamw",
                     "optimizer.lr=0.004", "scheduler=cosine", "trainer.max_epochs=2", *SHORT, "test=false",
                     f"hydra.run.dir={tmp_path}", cwd=tmp_path, env=MY_PKG)
    assert result.returncode == 0, result.stderr[-3000:]
    assert ("lit_train: MyFineTuner has its own configure_optimizers and takes its optimizer and scheduler from "
            "lit_train's groups of that name\n") in result.stdout
    checkpoint = _last(tmp_path)
    (group,) = checkpoint["optimizer_states"][0]["param_groups"]
    assert (group["initial_lr"], len(group["params"]), "amsgrad" in group) == (0.004, 2, True)  # AdamW on the head
    (schedule,) = checkpoint["lr_schedulers"]
    assert (schedule["T_max"], schedule["last_epoch"]) == (2 * 4, 2 * 4)  # cosine over the run's steps, stepped each


def test_scheduler_none_reaches_a_module_that_takes_the_scheduler_group_as_none(tmp_path):
    result = run_cli(SEARCHPATH, "model=my_finetuner", "data=my_digits", "allowed_targets=[my_pkg]", "scheduler=none",
                     "trainer.max_epochs=1", *SHORT, "test=false", f"hydra.run.dir={tmp_path}", cwd=tmp_path, env=MY_PKG)
    assert result.returncode == 0, result.stderr[-3000:]
    (group,) = _last(tmp_path)["optimizer_states"][0]["param_groups"]
    assert "initial_lr" not in group  # scheduler=none reaches the module as None


def test_a_module_that_records_the_group_builders_as_hyperparameters_is_refused(tmp_path):
    result = run_cli(SEARCHPATH, "model=my_finetuner", "model._target_=my_pkg.MyRecordedFineTuner", "data=my_digits",
                     "allowed_targets=[my_pkg]", f"hydra.run.dir={tmp_path / 'run'}", cwd=tmp_path, env=MY_PKG)
    assert result.returncode == 2
    assert (
        "error: model: MyRecordedFineTuner keeps optimizer and scheduler in its hyperparameters, so its checkpoints "
        "would hold code that safe loading refuses; save them without: "
        "self.save_hyperparameters(ignore=['optimizer', 'scheduler'])\n") in result.stderr
    assert not (tmp_path / "run").exists()


@pytest.mark.slow
@pytest.mark.parametrize("jobs", [1, 2])
def test_a_sweep_over_an_own_config_folder_gives_every_trial_that_folder(tmp_path, jobs):
    """Trials in processes of their own (n_jobs=2: forked from the warm parent) get the sweep's --config-dir too."""
    experiments = tmp_path / "conf" / "experiment"
    experiments.mkdir(parents=True)
    (experiments / "mine.yaml").write_text("# @package _global_\nseed: 7\ntrainer:\n  max_epochs: 1\n")
    result = run_cli("-m", "-cd", "conf", "experiment=mine", "hydra/sweeper=lit_optuna", "optimizer.lr=0.001,0.01",
                     "hydra.sweeper.n_trials=2", f"hydra.sweeper.n_jobs={jobs}", *SHORT, "hydra.sweep.dir=sweep",
                     cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "(2 complete, 0 pruned, 0 failed)" in result.stdout
    for trial in ("0", "1"):
        assert read_summary(tmp_path / "sweep" / trial)["seed"] == 7
    command = yaml.safe_load((tmp_path / "sweep" / "best.yaml").read_text())["command"]
    assert f"--config-dir={tmp_path / 'conf'} experiment=mine" in command
