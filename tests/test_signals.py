"""Stop signals: SIGTERM, SIGINT, SIGUSR1 and SIGUSR2 end a run at an optimizer-step boundary with last.ckpt written
there, summary.json saying interrupted and naming the signal, exit code 128 + the signal's number; resume=auto then
ends bitwise where an uninterrupted run ends, wherever the signal came (mid-epoch, at an epoch's end, during
validation)."""

import json
import signal
import subprocess
import sys
import time

import pytest
import torch
from support import ROOT, read_summary, run_cli

#: 8 steps an epoch, validation after each.
COMMON = ["deterministic=true", "model.net.dropout=0.2", "trainer.max_epochs=3", "trainer.limit_train_batches=8",
          "trainer.limit_val_batches=2", "callbacks.progress_bar=null", "test=false"]
BYO = {"PYTHONPATH": str(ROOT / "tests" / "byo")}
CASES = {
    # signal, sent after this optimizer step, sent during the validation after it, the step the run stops at
    "sigterm_mid_epoch": ("SIGTERM", 11, False, 11),
    "sigint_at_epoch_end": ("SIGINT", 16, False, 16),
    "sigusr1_during_validation": ("SIGUSR1", 8, True, 8),
    "sigusr2_mid_epoch": ("SIGUSR2", 19, False, 19),
}


def _signal_at(name: str, step: int, during_validation: bool) -> str:
    return (f"+callbacks.signal={{_target_: killer.SignalAt, signal: {name}, step: {step}, "
            f"during_validation: {str(during_validation).lower()}}}")


def _tensors(value, run_dir, prefix=""):
    """Every tensor in a checkpoint, by its path in the nested dicts and lists (the run directory's name left out)."""
    if isinstance(value, torch.Tensor):
        yield prefix, value
    elif isinstance(value, dict):
        for key, item in value.items():
            yield from _tensors(item, run_dir, f"{prefix}/{str(key).replace(str(run_dir), 'RUN')}")
    elif isinstance(value, (list, tuple)):
        for index, item in enumerate(value):
            yield from _tensors(item, run_dir, f"{prefix}/{index}")


def _load_last(run_dir):
    return torch.load(run_dir / "checkpoints" / "last.ckpt", weights_only=True)


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory):
    run_dir = tmp_path_factory.mktemp("full") / "run"
    result = run_cli(*COMMON, f"hydra.run.dir={run_dir}", cwd=run_dir.parent)
    assert result.returncode == 0, result.stderr[-3000:]
    return dict(_tensors(_load_last(run_dir), run_dir))


@pytest.mark.slow
@pytest.mark.parametrize("case", sorted(CASES))
def test_a_signalled_and_resumed_run_equals_the_uninterrupted_one(case, uninterrupted, tmp_path):
    name, step, during_validation, stops_at = CASES[case]
    run_dir = tmp_path / "run"
    stopped = run_cli(*COMMON, _signal_at(name, step, during_validation), f"hydra.run.dir={run_dir}",
                      cwd=tmp_path, env=BYO)
    assert stopped.returncode == 128 + getattr(signal, name), stopped.stderr[-3000:]
    summary = read_summary(run_dir)
    assert (summary["status"], summary["signal"], summary["stopped_reason"]) == ("interrupted", name, name)
    assert summary["global_step"] == stops_at == _load_last(run_dir)["global_step"]
    assert f"stopped by {name}" in stopped.stderr and "Traceback" not in stopped.stderr

    resumed = run_cli("resume=auto", "~callbacks.signal", f"hydra.run.dir={run_dir}", cwd=tmp_path)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert f"resume=auto continues from {run_dir / 'checkpoints' / 'last.ckpt'} (step {stops_at})" in resumed.stdout
    final = _load_last(run_dir)
    assert final["global_step"] == 3 * 8
    got = dict(_tensors(final, run_dir))
    assert got.keys() == uninterrupted.keys()
    assert [path for path in got if not torch.equal(uninterrupted[path], got[path])] == []


def test_a_signal_before_the_first_checkpoint_keeps_the_run(tmp_path):
    run_dir = tmp_path / "run"
    result = run_cli(*COMMON, _signal_at("SIGTERM", 1, False), f"hydra.run.dir={run_dir}", cwd=tmp_path, env=BYO)
    assert result.returncode == 128 + signal.SIGTERM, result.stderr[-3000:]
    assert read_summary(run_dir)["global_step"] == 1 == _load_last(run_dir)["global_step"]


def test_the_handler_installed_before_lit_train_runs_after_the_checkpoint(tmp_path):
    """submitit requeues a SLURM job from its own SIGUSR2 handler: it runs once last.ckpt and summary.json are there."""
    run_dir, record = tmp_path / "run", tmp_path / "requeued.json"
    result = subprocess.run(
        [sys.executable, str(ROOT / "tests" / "byo" / "requeue.py"), str(record), *COMMON,
         _signal_at("SIGUSR2", 3, False), f"hydra.run.dir={run_dir}"],
        cwd=tmp_path, env={**__import__("os").environ, **BYO}, capture_output=True, text=True, timeout=300)
    assert result.returncode == 3, result.stderr[-3000:]
    assert json.loads(record.read_text()) == {"signal": signal.SIGUSR2, "status": "interrupted", "last_ckpt": True}


@pytest.mark.slow
def test_ctrl_c_from_outside_stops_at_a_step_with_everything_saved(tmp_path):
    """A real SIGINT from another process, as a terminal sends it, while the run trains for a long time."""
    run_dir = tmp_path / "run"
    process = subprocess.Popen(
        [sys.executable, "-m", "lit_train", "trainer.max_epochs=100000", "callbacks.progress_bar=null",
         f"hydra.run.dir={run_dir}"],
        cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        # A shell starts background jobs ignoring SIGINT, which lit_train respects; a terminal's job does not ignore it.
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    deadline = time.time() + 120
    while not (run_dir / "checkpoints" / "best.ckpt").exists() and time.time() < deadline:
        time.sleep(0.2)
    process.send_signal(signal.SIGINT)
    _, stderr = process.communicate(timeout=120)
    assert process.returncode == 128 + signal.SIGINT, stderr[-3000:]
    summary = read_summary(run_dir)
    assert (summary["status"], summary["signal"]) == ("interrupted", "SIGINT")
    assert summary["global_step"] == _load_last(run_dir)["global_step"] > 0
    assert "Traceback" not in stderr
