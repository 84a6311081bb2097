"""End-to-end: the real CLI in a subprocess on tiny data."""

from pathlib import Path

import pytest
from support import FAST, ROOT, read_summary, run_cli

SUMMARY_KEYS = {
    "run_dir", "status", "monitor", "mode", "best_score", "best_checkpoint", "test_metrics",
    "stopped_reason", "wall_time_s", "global_step",
}


@pytest.mark.slow
def test_default_job_reaches_95_percent_on_digits(tmp_path):
    run_dir = tmp_path / "run"
    result = run_cli(f"hydra.run.dir={run_dir}", cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    summary = read_summary(run_dir)
    assert SUMMARY_KEYS <= summary.keys()
    assert summary["status"] == "completed"
    assert summary["test_metrics"]["test/acc"] >= 0.95
    assert summary["stopped_reason"] == "max_epochs"
    assert Path(summary["best_checkpoint"]).is_file()
    assert (run_dir / "checkpoints" / "last.ckpt").is_file()
    assert (run_dir / ".hydra" / "config.yaml").is_file()
    assert "\nepoch 20/20  loss " in result.stdout  # the progress bar's line of the last epoch
    assert "lit_train: completed after" in result.stdout


def test_fast_dev_run_writes_a_summary(tmp_path):
    run_dir = tmp_path / "run"
    result = run_cli("debug=fast_dev_run", f"hydra.run.dir={run_dir}", cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    summary = read_summary(run_dir)
    assert summary["status"] == "completed"
    assert summary["stopped_reason"] == "fast_dev_run"
    assert summary["best_checkpoint"] is None
    assert summary["global_step"] == 1
    assert "test/acc" in summary["test_metrics"]
    assert (run_dir / "checkpoints" / "last.ckpt").is_file()


def test_bad_config_exits_2_with_one_line_per_problem_and_writes_nothing(tmp_path):
    run_dir = tmp_path / "run"
    result = run_cli("optimizer=adamx", "optimizer.lr=-1", "data.batch_size=0", f"hydra.run.dir={run_dir}", cwd=tmp_path)
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert lines[0].startswith("error: optimizer: unknown option 'adamx'; did you mean 'adam'?")
    assert lines[-1] == "lit_train: 1 config problem(s); nothing was run."
    assert "Traceback" not in result.stderr
    assert not run_dir.exists()
    assert list(tmp_path.iterdir()) == []

    result = run_cli("optimizer.lr=-1", "data.batch_size=0", f"hydra.run.dir={run_dir}", cwd=tmp_path)
    assert result.returncode == 2
    assert result.stderr.splitlines()[:2] == [
        "error: data.batch_size: must be an integer >= 1, got 0",
        "error: optimizer.lr: must be a number > 0, got -1",
    ]
    assert not run_dir.exists()


def test_help_lists_groups_and_options(tmp_path):
    result = run_cli("--help", cwd=tmp_path)
    assert result.returncode == 0
    for text in ("optimizer: adagrad, adam, adamw, lamb", "scheduler: cosine", "model: cnn, gpt, mlp, regressor", "Usage"):
        assert text in result.stdout


@pytest.mark.parametrize("args", [["--help"], ["--cfg", "job"], ["optimizer.lr=-1"], ["optimizer=adamm"]])
def test_help_and_bad_config_never_import_torch_or_lightning(args, tmp_path):
    """What makes them fast (benchmarks/cli_startup.py times them against importing torch)."""
    import subprocess
    import sys

    probe = (
        "import sys\n"
        "from lit_train.launch.cli import main\n"
        "code = 0\n"
        "try:\n"
        f"    main({args!r})\n"
        "except SystemExit as exit:\n"
        "    code = exit.code\n"
        "print('LOADED', sorted(m for m in ('torch', 'lightning') if m in sys.modules), code)\n"
    )
    result = subprocess.run([sys.executable, "-c", probe], cwd=tmp_path, capture_output=True, text=True)
    assert "LOADED [] " in result.stdout, result.stdout[-2000:] + result.stderr[-2000:]


def test_cfg_job_prints_the_composed_config_and_runs_nothing(tmp_path):
    import yaml

    result = run_cli("--cfg", "job", "optimizer=sgd", "optimizer.lr=0.2", "trainer.max_epochs=3",
                     f"hydra.run.dir={tmp_path / 'run'}", cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    cfg = yaml.safe_load(result.stdout)
    assert cfg["optimizer"]["_target_"] == "torch.optim.SGD" and cfg["optimizer"]["lr"] == 0.2
    assert cfg["trainer"]["max_epochs"] == 3 and cfg["scheduler"]["_target_"] == "torch.optim.lr_scheduler.CosineAnnealingLR"
    assert "doctor" in cfg and "hydra" not in cfg  # the job's keys, the doctor's thresholds among them
    assert list(tmp_path.iterdir()) == []


def test_a_single_run_composes_and_validates_its_config_once(tmp_path):
    """Hydra composes; lit_train checks what Hydra composed, without a look-ahead composition of its own.

    Hydra itself composes twice: once to read ``hydra.mode`` (``get_mode``), once for the run.
    """
    import subprocess
    import sys

    probe = (
        "import sys\n"
        "from hydra._internal.hydra import Hydra\n"
        "from lit_train.config import checks\n"
        "from lit_train.launch.cli import main\n"
        "counts = {'compose': 0, 'mode': 0, 'validate': 0}\n"
        "compose, mode, validate = Hydra.compose_config, Hydra.get_mode, checks.validate\n"
        "def counted_mode(*args, **kwargs):\n"
        "    counts['mode'] += 1\n"
        "    return mode(*args, **kwargs)\n"
        "def counted_compose(*args, **kwargs):\n"
        "    counts['compose'] += 1\n"
        "    return compose(*args, **kwargs)\n"
        "def counted_validate(*args, **kwargs):\n"
        "    counts['validate'] += 1\n"
        "    return validate(*args, **kwargs)\n"
        "Hydra.compose_config, Hydra.get_mode, checks.validate = counted_compose, counted_mode, counted_validate\n"
        "try:\n"
        f"    main(['debug=fast_dev_run', 'hydra.run.dir={tmp_path / 'run'}'])\n"
        "finally:\n"
        "    print('COUNTS', counts)\n"
    )
    result = subprocess.run([sys.executable, "-c", probe], cwd=tmp_path, capture_output=True, text=True)
    assert "COUNTS {'compose': 2, 'mode': 1, 'validate': 1}" in result.stdout, result.stdout[-2000:] + result.stderr[-2000:]
    assert read_summary(tmp_path / "run")["status"] == "completed"


@pytest.mark.slow
def test_multirun_runs_each_job_in_its_own_directory(tmp_path):
    sweep_dir = tmp_path / "sweep"
    result = run_cli("-m", "optimizer=sgd,adam,adamw", "trainer.max_epochs=2", f"hydra.sweep.dir={sweep_dir}",
                     "callbacks.progress_bar=null", cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    summaries = [read_summary(sweep_dir / str(i)) for i in range(3)]
    assert all(s["status"] == "completed" and s["global_step"] == 40 for s in summaries)
    overrides = [(sweep_dir / str(i) / ".hydra" / "overrides.yaml").read_text() for i in range(3)]
    assert ["optimizer=sgd" in o for o in overrides] == [True, False, False]


def test_plus_callbacks_adds_early_stopping(tmp_path):
    run_dir = tmp_path / "run"
    result = run_cli("+callbacks=early_stopping", "callbacks.early_stopping.patience=0", "trainer.max_epochs=50",
                     "optimizer.lr=0.05",
                     "trainer.limit_train_batches=2", "test=false", f"hydra.run.dir={run_dir}", cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    config = (run_dir / ".hydra" / "config.yaml").read_text()
    assert "early_stopping:" in config and "model_checkpoint:" in config
    assert read_summary(run_dir)["stopped_reason"] == "patience"


BYO = ["data._target_=byo_models.BlobsDataModule", *FAST, "trainer.limit_val_batches=2"]
BYO_PATH = {"PYTHONPATH": str(ROOT / "tests" / "byo")}


def test_a_module_without_configure_optimizers_gets_the_optimizer_group(tmp_path):
    run_dir = tmp_path / "run"
    result = run_cli("model._target_=byo_models.NoOptimizerModule", *BYO, "optimizer=sgd", "optimizer.lr=0.5",
                     "scheduler=none", "test=false", f"hydra.run.dir={run_dir}", cwd=tmp_path, env=BYO_PATH)
    assert result.returncode == 0, result.stderr[-3000:]
    import torch

    checkpoint = torch.load(run_dir / "checkpoints" / "last.ckpt", weights_only=False)
    assert checkpoint["optimizer_states"][0]["param_groups"][0]["lr"] == 0.5


def test_a_module_with_its_own_optimizer_keeps_it_and_says_the_groups_are_unused(tmp_path):
    run_dir = tmp_path / "run"
    result = run_cli("model._target_=byo_models.OwnOptimizerModule", *BYO, "test=false", f"hydra.run.dir={run_dir}",
                     cwd=tmp_path, env=BYO_PATH)
    assert result.returncode == 0, result.stderr[-3000:]
    assert ("lit_train: OwnOptimizerModule has its own configure_optimizers; the optimizer and scheduler groups "
            "are not used\n") in result.stdout
    import torch

    checkpoint = torch.load(run_dir / "checkpoints" / "last.ckpt", weights_only=False)
    assert checkpoint["optimizer_states"][0]["param_groups"][0]["lr"] == 0.0123


@pytest.mark.parametrize("override", ["optimizer.lr=0.5", "scheduler=step", "optimizer=sgd"])
def test_setting_an_unused_optimizer_group_is_refused(override, tmp_path):
    result = run_cli("model._target_=byo_models.OwnOptimizerModule", *BYO, override, f"hydra.run.dir={tmp_path / 'run'}",
                     cwd=tmp_path, env=BYO_PATH)
    assert result.returncode == 2
    key = override.split("=")[0]
    assert result.stderr.splitlines()[-2:] == [
        f"error: {key}: OwnOptimizerModule has its own configure_optimizers, so the optimizer and scheduler groups "
        "are not used; set its optimizer in the module (through model.<its argument>=...), or take the group as an "
        "argument of that name",
        "lit_train: 1 config problem(s); nothing was run.",
    ]
    assert not (tmp_path / "run").exists()


@pytest.mark.slow
def test_overfit_one_batch_reaches_full_training_accuracy(tmp_path):
    run_dir = tmp_path / "run"
    result = run_cli("debug=overfit", "callbacks.progress_bar=null", f"hydra.run.dir={run_dir}", cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    summary = read_summary(run_dir)
    assert summary["final_metrics"]["train/acc"] == 1.0
    assert summary["global_step"] == 100


@pytest.mark.slow
def test_gpt_recipe_learns_characters(tmp_path):
    run_dir = tmp_path / "run"
    result = run_cli("experiment=gpt_adamw_cosine", "trainer.max_epochs=2", "optimizer.lr=3e-3", "callbacks.progress_bar=null",
                     f"hydra.run.dir={run_dir}", cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    summary = read_summary(run_dir)
    # A uniform guess over 128 ids costs ln(128) = 4.85 nats per character; 50 steps
    # get to about the text's character frequencies (~3.1 nats).
    assert summary["best_score"] < 3.3
    assert summary["monitor"] == "val/loss"


def test_a_crash_in_training_is_one_line_unless_verbose(tmp_path):
    env = {"PYTHONPATH": str(ROOT / "tests" / "byo")}
    # A checkpoint before the crash: the run keeps its directory and summary.json (see test_bad_input.py for runs without).
    args = ["model._target_=byo_models.FailingModule", *BYO, "test=false", "callbacks.model_checkpoint.every_n_train_steps=1"]
    result = run_cli(*args, f"hydra.run.dir={tmp_path / 'a'}", cwd=tmp_path, env=env)
    assert result.returncode == 1
    assert result.stderr.strip().splitlines()[-2:] == [
        "error: RuntimeError: shapes do not match (a second line)",
        "lit_train: the run failed (summary.json says where it stopped); add verbose=true for the traceback.",
    ]
    assert "Traceback" not in result.stderr
    summary = read_summary(tmp_path / "a")
    assert (summary["status"], summary["stopped_reason"], summary["global_step"]) == ("failed", "error", 1)

    result = run_cli(*args, "verbose=true", f"hydra.run.dir={tmp_path / 'b'}", cwd=tmp_path, env=env)
    assert result.returncode == 1 and "Traceback" in result.stderr


def test_plain_trainer_arguments_without_plus(tmp_path):
    """A Lightning user's Trainer flags work as typed; switching off the progress bar drops lit_train's bar."""
    run_dir = tmp_path / "run"
    result = run_cli(*FAST, "trainer.limit_train_batches=4", "trainer.val_check_interval=0.5", "trainer.benchmark=true",
                     "trainer.enable_progress_bar=false", "test=false", f"hydra.run.dir={run_dir}", cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    rows = (run_dir / "metrics.csv").read_text().splitlines()
    header = rows[0].split(",")
    validated_at = [row.split(",")[header.index("step")] for row in rows[1:]
                    if row.split(",")[header.index("val/loss")]]
    assert validated_at == ["1", "3"]  # twice an epoch of 4 steps (the step index is 0-based)
    assert "epoch 1/1" not in result.stdout


def test_switching_off_checkpointing_keeps_only_the_final_state(tmp_path):
    run_dir = tmp_path / "run"
    result = run_cli(*FAST, "trainer.enable_checkpointing=false", "test=false", f"hydra.run.dir={run_dir}",
                     cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    assert sorted(p.name for p in (run_dir / "checkpoints").iterdir()) == ["last.ckpt"]
    assert read_summary(run_dir)["best_checkpoint"] is None
