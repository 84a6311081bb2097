import math
import re

import pytest
import torch
from _tiny import TinyModule, tiny_loader, tiny_trainer
from lightning.pytorch.callbacks import EarlyStopping as LightningEarlyStopping
from lightning.pytorch.utilities.exceptions import MisconfigurationException

from lit_callbacks import EarlyStopping


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"mode": "mn"}, MisconfigurationException, r"`mode` must be one of \('min', 'max'\), got 'mn'"),
        ({"divergence_factor": 1.0}, ValueError, r"`divergence_factor` must be > 1.0, got 1.0"),
        ({"divergence_factor": "2"}, TypeError, r"`divergence_factor` must be a number, got '2'"),
        ({"min_lr": -1e-6}, ValueError, r"`min_lr` must be >= 0.0, got -1e-06"),
        ({"patience": -1}, ValueError, r"`patience` must be an int >= 0, got -1"),
        ({"patience": 2.0}, TypeError, r"`patience` must be an int, got 2.0"),
        ({"min_delta": -0.1}, ValueError, r"`min_delta` must be >= 0.0, got -0.1"),
        ({"monitor": ""}, ValueError, r"`monitor` must be a non-empty metric name, got ''"),
        ({"monitor": None}, TypeError, r"`monitor` must be a metric name \(str\), got None"),
    ],
)
def test_invalid_arguments_are_named_in_the_error(kwargs, error, match):
    with pytest.raises(error, match=match):
        EarlyStopping(**{"monitor": "val_loss", **kwargs})


def test_extends_lightnings_early_stopping():
    assert issubclass(EarlyStopping, LightningEarlyStopping)


@pytest.mark.parametrize("mode", ["mn", "MIN", "", None, 1])
def test_a_bad_mode_raises_the_exception_type_lightnings_raises(mode):
    with pytest.raises(Exception) as lightnings:
        LightningEarlyStopping("val_loss", mode=mode)
    with pytest.raises(Exception, match=rf"`mode` must be one of \('min', 'max'\), got {re.escape(repr(mode))}") as ours:
        EarlyStopping("val_loss", mode=mode)
    assert type(ours.value) is type(lightnings.value) is MisconfigurationException


class Scripted(TinyModule):
    """Logs ``values[epoch]`` as ``val_loss`` and optionally runs ReduceLROnPlateau on it."""

    def __init__(self, values: list[float], plateau: bool = False) -> None:
        super().__init__(lr=1e-3)
        self.values, self.plateau = values, plateau
        self.validated_epochs: list[int] = []

    def validation_step(self, batch, batch_idx):
        self.validated_epochs.append(self.current_epoch)
        self.log("val_loss", torch.tensor(self.values[self.current_epoch]))

    def configure_optimizers(self):
        optimizer = torch.optim.SGD(self.parameters(), lr=self.lr)
        if not self.plateau:
            return optimizer
        scheduler = torch.optim.lr_scheduler.ReduceLROnPlateau(optimizer, factor=0.1, patience=0)
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "monitor": "val_loss"}}


def fit(stopper: EarlyStopping, model: Scripted, max_epochs: int = 20, ckpt_path=None):
    trainer = tiny_trainer(max_epochs=max_epochs, limit_train_batches=1, limit_val_batches=1, callbacks=[stopper])
    trainer.fit(model, tiny_loader(samples=8), tiny_loader(samples=8), ckpt_path=ckpt_path)
    return trainer


PATIENCE_CURVE = [5.0, 4.0, 3.0, 3.5, 3.2, 3.1, 3.3, 2.0, 1.0, 0.5]


@pytest.mark.parametrize(
    ("kwargs", "values", "epoch", "reason"),
    [
        ({"patience": 3}, PATIENCE_CURVE, 5, "patience"),
        ({"divergence_factor": 2.0, "patience": 10}, [1.0, 0.8, 0.9, 1.59, 1.61, 0.5], 4, "divergence"),
        ({"divergence_factor": 2.0, "patience": 10, "mode": "max"}, [0.5, 0.8, 0.7, 0.41, 0.39, 0.9], 4, "divergence"),
        ({"divergence_factor": 2.0}, [1.0, math.nan], 1, "non_finite"),
        ({"stopping_threshold": 0.1}, [1.0, 0.5, 0.05, 0.01], 2, "stopping_threshold"),
        ({"divergence_threshold": 10.0}, [1.0, 11.0, 0.5], 1, "divergence_threshold"),
    ],
)
def test_stops_at_the_scripted_epoch_with_its_reason(kwargs, values, epoch, reason):
    stopper, model = EarlyStopping("val_loss", **kwargs), Scripted(values)
    trainer = fit(stopper, model)
    assert (stopper.stopped_epoch, stopper.stopped_reason) == (epoch, reason)
    assert model.validated_epochs == list(range(epoch + 1))
    assert trainer.should_stop


def test_divergence_ignores_a_best_that_is_not_positive():
    stopper = EarlyStopping("val_loss", patience=5, divergence_factor=2.0)
    fit(stopper, Scripted([-1.0, 5.0, 7.0]), max_epochs=3)
    assert (stopper.stopped_epoch, stopper.stopped_reason) == (0, None)


def test_lr_floor_stops_when_every_lr_has_decayed_to_min_lr():
    # ReduceLROnPlateau(patience=0) cuts 1e-3 by 10x after epochs 1 and 2, so the check of epoch 3
    # is the first to see 1e-5 (1.0000000000000003e-05 in floats, still counted as the floor).
    stopper = EarlyStopping("val_loss", patience=10, min_lr=1e-5)
    model = Scripted([1.0] * 10, plateau=True)
    trainer = fit(stopper, model)
    assert (stopper.stopped_epoch, stopper.stopped_reason) == (3, "lr_floor")
    assert trainer.optimizers[0].param_groups[0]["lr"] == pytest.approx(1e-6)  # the scheduler stepped once more
    assert stopper.stopping_reason_message.startswith("Every learning rate (1e-05) is at or below min_lr=1e-05.")


def test_patience_survives_resume(tmp_path):
    uninterrupted = EarlyStopping("val_loss", patience=3)
    fit(uninterrupted, Scripted(PATIENCE_CURVE))

    first = EarlyStopping("val_loss", patience=3)
    trainer = fit(first, Scripted(PATIENCE_CURVE), max_epochs=5)  # epochs 0-4, two checks without improvement
    assert (first.wait_count, float(first.best_score), first.stopped_reason) == (2, 3.0, None)
    trainer.save_checkpoint(tmp_path / "mid.ckpt")

    resumed, model = EarlyStopping("val_loss", patience=3), Scripted(PATIENCE_CURVE)
    fit(resumed, model, ckpt_path=tmp_path / "mid.ckpt")
    assert model.validated_epochs == [5]
    assert (uninterrupted.stopped_epoch, uninterrupted.stopped_reason) == (5, "patience")
    assert (resumed.stopped_epoch, resumed.stopped_reason) == (5, "patience")


def test_state_dict_round_trip_and_older_checkpoints():
    stopper = EarlyStopping("val_loss")
    stopper.stopped_reason, stopper.wait_count = "divergence", 2
    state = stopper.state_dict()
    assert state["stopped_reason"] == "divergence"

    restored = EarlyStopping("val_loss")
    restored.load_state_dict(state)
    assert (restored.stopped_reason, restored.wait_count) == ("divergence", 2)

    lightning_state = LightningEarlyStopping("val_loss").state_dict()  # no stopped_reason key
    restored.load_state_dict(lightning_state)
    assert restored.stopped_reason is None


def test_two_instances_have_distinct_state_keys():
    assert EarlyStopping("val_loss").state_key != EarlyStopping("val_acc", mode="max").state_key


def failure(stopper) -> tuple[type, str]:
    with pytest.raises(Exception) as error:
        fit(stopper, Scripted([1.0, 2.0]), max_epochs=2)
    return type(error.value), str(error.value)


def test_a_metric_that_is_never_logged_fails_as_in_lightning():
    assert failure(EarlyStopping("val_acc")) == failure(LightningEarlyStopping("val_acc"))
    assert failure(EarlyStopping("val_acc"))[0] is RuntimeError


def test_without_strict_a_metric_that_is_never_logged_is_ignored_as_in_lightning():
    for stopper in (EarlyStopping("val_acc", strict=False), LightningEarlyStopping("val_acc", strict=False)):
        trainer = fit(stopper, Scripted([1.0, 2.0]), max_epochs=2)
        assert (trainer.current_epoch, stopper.stopped_epoch, trainer.should_stop) == (2, 0, False)


@pytest.mark.parametrize(
    ("kwargs", "values"),
    [
        ({"patience": 3}, PATIENCE_CURVE),
        ({"patience": 2, "min_delta": 0.4}, PATIENCE_CURVE),
        ({"patience": 2, "mode": "max"}, [0.1, 0.5, 0.4, 0.45, 0.3, 0.9]),
        ({"stopping_threshold": 0.1}, [1.0, 0.5, 0.05, 0.01]),
        ({"divergence_threshold": 10.0}, [1.0, 11.0, 0.5]),
        ({"patience": 5}, [1.0, 0.5, math.nan, 0.2]),
        ({"patience": 2, "check_finite": False}, [1.0, 0.5, math.inf, math.inf, 0.2]),
        ({"patience": 1, "check_on_train_epoch_end": False}, [1.0, 0.9, 0.95, 0.5]),
    ],
)
def test_without_its_additions_it_stops_where_lightnings_stops(kwargs, values):
    ours, lightnings = EarlyStopping("val_loss", **kwargs), LightningEarlyStopping("val_loss", **kwargs)
    for stopper in (ours, lightnings):
        fit(stopper, Scripted(values), max_epochs=len(values))
    assert lightnings.stopped_epoch > 0  # every script stops somewhere
    assert ours.stopped_epoch == lightnings.stopped_epoch
    assert ours.stopping_reason == lightnings.stopping_reason
    assert ours.stopping_reason_message == lightnings.stopping_reason_message
    state = ours.state_dict()
    assert state.pop("stopped_reason") == EarlyStopping._LIGHTNING_REASONS.get(lightnings.stopping_reason)
    assert state == lightnings.state_dict()
