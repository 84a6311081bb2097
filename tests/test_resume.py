"""A run SIGKILLed at any step and resumed with resume=auto ends bitwise where an uninterrupted run ends."""

import pytest
import torch
from support import ROOT, read_summary, run_cli

COMMON = [
    "deterministic=true", "model.net.dropout=0.2", "trainer.max_epochs=3", "callbacks.model_checkpoint.every_n_train_steps=7",
    "callbacks.progress_bar=null", "test=false",
]
CASES = {
    # 20 steps per epoch: step 30 is the middle of the second epoch.
    "mid_epoch": ([], 30),
    "mid_warmup": (["+callbacks=warmup", "callbacks.warmup.ratio=0.5"], 16),
    "counting_patience": (["+callbacks=early_stopping", "callbacks.early_stopping.min_delta=0.5",
                           "callbacks.early_stopping.patience=2", "trainer.max_epochs=4"], 47),
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
    resumed = run_cli(*args, "resume=auto", f"hydra.run.dir={cut}", cwd=tmp_path)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert "resume=auto continues from" in resumed.stdout

    step_a, weights_a, optim_a, ckpt_a = _final_state(full)
    step_b, weights_b, optim_b, ckpt_b = _final_state(cut)
    assert step_a == step_b
    assert all(torch.equal(weights_a[k], weights_b[k]) for k in weights_a)
    assert all(torch.equal(optim_a[i][k], optim_b[i][k]) for i in optim_a for k in optim_a[i])
    summary = read_summary(cut)
    assert summary["resumed_at_step"] == kill_step // 7 * 7
    assert summary["stopped_reason"] == read_summary(full)["stopped_reason"]
    if case == "counting_patience":
        assert summary["stopped_reason"] == "patience"


def test_resume_auto_without_a_checkpoint_starts_fresh(tmp_path):
    result = run_cli("resume=auto", "debug=fast_dev_run", f"hydra.run.dir={tmp_path / 'run'}", cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "resume=auto found no checkpoint" in result.stdout
    assert read_summary(tmp_path / "run")["resumed_from"] is None


def test_resume_skips_a_corrupt_checkpoint(tmp_path):
    from lit_train.resume import find_resume_checkpoint

    folder = tmp_path / "checkpoints"
    folder.mkdir()
    torch.save({"global_step": 7}, folder / "a.ckpt")
    (folder / "last.ckpt").write_bytes(b"truncated")
    assert find_resume_checkpoint(tmp_path) == (folder / "a.ckpt", 7)
    assert find_resume_checkpoint(tmp_path / "nowhere") is None
