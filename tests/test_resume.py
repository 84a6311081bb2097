"""Resuming: a run SIGKILLed at any step and resumed with resume=auto ends bitwise where an uninterrupted run ends;
every rank gets its own RNG state back; stale temporaries are cleaned and never resumed from; loads are safe."""

import os
import random
import shutil
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from support import FAST, ROOT, compose_config, read_summary, run_cli

from lit_train.training.atomic import is_temporary, remove_stale_temporaries
from lit_train.training.checkpoint_io import AtomicCheckpointIO
from lit_train.training.resume import RngState, find_resume_checkpoint
from lit_train.training.run import run

COMMON = [
    "deterministic=true", "model.net.dropout=0.2", "trainer.max_epochs=3", "trainer.limit_train_batches=8",
    "trainer.limit_val_batches=2", "callbacks.model_checkpoint.every_n_train_steps=3", "callbacks.progress_bar=null",
    "test=false",
]
CASES = {
    # 8 steps per epoch: step 11 is the middle of the second epoch.
    "mid_epoch": ([], 11),
    "mid_warmup": (["+callbacks=warmup", "callbacks.warmup.ratio=0.5"], 7),
    "counting_patience": (["+callbacks=early_stopping", "callbacks.early_stopping.min_delta=2",
                           "callbacks.early_stopping.patience=2", "trainer.max_epochs=4"], 20),
}


def _final_state(run_dir):
    checkpoint = torch.load(run_dir / "checkpoints" / "last.ckpt", weights_only=True)
    return checkpoint["global_step"], checkpoint["state_dict"], checkpoint["optimizer_states"][0]["state"], checkpoint


@pytest.mark.slow
@pytest.mark.parametrize("case", sorted(CASES))
def test_killed_and_resumed_run_equals_the_uninterrupted_one(case, tmp_path):
    extra, kill_step = CASES[case]
    args = [*COMMON, *extra]
    full, cut = tmp_path / "full", tmp_path / "cut"
    assert run_cli(*args, f"hydra.run.dir={full}", cwd=tmp_path).returncode == 0

    env = {"PYTHONPATH": str(ROOT / "tests" / "byo")}
    killed = run_cli(*args, f"+callbacks.killer={{_target_: killer.KillAt, step: {kill_step}}}", f"hydra.run.dir={cut}",
                     cwd=tmp_path, env=env)
    assert killed.returncode == -9  # SIGKILL: no chance to save anything on the way out
    # The resumed run takes the killed run's recorded overrides, less the killer.
    resumed = run_cli("resume=auto", "~callbacks.killer", f"hydra.run.dir={cut}", cwd=tmp_path)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert "resume=auto continues from" in resumed.stdout

    step_a, weights_a, optim_a, ckpt_a = _final_state(full)
    step_b, weights_b, optim_b, ckpt_b = _final_state(cut)
    assert step_a == step_b
    assert all(torch.equal(weights_a[k], weights_b[k]) for k in weights_a)
    assert all(torch.equal(optim_a[i][k], optim_b[i][k]) for i in optim_a for k in optim_a[i])
    summary = read_summary(cut)
    assert summary["resumed_at_step"] == kill_step // 3 * 3
    assert summary["stopped_reason"] == read_summary(full)["stopped_reason"]
    if case == "counting_patience":
        assert summary["stopped_reason"] == "patience"


def test_resume_auto_without_a_checkpoint_starts_fresh(tmp_path):
    result = run_cli("resume=auto", "debug=fast_dev_run", f"hydra.run.dir={tmp_path / 'run'}", cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "resume=auto found no checkpoint" in result.stdout
    assert read_summary(tmp_path / "run")["resumed_from"] is None


def _flip_a_bit_in_a_tensor(path):
    data = bytearray(path.read_bytes())
    data[-len(data) // 3] ^= 0x01  # inside the tensors' records, which make up most of the file
    path.write_bytes(bytes(data))


def test_resume_skips_a_corrupt_checkpoint_and_says_why(tmp_path):
    folder = tmp_path / "checkpoints"
    folder.mkdir()
    torch.save({"global_step": 7}, folder / "a.ckpt")
    torch.save({"global_step": 9, "weights": torch.zeros(10_000)}, folder / "flipped.ckpt")
    _flip_a_bit_in_a_tensor(folder / "flipped.ckpt")
    torch.save({"step": 11}, folder / "other.ckpt")
    (folder / "last.ckpt").write_bytes(b"truncated")
    skipped = []
    assert find_resume_checkpoint(tmp_path, skipped) == (folder / "a.ckpt", 7)
    flipped, truncated, other = sorted(skipped)
    assert flipped == f"'{folder / 'flipped.ckpt'}' is corrupt: its record flipped/data/0 fails its CRC-32 check"
    assert truncated.startswith(f"'{folder / 'last.ckpt'}' is not a readable checkpoint (")  # then torch's own reason
    assert other == f"'{folder / 'other.ckpt'}' is not a Lightning checkpoint (it has no global_step)"
    assert find_resume_checkpoint(tmp_path / "nowhere") is None


def test_resume_auto_passes_over_a_bit_flipped_last_checkpoint_naming_it(tmp_path):
    run_dir = tmp_path / "run"
    args = ["trainer.max_epochs=1", "trainer.limit_train_batches=4", "trainer.limit_val_batches=1", "test=false",
            "callbacks.model_checkpoint.every_n_train_steps=2", "callbacks.progress_bar=null"]
    assert run_cli(*args, f"hydra.run.dir={run_dir}", cwd=tmp_path).returncode == 0
    last = run_dir / "checkpoints" / "last.ckpt"
    _flip_a_bit_in_a_tensor(last)
    resumed = run_cli("resume=auto", "trainer.max_epochs=2", f"hydra.run.dir={run_dir}", cwd=tmp_path)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert f"lit_train: resume=auto skips '{last}' is corrupt: its record " in resumed.stderr
    assert "fails its CRC-32 check" in resumed.stderr
    assert f"resume=auto continues from {run_dir / 'checkpoints' / 'best.ckpt'} (step " in resumed.stdout


def test_rng_states_round_trip_through_a_safe_load(tmp_path):
    torch.manual_seed(1), np.random.seed(2), random.seed(3)
    saved = RngState().state_dict()
    torch.save({"callbacks": {"RngState": saved}}, tmp_path / "x.ckpt")
    loaded = torch.load(tmp_path / "x.ckpt", weights_only=True)["callbacks"]["RngState"]
    assert len(loaded["ranks"]) == 1  # one process: one state
    expected = (torch.rand(3), np.random.rand(3), random.random())

    single = SimpleNamespace(global_rank=0, world_size=1)
    for state in (loaded, loaded["ranks"][0]):  # the per-rank list, and a single state as older checkpoints hold it
        callback = RngState()
        callback.load_state_dict(state)
        torch.manual_seed(9), np.random.seed(9), random.seed(9)
        callback.on_train_start(single, None)
        drawn = (torch.rand(3), np.random.rand(3), random.random())
        assert torch.equal(drawn[0], expected[0]) and np.array_equal(drawn[1], expected[1]) and drawn[2] == expected[2]


DDP_RNG_SCRIPT = '''
import random, sys
from pathlib import Path

import lightning.pytorch as L
import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from lit_train.training.resume import RngState, _capture

out = Path(sys.argv[1])


class Tiny(L.LightningModule):
    def __init__(self):
        super().__init__()
        self.layer = nn.Linear(4, 1)

    def training_step(self, batch, batch_idx):
        return self.layer(batch[0]).sum()

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.01)

    def train_dataloader(self):
        return DataLoader(TensorDataset(torch.randn(16, 4)), batch_size=2)


class OwnSeed(L.Callback):
    """Each rank draws from generators of its own, as ranks with different data and dropout end up doing."""

    def on_train_start(self, trainer, pl_module):
        rank = trainer.global_rank
        torch.manual_seed(100 + rank), np.random.seed(200 + rank), random.seed(300 + rank)


class Probe(L.Callback):
    """Records each rank's torch state right after RngState restored it."""

    def on_train_start(self, trainer, pl_module):
        torch.save(torch.get_rng_state(), out / f"restored{trainer.global_rank}.pt")


def trainer(steps, callbacks):
    return L.Trainer(strategy="ddp", accelerator="cpu", devices=2, max_steps=steps, callbacks=[RngState(), *callbacks],
                     logger=False, enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False)


first = trainer(2, [OwnSeed()])
first.fit(Tiny())
torch.save(_capture()["torch"], out / f"saved{first.global_rank}.pt")
first.save_checkpoint(out / "both.ckpt")  # state_dict gathers on every rank; rank 0 writes
trainer(4, [Probe()]).fit(Tiny(), ckpt_path=out / "both.ckpt", weights_only=True)
torch.distributed.destroy_process_group()  # else gloo's threads can abort the interpreter's shutdown
'''


def test_each_ddp_rank_resumes_its_own_rng_state(tmp_path):
    """Two CPU ranks with different RNG states: the checkpoint holds both, and each rank gets its own back."""
    script = tmp_path / "ddp_rng.py"
    script.write_text(DDP_RNG_SCRIPT)
    result = subprocess.run([sys.executable, str(script), str(tmp_path)], cwd=tmp_path, capture_output=True, text=True,
                            timeout=120, env={**os.environ, "PYTHONWARNINGS": "ignore"}, check=False)
    assert result.returncode == 0, result.stderr[-3000:]
    saved = [torch.load(tmp_path / f"saved{rank}.pt") for rank in (0, 1)]
    restored = [torch.load(tmp_path / f"restored{rank}.pt") for rank in (0, 1)]
    assert not torch.equal(saved[0], saved[1])
    assert torch.equal(restored[0], saved[0]) and torch.equal(restored[1], saved[1])
    ranks = torch.load(tmp_path / "both.ckpt", weights_only=True)["callbacks"]["RngState"]["ranks"]
    assert len(ranks) == 2 and torch.equal(ranks[1]["torch"], saved[1])


def test_stale_temporaries_are_removed_and_never_resumed_from(tmp_path):
    folder = tmp_path / "checkpoints"
    folder.mkdir()
    torch.save({"global_step": 7}, folder / "last.ckpt")
    torch.save({"global_step": 99}, folder / ".last.ckpt.k3x_9q2a.tmp")  # complete, but never renamed: a kill
    (folder / "notes.tmp").write_text("the user's")
    (folder / ".last.ckpt.tmp").write_text("not our pattern")
    assert find_resume_checkpoint(tmp_path) == (folder / "last.ckpt", 7)
    assert is_temporary(folder / ".last.ckpt.k3x_9q2a.tmp") and not is_temporary(folder / "notes.tmp")
    assert remove_stale_temporaries(folder) == [folder / ".last.ckpt.k3x_9q2a.tmp"]
    assert sorted(p.name for p in folder.iterdir()) == [".last.ckpt.tmp", "last.ckpt", "notes.tmp"]
    assert remove_stale_temporaries(tmp_path / "nowhere") == []


def test_resume_cleans_up_and_fit_and_test_load_with_weights_only(tmp_path, monkeypatch):
    quiet = [*FAST, "callbacks.progress_bar=null"]
    run(compose_config([*quiet, "test=false"], run_dir=tmp_path))
    folder = tmp_path / "checkpoints"
    shutil.copy(folder / "last.ckpt", folder / ".last.ckpt.abcd_123.tmp")
    (tmp_path / ".summary.json.zz9_x0a1.tmp").write_text("{")
    (folder / "notes.tmp").write_text("the user's")

    loads = []
    original = AtomicCheckpointIO.load_checkpoint

    def spy(self, path, *args, **kwargs):
        loads.append((Path(path).name, kwargs.get("weights_only")))
        return original(self, path, *args, **kwargs)

    monkeypatch.setattr(AtomicCheckpointIO, "load_checkpoint", spy)
    run(compose_config([*quiet, "trainer.max_epochs=2", "resume=auto"], run_dir=tmp_path))

    summary = read_summary(tmp_path)
    assert (summary["resumed_from"], summary["resumed_at_step"]) == (str(folder / "last.ckpt"), 2)
    assert summary["global_step"] == 4 and "test/acc" in summary["test_metrics"]
    assert loads == [("last.ckpt", True), ("best.ckpt", True)]
    assert sorted(p.name for p in folder.iterdir()) == ["best.ckpt", "last.ckpt", "notes.tmp"]
    assert not (tmp_path / ".summary.json.zz9_x0a1.tmp").exists()
