"""The best checkpoint and the summary's best score describe the same weights, whatever the save interval."""

import csv

import torch
from support import read_summary, run_cli


def test_step_interval_saves_between_validations_never_take_a_stale_score(tmp_path):
    """every_n_train_steps=3 saves at steps 3 and 6 of each 8-step epoch, between validations (after step 8, 16)."""
    run_dir = tmp_path / "run"
    result = run_cli("trainer.max_epochs=3", "trainer.limit_train_batches=8", "trainer.limit_val_batches=2",
                     "callbacks.model_checkpoint.every_n_train_steps=3", "callbacks.progress_bar=null", "test=false",
                     f"hydra.run.dir={run_dir}", cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    summary = read_summary(run_dir)
    best = torch.load(run_dir / "checkpoints" / "best.ckpt", weights_only=True)
    with open(run_dir / "metrics.csv") as f:
        validated = {int(row["step"]) + 1: float(row["val/loss"]) for row in csv.DictReader(f) if row["val/loss"]}
    assert sorted(validated) == [8, 16, 24]
    assert best["global_step"] in validated  # the weights that validation measured
    assert summary["best_score"] == validated[best["global_step"]] == min(validated.values())
