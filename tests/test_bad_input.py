"""Bad configs and bad input, through the real CLI: one line naming the problem, no traceback, nothing left behind.

Every case runs ``python -m lit_train`` with ``hydra.run.dir=<tmp>/run`` and checks
that the run directory does not exist afterwards (or, for a directory that existed
before, that it holds what it held), that nothing else appeared, and that an
earlier run's checkpoints and summary are byte for byte and mtime for mtime as
they were. Config problems are found before Hydra creates anything (exit 2);
the rest only once the run is under way (exit 1), where the run takes back the
directory it created because it failed before its first checkpoint.
"""

import fractions
import hashlib
import os
import shutil
import zipfile
from pathlib import Path
from typing import NamedTuple

import pytest
import torch
from support import FAST, ROOT, run_cli

BYO = {"PYTHONPATH": str(ROOT / "tests" / "byo")}
QUIET = [*FAST, "callbacks.progress_bar=null"]
CONFIG_LAST_LINE = "lit_train: 1 config problem(s); nothing was run."
RUN_LAST_LINE = "lit_train: the run failed before its first checkpoint, so it left nothing behind"


class Case(NamedTuple):
    args: tuple[str, ...]
    expected: str  # a distinctive part of the one error line
    exit_code: int = 2
    #: The run directory: None for a new one; "earlier" for a copy of the earlier run (resume=auto);
    #: "unsafe" for a run directory whose only checkpoint holds a pickled object.
    existing: str | None = None
    run_dir: str = "{tmp}/run"


CASES = [
    # Wrong types.
    Case(("optimizer.lr=fast",), "optimizer.lr: must be a number > 0, got 'fast'"),
    Case(("optimizer.lr=[1]",), "optimizer.lr: must be a number > 0, got [1]"),
    Case(("data.batch_size=1.5",), "data.batch_size: must be an integer >= 1, got 1.5"),
    Case(("trainer.max_epochs=two",), "trainer.max_epochs: must be an integer >= 1 (or -1, null), got 'two'"),
    Case(("seed=1.5",), "seed: must be an integer in [0, 4294967295], got 1.5"),
    Case(("data.seed=abc",), "data.seed: must be an integer in [0, 4294967295], got 'abc'"),
    Case(("train=yes",), "train: must be true or false, got 'yes'"),
    Case(("deterministic=maybe",), "deterministic: must be true or false or one of 'warn', got 'maybe'"),
    Case(("trainer.devices=0",), "trainer.devices: must be an integer >= 1 (or -1) or a list of integers >= 0"),
    # Zero or negative learning rates.
    Case(("optimizer.lr=0",), "optimizer.lr: must be a number > 0, got 0"),
    Case(("optimizer.lr=-1e-3",), "optimizer.lr: must be a number > 0, got -0.001"),
    Case(("optimizer.lr=null",), "optimizer.lr: must be a number > 0, got None"),
    Case(("scheduler=onecycle", "scheduler.max_lr=0"), "scheduler.max_lr: must be a number > 0, got 0"),
    # Betas outside [0, 1).
    Case(("optimizer.betas=[0.9,1.0]",), "optimizer.betas: must be a list of 2 values, each a number in [0, 1), got [0.9, 1.0]"),
    Case(("optimizer.betas=[-0.1,0.999]",), "optimizer.betas: must be a list of 2 values, each a number in [0, 1), got [-0.1, 0.999]"),
    Case(("optimizer.betas=[0.9]",), "optimizer.betas: must be a list of 2 values"),
    # Other values out of range.
    Case(("data.val_fraction=1.2",), "data.val_fraction: must be a number in [0, 1), got 1.2"),
    Case(("model.net.activation=relu6",), "model.net.activation: must be one of 'gelu', 'relu', 'sigmoid', 'silu', 'tanh', got 'relu6'"),
    Case(("model.net.dropout=1",), "model.net.dropout: must be a number in [0, 1), got 1"),
    Case(("trainer.precision=bf17",), "trainer.precision: must be one of '64-true'"),
    Case(("trainer.gradient_clip_val=-1",), "trainer.gradient_clip_val: must be a number >= 0 (or null), got -1"),
    Case(("callbacks.gradient_monitor.on_nonfinite=explode",), "callbacks.gradient_monitor.on_nonfinite: must be one of 'skip', 'stop', 'warn', got 'explode'"),
    Case(("callbacks.model_checkpoint.save_top_k=-2",), "callbacks.model_checkpoint.save_top_k: must be an integer >= -1, got -2"),
    # Unknown options, with a "did you mean".
    Case(("optimizer=adamx",), "optimizer: unknown option 'adamx'; did you mean 'adam'?"),
    Case(("scheduler=cosin",), "scheduler: unknown option 'cosin'; did you mean 'cosine'?"),
    Case(("model=mpl",), "model: unknown option 'mpl'; did you mean 'mlp'?"),
    Case(("data=digit",), "data: unknown option 'digit'; did you mean 'digits'?"),
    Case(("logger=tensorbord",), "logger: unknown option 'tensorbord'; did you mean 'tensorboard'?"),
    Case(("trainer=ddpp",), "trainer: unknown option 'ddpp'; did you mean 'ddp'?"),
    # Typos in keys.
    Case(("optimizer.lrr=0.1",), "optimizer.lrr: no such key; did you mean 'lr'?"),
    Case(("trainer.max_epoch=3",), "trainer.max_epoch: no such key; did you mean 'max_epochs'?"),
    Case(("optimzer=adam",), "optimzer: no such key; did you mean 'optimizer'?"),
    Case(("optimzer.lr=0.1",), "optimzer.lr: no such key 'optimzer'; did you mean 'optimizer'?"),
    Case(("model.nett.hidden=[3]",), "model.nett.hidden: no such key 'nett'; did you mean 'net'?"),
    # A group set to null.
    Case(("logger=null",), "logger: null is not an option; none switches it off (choose from csv, mlflow, none, "),
    Case(("optimizer=null",), "optimizer: null is not an option (choose from adagrad, adam, adamw, lamb, "),
    Case(("debug=null",), "debug: null is not an option; leave debug= out for none (choose from "),
    # Each target's own ranges.
    Case(("scheduler=plateau", "scheduler.mode=triangular"), "scheduler.mode: must be one of 'max', 'min', got 'triangular'"),
    Case(("scheduler=cyclic", "scheduler.mode=min"), "scheduler.mode: must be one of 'exp_range', 'triangular', 'triangular2', got 'min'"),
    Case(("optimizer=lamb", "optimizer.betas=[0.9,0.99,0.5]"), "optimizer.betas: must be a list of 2 values"),
    Case(("seed=-1",), "seed: must be an integer in [0, 4294967295], got -1"),
    Case(("+optimizer.betta=0.9",), "optimizer.betta: not an argument of torch.optim.AdamW; did you mean 'betas'?"),
    Case(("+scheduler.T_maxx=5",), "scheduler.T_maxx: not an argument of torch.optim.lr_scheduler.CosineAnnealingLR; did you mean 'T_max'?"),
    # Missing required values.
    Case(("model.num_classes=???",), "model.num_classes: missing a required value (set model.num_classes=...)"),
    Case(("data.batch_size=???",), "data.batch_size: missing a required value (set data.batch_size=...)"),
    Case(("train=false",), "ckpt_path: test=true with train=false needs the checkpoint to test"),
    # Warmup longer than training.
    Case(("scheduler=warmup_cosine", "scheduler.warmup_steps=50", "trainer.max_steps=40"),
         "scheduler.warmup_steps: the warmup (50) must be shorter than the run (trainer.max_steps=40)"),
    Case(("+callbacks=warmup", "callbacks.warmup.ratio=1.5"), "callbacks.warmup.ratio: must be a number in (0, 1) (or null), got 1.5"),
    Case(("+callbacks=warmup", "callbacks.warmup.steps=10"), "callbacks.warmup.steps: give exactly one of callbacks.warmup.steps and callbacks.warmup.ratio"),
    # Metrics that are never logged.
    Case(("scheduler=plateau", "scheduler.monitor=val/loss"), "scheduler.monitor: lit_train's own setting, outside the scheduler group: set monitor instead"),
    Case(("+callbacks=early_stopping", "callbacks.early_stopping.monitor=valid/loss"), "callbacks.early_stopping.monitor: 'valid/loss' is never logged by the model; did you mean 'val/loss'?"),
    Case(("monitor=val/los",), "monitor: 'val/los' is never logged by the model; did you mean 'val/loss'?"),
    # Models, data and targets that do not go together or do not exist.
    Case(("model=regressor",), "model: lit_train.modules.Regressor is for regression but data (lit_train.data.DigitsDataModule) is classification data"),
    Case(("model._target_=no_such_pkg.Model",), "model._target_: cannot import 'no_such_pkg.Model': no module named 'no_such_pkg'"),
    # Checkpoints and directories named on the command line.
    Case(("ckpt_path={tmp}/nowhere.ckpt",), "ckpt_path: no checkpoint file at '{tmp}/nowhere.ckpt'"),
    Case(("ckpt_path={corrupt}",), "ckpt_path: '{corrupt}' is not a readable checkpoint (truncated or corrupt?)"),
    Case(("resume=auto", "ckpt_path={cnn_ckpt}"), "resume: resume=auto finds the checkpoint itself; drop ckpt_path="),
    Case((), "run_dir: cannot write under '{blocker}'", run_dir="{blocker}/run"),
    # Found only at run time: the run takes back its directory.
    Case(("data._target_=bad_data.EmptyDigits",), "ValueError: EmptyDigits produced an empty dataset", 1),
    Case(("data._target_=bad_data.NaNDigits",), "ValueError: NaNDigits: the features contain 3 NaN or infinite values", 1),
    Case(("data._target_=bad_data.EmptyTrainLoader",), "data: the training data is empty: bad_data.EmptyTrainLoader gave no training batch", 1),
    Case(("model.net.in_features=32",), "mat1 and mat2 shapes cannot be multiplied", 1),
    Case(("ckpt_path={cnn_ckpt}",), "ckpt_path: '{cnn_ckpt}' does not fit this config's model (Classifier), it was saved by another one: missing net.", 1),
    Case(("model=cnn", "model.net.channels=[8,32]", "ckpt_path={cnn_ckpt}"),
         "net.features.0.weight is [16, 1, 3, 3] there but [8, 1, 3, 3] here", 1),
    Case(("train=false", "ckpt_path={cnn_ckpt}"), "ckpt_path: '{cnn_ckpt}' does not fit this config's model (Classifier)", 1),
    # The earlier run was model=cnn: resumed with another model, its checkpoint does not fit.
    Case(("resume=auto", "model=mlp"), "resume=auto: '{tmp}/run/checkpoints/last.ckpt' does not fit this config's model (Classifier)", 1,
         existing="earlier"),
    Case(("ckpt_path={not_torch}",), "ckpt_path: '{not_torch}' is not a readable checkpoint (", 1),
    Case(("ckpt_path={no_state}",), "ckpt_path: '{no_state}' is not a Lightning checkpoint (it has no state_dict)", 1),
    Case(("ckpt_path={unsafe}",), "ckpt_path: '{unsafe}' is unsafe to load: it holds fractions.Fraction, a pickled object", 1),
    Case(("resume=auto",), "resume=auto: '{tmp}/run/checkpoints/last.ckpt' is unsafe to load: it holds fractions.Fraction", 1, existing="unsafe"),
]


def _case_id(case: Case) -> str:
    where = f" (in the {case.existing} run's directory)" if case.existing else ""
    return (" ".join(case.args) or f"hydra.run.dir={case.run_dir}") + where


@pytest.fixture(scope="module")
def earlier(tmp_path_factory) -> Path:
    """An earlier run (model=cnn) whose checkpoints the bad runs must leave alone."""
    run_dir = tmp_path_factory.mktemp("earlier") / "run"
    result = run_cli("model=cnn", *QUIET, "test=false", f"hydra.run.dir={run_dir}", cwd=run_dir.parent)
    assert result.returncode == 0, result.stderr[-3000:]
    return run_dir


def _fingerprint(folder: Path) -> dict[str, tuple[str, int]]:
    """Every file under ``folder``: content hash and mtime."""
    return {str(p.relative_to(folder)): (hashlib.sha256(p.read_bytes()).hexdigest(), p.stat().st_mtime_ns)
            for p in sorted(folder.rglob("*")) if p.is_file()}


def _kept_files(run_dir: Path) -> dict[str, tuple[str, int]]:
    """What a failed run must not touch in a directory that existed: its checkpoints, summary and metrics.

    (Hydra rewrites ``.hydra/`` and appends to the log of any run it starts there.)
    """
    return {name: value for name, value in _fingerprint(run_dir).items()
            if name.startswith("checkpoints") or name in ("summary.json", "metrics.csv")}


def _materials(tmp: Path, earlier: Path) -> dict[str, str]:
    """The files a case may name: broken checkpoints of several kinds, and a file where a folder should be."""
    last = earlier / "checkpoints" / "last.ckpt"
    (tmp / "corrupt.ckpt").write_bytes(last.read_bytes()[:1000])
    with zipfile.ZipFile(tmp / "not_torch.ckpt", "w") as archive:
        archive.writestr("notes.txt", "a zip archive, but not one torch wrote")
    torch.save({"global_step": 3}, tmp / "no_state.ckpt")
    torch.save({"global_step": 3, "state_dict": {}, "note": fractions.Fraction(1, 3)}, tmp / "unsafe.ckpt")
    (tmp / "blocker").write_text("a file where the run directory's parent should be")
    names = ("corrupt", "not_torch", "no_state", "unsafe")
    return {"tmp": str(tmp), "cnn_ckpt": str(last), "blocker": str(tmp / "blocker"),
            **{name: str(tmp / f"{name}.ckpt") for name in names}}


def _existing_run(kind: str | None, run_dir: Path, earlier: Path, unsafe: Path) -> None:
    if kind == "earlier":
        shutil.copytree(earlier, run_dir)
    elif kind == "unsafe":
        (run_dir / "checkpoints").mkdir(parents=True)
        shutil.copy2(unsafe, run_dir / "checkpoints" / "last.ckpt")


@pytest.mark.parametrize("case", CASES, ids=[_case_id(c) for c in CASES])
def test_bad_input_fails_with_one_line_and_leaves_nothing_behind(case, tmp_path, earlier):
    paths = _materials(tmp_path, earlier)
    run_dir = Path(case.run_dir.format(**paths))
    _existing_run(case.existing, run_dir, earlier, Path(paths["unsafe"]))
    earlier_files = _fingerprint(earlier)
    before = sorted(tmp_path.rglob("*"))
    existing_entries = sorted(p.name for p in run_dir.iterdir()) if case.existing else None
    existing_files = _kept_files(run_dir) if case.existing else None

    args = [arg.format(**paths) for arg in case.args]
    result = run_cli(*QUIET, *args, f"hydra.run.dir={run_dir}", cwd=tmp_path, env=BYO, timeout=120)

    assert result.returncode == case.exit_code, result.stderr[-3000:]
    assert "Traceback" not in result.stderr, result.stderr[-3000:]
    errors = [line for line in result.stderr.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1, result.stderr[-3000:]
    assert case.expected.format(**paths) in errors[0], errors
    last_line = result.stderr.strip().splitlines()[-1]
    assert last_line.startswith(CONFIG_LAST_LINE if case.exit_code == 2 else RUN_LAST_LINE), last_line
    if case.existing:
        # A directory that existed keeps what it held: the run added nothing and rewrote no checkpoint or summary.
        assert sorted(p.name for p in run_dir.iterdir()) == existing_entries
        assert _kept_files(run_dir) == existing_files
    else:
        assert not run_dir.exists()
    assert sorted(tmp_path.rglob("*")) == before
    assert _fingerprint(earlier) == earlier_files


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into read-only directories (the next test blocks root too)")
def test_a_read_only_output_directory_is_reported(tmp_path):
    locked = tmp_path / "locked"
    locked.mkdir(mode=0o555)
    try:
        result = run_cli("optimizer.lr=0.01", f"hydra.run.dir={locked / 'run'}", cwd=tmp_path)
    finally:
        locked.chmod(0o755)
    assert result.returncode == 2
    assert f"error: run_dir: cannot write under '{locked}'" in result.stderr
    assert list(locked.iterdir()) == []


def test_a_file_where_the_output_directory_should_be_is_reported(tmp_path):
    # Not even root can create a directory under a regular file, even one whose mode allows writing and executing.
    blocker = tmp_path / "blocker"
    blocker.write_text("not a directory")
    blocker.chmod(0o755)
    result = run_cli("optimizer.lr=0.01", f"hydra.run.dir={blocker / 'run'}", cwd=tmp_path)
    assert result.returncode == 2
    assert f"error: run_dir: cannot write under '{blocker}'" in result.stderr
    assert sorted(tmp_path.iterdir()) == [blocker] and blocker.read_text() == "not a directory"


def test_the_table_covers_every_kind_of_bad_input():
    assert len(CASES) >= 40
    assert sum(case.exit_code == 1 for case in CASES) >= 10
    assert len({_case_id(case) for case in CASES}) == len(CASES)


def test_a_crash_after_a_checkpoint_keeps_the_run_and_its_summary(tmp_path):
    run_dir = tmp_path / "run"
    result = run_cli("model._target_=byo_models.FailingModule", "data._target_=byo_models.BlobsDataModule", *QUIET,
                     "trainer.limit_val_batches=2", "test=false", "callbacks.model_checkpoint.every_n_train_steps=1",
                     f"hydra.run.dir={run_dir}", cwd=tmp_path, env=BYO)
    assert result.returncode == 1
    assert result.stderr.strip().splitlines()[-1].startswith("lit_train: the run failed (summary.json says where it stopped)")
    summary = (run_dir / "summary.json").read_text()
    assert '"status": "failed"' in summary and '"global_step": 1' in summary
    assert (run_dir / "checkpoints" / "last.ckpt").is_file() and (run_dir / ".hydra" / "config.yaml").is_file()


def test_a_failed_run_removes_only_what_it_created(tmp_path):
    # A directory the user made, with a file in it: both stay, and nothing of the run is added.
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "notes.txt").write_text("mine")
    result = run_cli("data._target_=bad_data.NaNDigits", *QUIET, f"hydra.run.dir={mine}", cwd=tmp_path, env=BYO)
    assert result.returncode == 1 and RUN_LAST_LINE in result.stderr
    assert [p.name for p in mine.iterdir()] == ["notes.txt"]

    # Parents created for the run go with it; a parent that existed stays.
    run_dir = tmp_path / "outputs" / "2024-01-01" / "run"
    result = run_cli("data._target_=bad_data.NaNDigits", *QUIET, f"hydra.run.dir={run_dir}", cwd=tmp_path, env=BYO)
    assert result.returncode == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == ["mine"]
