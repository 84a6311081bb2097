"""NaN and infinity: never a "best" checkpoint, and a planted NaN batch handled as callbacks.gradient_monitor says."""

import csv
import math

import lightning.pytorch as L
import pytest
import torch
from support import FAST, ROOT, read_summary, run_cli
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from lit_train.training.checkpoint import ModelCheckpoint

NAN, INF = float("nan"), float("inf")


class _Scripted(L.LightningModule):
    """Logs a given validation score each epoch and learns nothing."""

    def __init__(self, scores: list[float]) -> None:
        super().__init__()
        self.scores = scores
        self.layer = nn.Linear(2, 1)

    def training_step(self, batch, batch_idx):
        return self.layer(batch[0]).sum()

    def validation_step(self, batch, batch_idx):
        self.log("score", torch.tensor(self.scores[self.current_epoch]))

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.0)

    def train_dataloader(self):
        return DataLoader(TensorDataset(torch.ones(2, 2)), batch_size=2)

    val_dataloader = train_dataloader


def _fit(scores: list[float], mode: str, save_top_k: int, folder) -> ModelCheckpoint:
    checkpoint = ModelCheckpoint(dirpath=folder, filename="{epoch}", monitor="score", mode=mode, save_top_k=save_top_k)
    trainer = L.Trainer(max_epochs=len(scores), callbacks=[checkpoint], logger=False, enable_progress_bar=False,
                        enable_model_summary=False, num_sanity_val_steps=0, accelerator="cpu", devices=1)
    trainer.fit(_Scripted(scores))
    return checkpoint


@pytest.mark.parametrize(
    ("scores", "mode", "save_top_k", "best", "saved"),
    [
        ([NAN, 0.5, INF, 0.2, NAN], "min", -1, 0.2, ["epoch=1.ckpt", "epoch=3.ckpt"]),
        ([NAN, 0.5, NAN], "min", 1, 0.5, ["epoch=1.ckpt"]),
        ([NAN, NAN], "min", 1, None, []),  # Lightning would keep the first NaN (as inf) as the best
        ([0.4, -INF], "min", 1, 0.4, ["epoch=0.ckpt"]),
        ([0.3, INF], "max", 1, 0.3, ["epoch=0.ckpt"]),  # in max mode, Lightning would crown the infinity
        ([INF, 0.3, 0.1], "max", 2, 0.3, ["epoch=1.ckpt", "epoch=2.ckpt"]),
    ],
)
def test_a_non_finite_score_is_never_saved_as_best(scores, mode, save_top_k, best, saved, tmp_path):
    checkpoint = _fit(scores, mode, save_top_k, tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == saved
    assert all(math.isfinite(float(score)) for score in checkpoint.best_k_models.values())
    if best is None:
        assert checkpoint.best_model_path == "" and checkpoint.best_model_score is None
    else:
        assert float(checkpoint.best_model_score) == pytest.approx(best)
        assert checkpoint.best_model_path.endswith(f"epoch={scores.index(best)}.ckpt")


# A planted NaN batch through the real CLI: lit_train's classifier, whose training batch at the given
# optimizer steps has a NaN feature (tests/byo/planted_nan.py). 2 epochs of 4 steps.
PLANTED = [
    "model._target_=planted_nan.PoisonedClassifier", *FAST, "trainer.max_epochs=2", "trainer.limit_train_batches=4",
    "trainer.limit_val_batches=2", "test=false", "callbacks.progress_bar=null", "callbacks.gradient_monitor.log_every_n_steps=1",
]
ENV = {"PYTHONPATH": str(ROOT / "tests" / "byo")}


def _planted_run(tmp_path, steps: str, policy: str, exit_code: int = 0):
    run_dir = tmp_path / policy
    result = run_cli(*PLANTED, f"+model.poison_steps={steps}", f"callbacks.gradient_monitor.on_nonfinite={policy}",
                     f"hydra.run.dir={run_dir}", cwd=tmp_path, env=ENV)
    assert result.returncode == exit_code, result.stderr[-3000:]
    return run_dir, read_summary(run_dir), result.stdout


def _all_finite(path) -> bool:
    state = torch.load(path, weights_only=True)["state_dict"]
    return all(torch.isfinite(value).all() for value in state.values() if value.is_floating_point())


def test_a_nan_batch_stops_training_with_a_finite_best_and_a_hint(tmp_path):
    run_dir, summary, stdout = _planted_run(tmp_path, "[5]", "stop", exit_code=3)
    assert (summary["status"], summary["stopped_reason"]) == ("diverged", "non_finite_gradient")
    assert summary["global_step"] == 6  # the NaN step (5) is counted, its update dropped, and training ends
    assert summary["skipped_steps"] == 1
    assert math.isfinite(summary["best_score"]) and _all_finite(summary["best_checkpoint"])
    assert _all_finite(run_dir / "checkpoints" / "last.ckpt")
    assert "lower the learning rate (optimizer.lr)" in stdout and "trainer.gradient_clip_val=1.0" in stdout


def test_skip_drops_each_nan_step_and_trains_on(tmp_path):
    run_dir, summary, stdout = _planted_run(tmp_path, "[2,5]", "skip")
    assert (summary["status"], summary["stopped_reason"], summary["global_step"]) == ("completed", "max_epochs", 8)
    assert summary["skipped_steps"] == 2
    assert "skipped 2 optimizer step(s) with a non-finite gradient" in stdout
    logged = [row["grad_norm/skipped_steps"] for row in csv.DictReader((run_dir / "metrics.csv").open())
              if row.get("grad_norm/skipped_steps")]
    assert [float(v) for v in logged] == [0, 0, 1, 1, 1, 2, 2, 2]  # one row per step, counted as it happens
    assert math.isfinite(summary["best_score"]) and _all_finite(run_dir / "checkpoints" / "last.ckpt")


def test_a_run_that_is_nan_from_the_start_has_no_best_checkpoint(tmp_path):
    # warn lets the NaN update through: every validation loss is NaN, so no checkpoint may be called the best,
    # and the divergence check ends the run at the first validation.
    run_dir, summary, _ = _planted_run(tmp_path, "[0]", "warn", exit_code=3)
    assert (summary["status"], summary["stopped_reason"]) == ("diverged", "diverged")
    assert math.isnan(summary["final_monitor_value"])
    assert summary["best_checkpoint"] is None and summary["best_score"] is None
    assert sorted(p.name for p in (run_dir / "checkpoints").iterdir()) == ["last.ckpt"]
