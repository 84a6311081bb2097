"""model.compile=true through the CLI: a compiled run trains, checkpoints, resumes and finds an LR."""

import pytest
import torch
from support import FAST, read_summary, run_cli

#: torch logs each frame it traces; the network's forward is the one frame compile hands it.
TRACED = "torchdynamo start tracing forward"
SMALL = [*FAST, "model.net.hidden=[16]"]


@pytest.mark.slow
def test_a_compiled_checkpoint_loads_uncompiled_and_back(tmp_path):
    env = {"TORCH_LOGS": "dynamo"}
    compiled = run_cli(*SMALL, "model.compile=true", f"hydra.run.dir={tmp_path / 'a'}", cwd=tmp_path, env=env)
    assert compiled.returncode == 0, compiled.stderr
    assert TRACED in compiled.stderr
    checkpoint = torch.load(tmp_path / "a" / "checkpoints" / "last.ckpt", weights_only=True)
    assert not [key for key in checkpoint["state_dict"] if "_orig_mod" in key]
    assert read_summary(tmp_path / "a")["status"] == "completed"  # the gradient monitor (a default) ran on it too

    resumed = run_cli(*SMALL, "trainer.max_epochs=2", f"ckpt_path={tmp_path / 'a' / 'checkpoints' / 'last.ckpt'}",
                      f"hydra.run.dir={tmp_path / 'b'}", cwd=tmp_path, env=env)
    assert resumed.returncode == 0, resumed.stderr
    assert TRACED not in resumed.stderr
    assert read_summary(tmp_path / "b")["global_step"] == 4

    # b tested its best checkpoint uncompiled; the same weights tested compiled give the same loss.
    best = read_summary(tmp_path / "b")["best_checkpoint"]
    tested = run_cli(*SMALL, "model.compile=true", "train=false", f"ckpt_path={best}",
                     f"hydra.run.dir={tmp_path / 'c'}", cwd=tmp_path, env=env)
    assert tested.returncode == 0, tested.stderr
    assert TRACED in tested.stderr
    expected = read_summary(tmp_path / "b")["test_metrics"]["test/loss"]
    assert read_summary(tmp_path / "c")["test_metrics"]["test/loss"] == pytest.approx(expected, rel=1e-5)


@pytest.mark.slow
def test_the_lr_finder_runs_on_a_compiled_network(tmp_path):
    result = run_cli(*SMALL, "model.compile=true", "action=lr_find", f"hydra.run.dir={tmp_path}", cwd=tmp_path,
                     env={"TORCH_LOGS": "dynamo"})
    assert result.returncode == 0, result.stderr
    assert TRACED in result.stderr
    assert "lr_suggestion" in read_summary(tmp_path)


@pytest.mark.slow
def test_a_compiled_network_trains_under_ddp_and_resumes(tmp_path):
    one_rank = [override for override in SMALL if override != "trainer.devices=1"]
    two_ranks = [*one_rank, "trainer=ddp", "trainer.devices=2", "callbacks.progress_bar=null", "model.compile=true"]
    env = {"TORCH_LOGS": "dynamo", "OMP_NUM_THREADS": "1"}
    first = run_cli(*two_ranks, f"hydra.run.dir={tmp_path / 'a'}", cwd=tmp_path, env=env)
    assert first.returncode == 0, first.stderr[-3000:]
    # each rank compiles its own copy, and both write to the run's stderr: torch's log lines name the process
    assert len({line.split()[2] for line in first.stderr.splitlines() if TRACED in line}) == 2
    last = tmp_path / "a" / "checkpoints" / "last.ckpt"
    checkpoint = torch.load(last, weights_only=True)
    assert not [key for key in checkpoint["state_dict"] if "_orig_mod" in key or key.startswith("module.")]
    assert read_summary(tmp_path / "a")["status"] == "completed"

    resumed = run_cli(*two_ranks, "trainer.max_epochs=2", f"ckpt_path={last}", f"hydra.run.dir={tmp_path / 'b'}",
                      cwd=tmp_path, env=env)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    summary = read_summary(tmp_path / "b")
    assert summary["status"] == "completed"
    assert summary["global_step"] == 2 * checkpoint["global_step"]  # one more epoch of the same length
