import json
import math
import os
import subprocess
import sys
import textwrap

import pytest
import torch
from _tiny import TinyModule, tiny_loader, tiny_trainer

from lit_callbacks import Divergence

ADVICE = (
    r"Stopped training; lower the optimizer's learning rate, add a warmup or clip gradients"
    r" \(Trainer\(gradient_clip_val=1\.0\)\)\.$"
)


class Scripted(TinyModule):
    """Trains as TinyModule and logs ``train/loss`` = ``train[epoch]``, ``val/loss`` = ``val[epoch]`` (epoch means)."""

    def __init__(self, train=(), val=(), sanity=None) -> None:
        super().__init__(lr=0.01)
        self.train_values, self.val_values, self.sanity = list(train), list(val), sanity

    def training_step(self, batch, batch_idx):
        if self.train_values:
            self.log("train/loss", self.train_values[self.current_epoch], on_step=False, on_epoch=True)
        return super().training_step(batch, batch_idx)

    def validation_step(self, batch, batch_idx):
        if self.trainer.sanity_checking and self.sanity is not None:
            self.log("val/loss", self.sanity)
        elif self.val_values:
            self.log("val/loss", self.val_values[self.current_epoch])


class Growing(TinyModule):
    """A loss multiplied by ``4 ** epoch`` and nothing learned (``lr=0``): it climbs 4x per epoch and stays finite."""

    def __init__(self) -> None:
        super().__init__(lr=0.0)

    def training_step(self, batch, batch_idx):
        x, y = batch
        loss = torch.nn.functional.mse_loss(self(x), y) * 4.0**self.current_epoch
        self.log("train/loss", loss, on_step=False, on_epoch=True)
        return loss


def test_a_finite_blow_up_stops_training_with_the_reason_and_the_message():
    divergence = Divergence()
    trainer = tiny_trainer(max_epochs=10, callbacks=[divergence])
    model = Growing()
    match = r"^Divergence at epoch 2, step 12: train/loss = .* is above factor=10\.0 times"
    with pytest.warns(UserWarning, match=match):
        trainer.fit(model, tiny_loader())

    reference = divergence.references["train/loss"]
    assert trainer.current_epoch == 3 and trainer.should_stop  # epochs 0, 1 and 2 ran: 1x, 4x, 16x the first loss
    assert divergence.stopped_reason == "diverged"
    assert f"train/loss = {16 * reference:.6g} is above factor=10.0 times its first finite value {reference:.6g}" in (
        divergence.stop_message
    )
    assert f"(limit {10 * reference:.6g})." in divergence.stop_message
    assert "\n" not in divergence.stop_message
    assert divergence.state_dict() == {
        "references": {"train/loss": reference},
        "stopped_reason": "diverged",
        "stop_message": divergence.stop_message,
    }


def test_a_healthy_run_is_not_stopped():
    class Logged(TinyModule):
        def training_step(self, batch, batch_idx):
            loss = super().training_step(batch, batch_idx)
            self.log("train/loss", loss, on_step=False, on_epoch=True)
            return loss

        def validation_step(self, batch, batch_idx):
            x, y = batch
            self.log("val/loss", torch.nn.functional.mse_loss(self(x), y))

    divergence = Divergence()
    trainer = tiny_trainer(max_epochs=4, callbacks=[divergence])
    trainer.fit(Logged(), tiny_loader(), tiny_loader(samples=16, seed=1))
    assert trainer.current_epoch == 4 and not trainer.should_stop
    assert divergence.stopped_reason is None and divergence.stop_message is None
    assert set(divergence.references) == {"train/loss", "val/loss"}


FIRST_1 = "its first finite value 1"


@pytest.mark.parametrize(
    ("train", "epoch", "match"),
    [
        ([1.0, 2.0, 10.0, 10.5], 3, rf"train/loss = 10\.5 is above factor=10\.0 times {FIRST_1} \(limit 10\)\."),
        ([1.0, math.nan], 1, r"train/loss = nan, after a first finite value of 1 \(factor=10\.0\)\."),
        ([1.0, -math.inf], 1, r"train/loss = -inf, after a first finite value of 1 \(factor=10\.0\)\."),
        ([math.inf], 0, r"train/loss = inf before any finite value \(factor=10\.0\)\."),
    ],
)
def test_stops_at_the_first_value_above_the_limit_or_not_finite(train, epoch, match):
    divergence = Divergence("train/loss")
    trainer = tiny_trainer(max_epochs=len(train) + 2, callbacks=[divergence])
    with pytest.warns(UserWarning, match=rf"^Divergence at epoch {epoch}, step {4 * (epoch + 1)}: {match} {ADVICE}"):
        trainer.fit(Scripted(train=train + [1.0, 1.0]), tiny_loader())
    assert trainer.current_epoch == epoch + 1 and divergence.stopped_reason == "diverged"


def test_exactly_factor_times_the_reference_is_not_divergence():
    divergence = Divergence("train/loss", factor=4.0)
    trainer = tiny_trainer(max_epochs=3, callbacks=[divergence])
    trainer.fit(Scripted(train=[0.5, 2.0, 1.0]), tiny_loader())
    assert divergence.stopped_reason is None and divergence.references == {"train/loss": 0.5}


@pytest.mark.parametrize("first", [0.0, -1.0])
def test_a_reference_at_or_below_zero_checks_only_for_non_finite_values(first):
    divergence = Divergence("train/loss")
    trainer = tiny_trainer(max_epochs=3, callbacks=[divergence])
    trainer.fit(Scripted(train=[first, 100.0, 1e6]), tiny_loader())
    assert divergence.stopped_reason is None and divergence.references == {"train/loss": first}

    divergence = Divergence("train/loss")
    trainer = tiny_trainer(max_epochs=3, callbacks=[divergence])
    with pytest.warns(UserWarning, match=rf"train/loss = nan, after a first finite value of {first:g}"):
        trainer.fit(Scripted(train=[first, math.nan, 1.0]), tiny_loader())
    assert divergence.stopped_reason == "diverged"


def test_a_nan_validation_loss_stops_after_that_validation():
    divergence = Divergence()
    trainer = tiny_trainer(max_epochs=5, callbacks=[divergence])
    nan_after_2 = r"val/loss = nan, after a first finite value of 2 \(factor=10\.0\)\."
    match = rf"^Divergence at epoch 2, step 12: {nan_after_2} {ADVICE}"
    with pytest.warns(UserWarning, match=match):
        trainer.fit(Scripted(val=[2.0, 3.0, math.nan, 1.0, 1.0]), tiny_loader(), tiny_loader(samples=8))
    assert trainer.current_epoch == 3 and divergence.stopped_reason == "diverged"


def test_a_missing_metric_is_skipped_and_the_reference_is_its_first_finite_value():
    divergence = Divergence(monitors=["val/loss", "train/loss"], factor=2.0)
    trainer = tiny_trainer(max_epochs=3, callbacks=[divergence])
    with pytest.warns(UserWarning, match=r"train/loss = 7 is above factor=2\.0 times its first finite value 3"):
        trainer.fit(Scripted(train=[3.0, 5.0, 7.0]), tiny_loader())  # no validation: val/loss never logged
    assert divergence.references == {"train/loss": 3.0}


def test_the_sanity_check_neither_stops_nor_sets_a_reference():
    divergence = Divergence("val/loss")
    trainer = tiny_trainer(max_epochs=2, num_sanity_val_steps=1, callbacks=[divergence])
    trainer.fit(Scripted(val=[2.0, 3.0], sanity=math.nan), tiny_loader(), tiny_loader(samples=8))
    assert divergence.stopped_reason is None and divergence.references == {"val/loss": 2.0}

    divergence = Divergence("val/loss")
    trainer = tiny_trainer(max_epochs=2, num_sanity_val_steps=1, callbacks=[divergence])
    trainer.fit(Scripted(val=[2.0, 3.0], sanity=0.1), tiny_loader(), tiny_loader(samples=8))
    assert divergence.stopped_reason is None and divergence.references == {"val/loss": 2.0}


def test_trainer_validate_is_not_checked():
    divergence = Divergence("val/loss")
    tiny_trainer(callbacks=[divergence]).validate(Scripted(val=[math.nan]), tiny_loader(samples=8))
    assert divergence.stopped_reason is None and divergence.references == {}


def test_a_resumed_run_keeps_the_reference_of_the_original_run(tmp_path):
    values = [1.0, 2.0, 5.0, 12.0, 12.0, 12.0]  # 12 is not 10x 5, the value a fresh callback would start from
    first = Divergence("train/loss")
    trainer = tiny_trainer(max_epochs=2, callbacks=[first])
    trainer.fit(Scripted(train=values), tiny_loader())
    trainer.save_checkpoint(tmp_path / "run.ckpt")
    saved = torch.load(tmp_path / "run.ckpt", weights_only=False)["callbacks"][first.state_key]
    assert saved == {"references": {"train/loss": 1.0}, "stopped_reason": None, "stop_message": None}

    resumed = Divergence("train/loss", factor=10.0)
    trainer = tiny_trainer(max_epochs=len(values), callbacks=[resumed])
    match = r"^Divergence at epoch 3, step 16: train/loss = 12 is above factor=10\.0 times its first finite value 1 "
    with pytest.warns(UserWarning, match=match):
        trainer.fit(Scripted(train=values), tiny_loader(), ckpt_path=tmp_path / "run.ckpt")
    assert trainer.current_epoch == 4 and resumed.stopped_reason == "diverged"

    fresh = Divergence("train/loss")  # the same epochs without the checkpoint's reference train on
    tiny_trainer(max_epochs=4, callbacks=[fresh]).fit(Scripted(train=values[2:]), tiny_loader())
    assert fresh.stopped_reason is None


def test_state_dict_round_trips_and_old_checkpoints_load():
    divergence = Divergence()
    state = {"references": {"val/loss": 0.5}, "stopped_reason": "diverged", "stop_message": "Divergence at ..."}
    divergence.load_state_dict(state)
    assert divergence.state_dict() == state
    divergence.load_state_dict({"references": {"train/loss": 2.0}})
    assert divergence.state_dict() == {"references": {"train/loss": 2.0}, "stopped_reason": None, "stop_message": None}


def test_state_key_names_the_monitors_but_not_the_factor():
    assert Divergence("val/loss").state_key != Divergence("train/loss").state_key
    assert Divergence("val/loss", factor=5.0).state_key == Divergence("val/loss", factor=20.0).state_key
    assert Divergence("val/loss").monitors == ("val/loss",)
    assert Divergence(["a", "b"]).monitors == ("a", "b")


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"monitors": ()}, ValueError, r"`monitors` must name at least one metric, got an empty sequence"),
        ({"monitors": ("val/loss", "")}, ValueError, r"`monitors` must hold non-empty metric names, got '' in"),
        ({"monitors": ""}, ValueError, r"`monitors` must hold non-empty metric names, got ''"),
        ({"monitors": ("val/loss", 3)}, TypeError, r"`monitors` must hold metric names \(str\), got 3 in"),
        ({"monitors": 3}, TypeError, r"`monitors` must be a metric name or a sequence of them, got 3"),
        ({"monitors": {"val/loss"}}, TypeError, r"`monitors` must be a metric name or a sequence of them"),
        ({"monitors": ("a", "b", "a")}, ValueError, r"`monitors` names \['a'\] more than once"),
        ({"factor": 1.0}, ValueError, r"`factor` must be > 1\.0, got 1\.0"),
        ({"factor": 0.5}, ValueError, r"`factor` must be > 1\.0, got 0\.5"),
        ({"factor": math.inf}, ValueError, r"`factor` must be finite, got inf"),
        ({"factor": "10"}, TypeError, r"`factor` must be a number, got '10'"),
    ],
)
def test_invalid_arguments_are_named_in_the_error(kwargs, error, match):
    with pytest.raises(error, match=match):
        Divergence(**kwargs)


DDP_SCRIPT = textwrap.dedent(
    """
    import json, sys
    import lightning.pytorch as L
    import torch
    from torch import nn
    from torch.utils.data import DataLoader, TensorDataset
    from lit_callbacks import Divergence, GradientMonitor

    out = sys.argv[1]

    class Model(L.LightningModule):
        def __init__(self):
            super().__init__()
            self.net = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 1))

        def training_step(self, batch, batch_idx):  # every rank loads the global batch and takes its half
            x, y = batch
            loss = nn.functional.mse_loss(self.net(x[self.global_rank :: 2]), y[self.global_rank :: 2])
            blow_up = 1e6 if self.current_epoch == 1 and self.global_rank == 1 else 1.0
            self.log("train/loss", loss.detach() * blow_up, on_step=False, on_epoch=True)  # not synced
            return loss

        def on_after_backward(self):  # after DDP's all-reduce: only rank 1 sees a NaN, from step 6 on
            if self.global_step >= 6 and self.global_rank == 1:
                self.net[2].weight.grad[0, 0] = float("nan")

        def configure_optimizers(self):
            return torch.optim.SGD(self.parameters(), lr=0.1)

    if __name__ == "__main__":
        torch.manual_seed(0)
        data = TensorDataset(torch.randn(48, 4), torch.randn(48, 1))
        monitor = GradientMonitor(on_nonfinite="skip", max_skipped_fraction=0.25)
        divergence = Divergence("train/loss")
        trainer = L.Trainer(
            accelerator="cpu", devices=2, strategy="ddp", max_epochs=5, logger=False, use_distributed_sampler=False,
            enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False,
            callbacks=[monitor, divergence],
        )
        trainer.fit(Model(), DataLoader(data, batch_size=8))
        result = {
            "global_step": trainer.global_step,
            "skipped": monitor.skipped_steps,
            "monitor": monitor.stopped_reason,
            "divergence": divergence.stopped_reason,
            "message": divergence.stop_message,
            "final": {k: v.tolist() for k, v in trainer.lightning_module.state_dict().items()},
        }
        with open(f"{out}/rank{trainer.global_rank}.json", "w") as f:
            json.dump(result, f)
        torch.distributed.destroy_process_group()  # else gloo's threads can abort the interpreter's shutdown
    """
)


@pytest.mark.slow
def test_ddp_ranks_agree_to_stop_when_one_rank_diverges_or_skips(tmp_path):
    script = tmp_path / "ddp_run.py"
    script.write_text(DDP_SCRIPT)
    env = {**os.environ, "PYTHONWARNINGS": "ignore"}
    subprocess.run([sys.executable, str(script), str(tmp_path)], check=True, timeout=120, env=env, cwd=tmp_path)
    ranks = [json.loads((tmp_path / f"rank{r}.json").read_text()) for r in (0, 1)]

    # Only rank 1 had NaN gradients (steps 6, 7, 8 of 6 batches an epoch): 3 of 9 > 0.25 stops both at step 8.
    for rank in ranks:
        assert rank["global_step"] == 9 and rank["skipped"] == 3 and rank["monitor"] == "too_many_skipped_steps"
    assert ranks[0]["final"] == ranks[1]["final"]
    # Only rank 1 logged a blown-up loss in epoch 1; its end stopped both ranks, each saying what it saw.
    assert [rank["divergence"] for rank in ranks] == ["diverged", "diverged"]
    assert "a monitored metric diverged on another rank." in ranks[0]["message"]
    assert "train/loss = " in ranks[1]["message"] and "is above factor=10.0 times" in ranks[1]["message"]


def test_every_monitor_takes_its_reference_even_when_another_one_diverges():
    divergence = Divergence(monitors=("train/loss", "train_loss"))  # both first seen at the end of epoch 0
    trainer = tiny_trainer(max_epochs=2, callbacks=[divergence])
    with pytest.warns(UserWarning, match=r"^Divergence at epoch 0, step 4: train/loss = nan before any finite value"):
        trainer.fit(Scripted(train=[math.nan, 1.0]), tiny_loader())
    assert list(divergence.references) == ["train_loss"]
