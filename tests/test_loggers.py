"""The loggers of conf/logger.

CSV: a run SIGKILLed and resumed with resume=auto ends with the uninterrupted run's metrics.csv; a fresh run writes as
Lightning's CSVLogger does; resuming drops exactly the rows logged at or after the checkpoint's step. TensorBoard: one
event file per run, with curves of the LR and the step loss. MLflow: a sweep's runs in one SQLite store that plain
MLflow reads."""

import csv
import json
import os
import re
import subprocess
import sys
import warnings

import pytest
import torch
from lightning.pytorch.loggers import CSVLogger, TensorBoardLogger
from lightning.pytorch.utilities.rank_zero import rank_zero_only
from support import FAST, ROOT, compose_config, read_summary, run_cli
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from lit_train.training.loggers import ResumableCSVLogger, SingleFileTensorBoardLogger, keep_rows_before
from lit_train.training.run import run


def _rows(path):
    with path.open(newline="") as f:
        return list(csv.DictReader(f))


@pytest.mark.slow
def test_killed_and_resumed_run_keeps_the_uninterrupted_metrics(tmp_path):
    # Two epochs of 8 steps, last.ckpt every 3: killed at step 11, the run resumes from step 9, mid-epoch.
    args = ["deterministic=true", "model.net.dropout=0.2", "trainer.max_epochs=2", "trainer.log_every_n_steps=1",
            "trainer.limit_train_batches=8", "trainer.limit_val_batches=2",
            "callbacks.model_checkpoint.every_n_train_steps=3", "callbacks.progress_bar=null", "test=false"]
    full, cut = tmp_path / "full", tmp_path / "cut"
    assert run_cli(*args, f"hydra.run.dir={full}", cwd=tmp_path).returncode == 0

    env = {"PYTHONPATH": str(ROOT / "tests" / "byo")}
    killer = "+callbacks.killer={_target_: killer.KillAt, step: 11}"
    killed = run_cli(*args, killer, f"hydra.run.dir={cut}", cwd=tmp_path, env=env)
    assert killed.returncode == -9
    # The killed run wrote rows past its last checkpoint: those the resumed run logs again.
    assert max(int(row["step"]) for row in _rows(cut / "metrics.csv")) >= 9
    resumed = run_cli("resume=auto", "~callbacks.killer", f"hydra.run.dir={cut}", cwd=tmp_path)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert read_summary(cut)["resumed_at_step"] == 9

    assert (cut / "metrics.csv").read_bytes() == (full / "metrics.csv").read_bytes()


def test_a_fresh_run_into_an_empty_directory_writes_metrics_normally(tmp_path):
    run_dir = tmp_path / "run"
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        run(compose_config([*FAST, "callbacks.progress_bar=null", "test=false"], run_dir=run_dir))
    assert not [w for w in caught if "exists and is not empty" in str(w.message)]
    rows = _rows(run_dir / "metrics.csv")
    assert [row["step"] for row in rows if row["train/loss_step"]] == ["0", "1"]
    assert any(row["val/loss"] for row in rows)


def _log(logger, steps, extra_from=None):
    """Logs what a training run logs around each step: an LR row, a step row, and at step 3 epoch-end rows."""
    for step in steps:
        logger.log_metrics({"lr": 0.1 / (step + 1)}, step=step)
        logger.log_metrics({"loss_step": 1.0 / (step + 1), "epoch": step // 4}, step=step)
        if step % 4 == 3:
            logger.log_metrics({"val/loss": 0.5 / (step + 1), "epoch": step // 4}, step=step)
            logger.log_metrics({"loss_epoch": 0.7 / (step + 1), "epoch": step // 4}, step=step)
        if extra_from is not None and step >= extra_from:
            logger.log_metrics({"new_column": float(step)}, step=step)
        logger.save()


def test_a_fresh_logger_writes_what_lightnings_csv_logger_writes(tmp_path):
    ours = ResumableCSVLogger(tmp_path / "ours", name="", version="")
    theirs = CSVLogger(tmp_path / "theirs", name="", version="")
    for logger in (ours, theirs):
        logger.log_hyperparams({"lr": 0.1, "model": {"width": 8}})
        _log(logger, range(6), extra_from=5)
        logger.log_hyperparams({"seed": 0})
        logger.finalize("success")
    for name in ("metrics.csv", "hparams.yaml"):
        assert (tmp_path / "ours" / name).read_bytes() == (tmp_path / "theirs" / name).read_bytes()


def test_versions_and_prefix_follow_lightnings_csv_logger(tmp_path):
    for cls, save_dir in ((ResumableCSVLogger, tmp_path / "ours"), (CSVLogger, tmp_path / "theirs")):
        (save_dir / "exp" / "version_3").mkdir(parents=True)
        (save_dir / "exp" / "version_7").touch()  # a file, not a version
        logger = cls(save_dir, name="exp", prefix="p")
        assert (logger.version, logger.root_dir, logger.log_dir) == (
            4, str(save_dir / "exp"), str(save_dir / "exp" / "version_4"))
        logger.log_metrics({"a": torch.tensor(1.5)})
        logger.save()
        assert (save_dir / "exp" / "version_4" / "metrics.csv").read_bytes() == b"p-a,step\r\n1.5,0\r\n"


def test_only_rank_zero_writes(tmp_path, monkeypatch):
    monkeypatch.setattr(rank_zero_only, "rank", 1)
    logger = ResumableCSVLogger(tmp_path, name="", version="")
    logger.log_hyperparams({"lr": 0.1})
    _log(logger, range(2))
    logger.finalize("success")
    assert list(tmp_path.iterdir()) == []


def test_resuming_after_something_was_logged_is_refused(tmp_path):
    logger = ResumableCSVLogger(tmp_path, name="", version="")
    logger.log_metrics({"a": 1.0}, step=0)
    with pytest.raises(RuntimeError, match=(
        r"^ResumableCSVLogger.continue_from must come before anything is logged: .*metrics.csv is already being "
        r"written$"
    )):
        logger.continue_from(_checkpoint(tmp_path / "last.ckpt", 4))


def test_the_loggers_read_no_private_attribute_of_lightnings_loggers(tmp_path):
    # Lightning keeps its loggers' state in private attributes it may rename in any release.
    private = {name for cls in (CSVLogger, TensorBoardLogger) for name in vars(cls(tmp_path)) if name.startswith("_")}
    used = set(re.findall(r"self\.(_\w+)", (ROOT / "src" / "lit_train" / "training" / "loggers.py").read_text()))
    assert private and used and not used & private


def test_a_fresh_run_replaces_an_old_metrics_file_and_nothing_else(tmp_path):
    (tmp_path / "metrics.csv").write_text("lr,step\n0.1,0\n0.1,1\n")
    (tmp_path / "notes.txt").write_text("the user's")
    logger = ResumableCSVLogger(tmp_path, name="", version="")
    _log(logger, [0])
    assert [row["step"] for row in _rows(tmp_path / "metrics.csv")] == ["0", "0"]
    assert (tmp_path / "notes.txt").read_text() == "the user's"


def _checkpoint(path, step):
    torch.save({"global_step": step, "state_dict": {}}, path)
    return path


def test_a_resumed_logger_ends_with_the_rows_of_an_uninterrupted_one(tmp_path):
    full, cut = tmp_path / "full", tmp_path / "cut"
    _log(ResumableCSVLogger(full, name="", version=""), range(8), extra_from=6)
    _log(ResumableCSVLogger(cut, name="", version=""), range(6))  # killed during step 5, last checkpoint at 4
    resumed = ResumableCSVLogger(cut, name="", version="")
    resumed.continue_from(_checkpoint(tmp_path / "last.ckpt", 4))
    _log(resumed, range(4, 8), extra_from=6)  # a column the killed run never had: the header is rewritten
    assert (cut / "metrics.csv").read_bytes() == (full / "metrics.csv").read_bytes()


def test_keep_rows_before_drops_the_rows_at_and_after_the_step(tmp_path):
    path = tmp_path / "metrics.csv"
    _log(ResumableCSVLogger(tmp_path, name="", version=""), range(6))
    header = path.read_text().splitlines()[0].split(",")

    assert keep_rows_before(path, 4) == header
    rows = _rows(path)
    assert [row["step"] for row in rows] == ["0", "0", "1", "1", "2", "2", "3", "3", "3", "3"]
    assert rows[-2]["val/loss"] and rows[-1]["loss_epoch"]  # step 3's epoch-end rows stay: they precede step 4
    assert keep_rows_before(path, 0) == header and _rows(path) == []
    assert keep_rows_before(tmp_path / "none.csv", 3) == [] and not (tmp_path / "none.csv").exists()


def test_keep_rows_before_rewrites_only_when_something_changes(tmp_path):
    path = tmp_path / "metrics.csv"
    path.write_bytes(b"a,step\r\n1,0\r\n2,1\r\n")
    before = path.stat()
    assert keep_rows_before(path, 2) == ["a", "step"]
    assert (path.stat().st_ino, path.stat().st_mtime_ns) == (before.st_ino, before.st_mtime_ns)


def test_keep_rows_before_drops_a_cut_short_row_and_sorts_the_header(tmp_path):
    path = tmp_path / "metrics.csv"
    # A kill in the middle of a write leaves the last row short; a header out of order would misplace appended rows.
    path.write_bytes(b"step,b,a\r\n0,x,1\r\n,y,2\r\n1,z\r\n")
    assert keep_rows_before(path, 5) == ["a", "b", "step"]
    assert path.read_bytes() == b"a,b,step\r\n1,x,0\r\n2,y,\r\n"


def _scalars(run_dir):
    accumulator = EventAccumulator(str(run_dir))
    accumulator.Reload()
    return {tag: [event.step for event in accumulator.Scalars(tag)] for tag in accumulator.Tags()["scalars"]}


def test_tensorboard_stages_share_one_event_file(tmp_path):
    logger = SingleFileTensorBoardLogger(tmp_path, name="", version="", default_hp_metric=False)
    logger.log_metrics({"train/loss": 1.0}, step=0)
    logger.finalize("success")  # the end of fit
    logger.log_metrics({"test/loss": 0.5}, step=1)
    logger.finalize("success")  # the end of test
    assert len(list(tmp_path.glob("events.out.tfevents.*"))) == 1
    assert _scalars(tmp_path) == {"train/loss": [0], "test/loss": [1]}
    assert (tmp_path / "hparams.yaml").is_file()


@pytest.mark.slow
def test_a_tensorboard_run_writes_one_event_file_with_curves(tmp_path):
    # Two epochs of the default digits data (20 steps each) at logger=tensorboard's interval of 10 steps.
    run_dir = tmp_path / "run"
    result = run_cli("logger=tensorboard", "trainer.accelerator=cpu", "trainer.devices=1", "trainer.max_epochs=2",
                     "callbacks.progress_bar=null", f"hydra.run.dir={run_dir}", cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    assert len(list(run_dir.glob("events.out.tfevents.*"))) == 1
    scalars = _scalars(run_dir)
    assert scalars["train/loss_step"] == scalars["lr-AdamW/pg1"] == [9, 19, 29, 39]
    assert scalars["val/loss"] == [19, 39]
    assert scalars["test/loss"] == scalars["test/acc"] == [40]
    assert (run_dir / "hparams.yaml").is_file()


#: Reads lit_train's MLflow store as a user would: plain MLflow, the tracking URI, no environment variables.
_READ_MLFLOW = """
import json, sys
import mlflow

mlflow.set_tracking_uri(sys.argv[1])
runs = mlflow.search_runs(experiment_names=["lit_train"], output_format="list")
print(json.dumps([{"status": r.info.status, "run_dir": r.data.tags.get("run_dir"), "metrics": r.data.metrics,
                   "params": r.data.params} for r in runs]))
"""


@pytest.mark.slow
def test_a_sweeps_mlflow_runs_share_one_store_that_plain_mlflow_reads(tmp_path):
    sweep = tmp_path / "sweep"
    result = run_cli("-m", "logger=mlflow", "seed=0,1", *FAST, f"hydra.sweep.dir={sweep}", cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    store = tmp_path / "mlflow.db"  # MLflow's default store in the directory lit_train ran from
    assert store.is_file()

    read = subprocess.run([sys.executable, "-c", _READ_MLFLOW, f"sqlite:///{store}"], cwd=ROOT, capture_output=True,
                          text=True, timeout=120, env={"PATH": os.environ.get("PATH", ""), "HOME": str(tmp_path)})
    assert read.returncode == 0, read.stderr[-3000:]
    runs = sorted(json.loads(read.stdout), key=lambda r: r["run_dir"])
    assert [r["run_dir"] for r in runs] == [str(sweep / "0"), str(sweep / "1")]
    for job, mlflow_run in enumerate(runs):
        summary = read_summary(sweep / str(job))
        assert mlflow_run["status"] == "FINISHED"
        assert mlflow_run["params"]["seed"] == str(job)
        assert mlflow_run["metrics"]["val/loss"] == pytest.approx(summary["final_metrics"]["val/loss"])
        assert mlflow_run["metrics"]["test/loss"] == pytest.approx(summary["test_metrics"]["test/loss"])
        assert {"train/loss_step", "lr-AdamW/pg1"} <= mlflow_run["metrics"].keys()
