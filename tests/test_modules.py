"""What the built-in LightningModules log, and that the logged values are exact."""

import math

import lightning.pytorch as L
import pytest
import torch
from lightning.pytorch.callbacks import EarlyStopping
from lightning.pytorch.loggers import Logger
from torch.nn import functional as F

from lit_train.data.loader import TensorLoader
from lit_train.models import MLP
from lit_train.modules import Classifier, LanguageModel, Regressor
from lit_train.modules.running_means import RunningMeans


class Recorder(Logger):
    """Keeps every logged (step, metrics) pair."""

    name, version = "recorder", 0

    def __init__(self) -> None:
        super().__init__()
        self.rows: list[tuple[int, dict[str, float]]] = []

    def log_metrics(self, metrics, step=None):
        self.rows.append((step, dict(metrics)))

    def log_hyperparams(self, params, *args, **kwargs):
        pass

    def values(self, key: str) -> list[tuple[int, float]]:
        return [(step, row[key]) for step, row in self.rows if key in row]


def test_running_means_weigh_batches_by_size_and_merge():
    means, total = RunningMeans(("loss", "acc")), RunningMeans(("loss", "acc"))
    means.update([torch.tensor(1.0), torch.tensor(1.0)], weight=3)
    means.update([torch.tensor(3.0), torch.tensor(0.0)], weight=1)
    assert {k: v.item() for k, v in means.compute().items()} == {"loss": 1.5, "acc": 0.75}
    means.merge_into(total)
    assert means.compute() == {} and total.weight == 4
    restored = RunningMeans(("loss", "acc"))
    restored.load_state_dict(total.state_dict())
    assert restored.compute()["loss"].item() == 1.5
    # what the sum over ranks sees: numerators and the denominator together
    assert total.compute(lambda totals: totals * 2)["acc"].item() == 0.75


def _data(n: int = 50, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, 4, generator=g), torch.randint(0, 3, (n,), generator=g)


def _trainer(**kwargs) -> L.Trainer:
    options = dict(accelerator="cpu", devices=1, logger=Recorder(), enable_checkpointing=False, enable_progress_bar=False,
                   enable_model_summary=False, num_sanity_val_steps=0)
    return L.Trainer(**{**options, **kwargs})


class StepLosses(L.Callback):
    def __init__(self) -> None:
        self.losses: list[float] = []

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        self.losses.append(outputs["loss"].item())


def test_classifier_logs_exact_epoch_means_and_windowed_step_losses():
    torch.manual_seed(0)
    module = Classifier(MLP(4, 3, hidden=[8]), num_classes=3)
    module.configure_optimizers = lambda: torch.optim.SGD(module.parameters(), lr=0.1)
    train, val = _data(50), _data(23, seed=1)  # uneven last batches: 50 = 3 x 16 + 2, 23 = 16 + 7
    losses = StepLosses()
    trainer = _trainer(max_epochs=2, log_every_n_steps=3, callbacks=[losses])
    trainer.fit(module, TensorLoader(*train, batch_size=16), TensorLoader(*val, batch_size=16))
    logger = trainer.logger

    # train/loss_step: the mean loss of the steps since the previous log or the epoch's start, on
    # Lightning's logging steps (step 5 is the second batch of epoch 1: batches 4 and 5)
    steps = logger.values("train/loss_step")
    assert [step for step, _ in steps] == [2, 5]
    assert [value for _, value in steps] == pytest.approx([sum(losses.losses[0:3]) / 3, sum(losses.losses[4:6]) / 2])

    # train/loss per epoch: weighted by batch size (the last batch has 2 samples)
    weights = [16, 16, 16, 2]
    epoch_1 = sum(w * l for w, l in zip(weights, losses.losses[4:])) / 50
    assert logger.values("train/loss")[-1][1] == pytest.approx(epoch_1, rel=1e-5)

    # val metrics equal a direct computation over the whole validation set
    with torch.no_grad():
        logits = module.net(val[0])
    assert logger.values("val/loss")[-1][1] == pytest.approx(F.cross_entropy(logits, val[1]).item(), rel=1e-5)
    assert logger.values("val/acc")[-1][1] == pytest.approx((logits.argmax(-1) == val[1]).float().mean().item())
    assert set(trainer.callback_metrics) >= {"train/loss", "train/acc", "train/loss_step", "val/loss", "val/acc"}


class RecordsLosses(Classifier):
    """A Classifier that keeps every training batch's mean loss."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.losses: list[float] = []

    def step(self, batch):
        loss, metrics = super().step(batch)
        if self.training:
            self.losses.append(loss.item())
        return loss, metrics


def test_under_gradient_accumulation_the_step_loss_is_the_mean_of_every_batch_since_the_last_log():
    torch.manual_seed(0)
    module = RecordsLosses(MLP(4, 3, hidden=[8]), num_classes=3)
    module.configure_optimizers = lambda: torch.optim.SGD(module.parameters(), lr=0.1)
    trainer = _trainer(max_epochs=1, log_every_n_steps=2, accumulate_grad_batches=2, limit_val_batches=0)
    trainer.fit(module, TensorLoader(*_data(48), batch_size=8))  # 6 batches, 3 optimizer steps
    # Lightning logs after the batch that takes the second optimizer step (batch 3, step 1): the
    # mean covers batches 0-3, not only the last micro-batch.
    assert trainer.logger.values("train/loss_step") == [(1, pytest.approx(sum(module.losses[:4]) / 4))]


class LogsThroughLightning(Classifier):
    """A Classifier that also logs a marker through ``self.log`` wherever it logs its epoch means."""

    def on_train_epoch_end(self) -> None:
        super().on_train_epoch_end()
        self.log("marker/train", 1.0, batch_size=1)

    def on_validation_epoch_end(self) -> None:
        super().on_validation_epoch_end()
        self.log("marker/val", 1.0, batch_size=1)


@pytest.mark.parametrize(("val_check_interval", "validated_at"), [(1.0, [3]), (2, [1, 3])])
def test_epoch_means_go_where_self_log_puts_them(val_check_interval, validated_at):
    torch.manual_seed(0)
    module = LogsThroughLightning(MLP(4, 3, hidden=[8]), num_classes=3)
    module.configure_optimizers = lambda: torch.optim.SGD(module.parameters(), lr=0.1)
    train, val = TensorLoader(*_data(50), batch_size=16), TensorLoader(*_data(23, seed=1), batch_size=16)
    # stops once it reads train/acc
    stop = EarlyStopping(monitor="train/acc", mode="max", stopping_threshold=0.0, check_on_train_epoch_end=True)
    trainer = _trainer(max_epochs=3, num_sanity_val_steps=2, val_check_interval=val_check_interval, callbacks=[stop])
    trainer.fit(module, train, val)

    assert trainer.current_epoch == 1 and stop.stopped_epoch == 0
    rows = trainer.logger.rows
    # the steps and epochs of Lightning's own epoch logging, and nothing from the sanity check
    for stage, steps in (("train", [3]), ("val", validated_at)):
        ours = [(step, row["epoch"]) for step, row in rows if f"{stage}/loss" in row]
        assert ours == [(step, row["epoch"]) for step, row in rows if f"marker/{stage}" in row]
        assert ours == [(step, 0) for step in steps]
    assert {"train/loss", "train/acc", "val/loss", "val/acc"} <= trainer.callback_metrics.keys()
    assert trainer.progress_bar_metrics["val/loss"] == pytest.approx(trainer.callback_metrics["val/loss"].item())
    assert trainer.logged_metrics["train/acc"] is trainer.callback_metrics["train/acc"]
    # outside fit the means go through self.log, which is what trainer.validate returns
    (result,) = trainer.validate(module, val, verbose=False)
    assert result["val/loss"] == pytest.approx(trainer.callback_metrics["val/loss"].item())


def test_regressor_and_language_model_metrics():
    x = torch.linspace(-1, 1, 10).reshape(-1, 1)
    regressor = Regressor(MLP(1, 1, hidden=[]))
    trainer = _trainer()
    (result,) = trainer.test(regressor, TensorLoader(x, 2 * x, batch_size=4), verbose=False)
    with torch.no_grad():
        prediction = regressor.net(x)
    assert result["test/mae"] == pytest.approx((prediction - 2 * x).abs().mean().item(), rel=1e-5)
    assert result["test/loss"] == pytest.approx(F.mse_loss(prediction, 2 * x).item(), rel=1e-5)

    class Uniform(torch.nn.Module):  # every token equally likely: perplexity = vocabulary size
        def forward(self, tokens):
            return torch.zeros(*tokens.shape, 7)

    tokens = torch.randint(0, 7, (5, 3))
    (result,) = _trainer().test(LanguageModel(Uniform()), TensorLoader(tokens, tokens, batch_size=2), verbose=False)
    assert result["test/ppl"] == pytest.approx(7.0)
    assert result["test/loss"] == pytest.approx(math.log(7))


class SaveAt(L.Callback):
    def __init__(self, step: int, path) -> None:
        self.step, self.path = step, path

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        if trainer.global_step == self.step:
            trainer.save_checkpoint(self.path)


def test_training_epoch_means_survive_a_mid_epoch_resume(tmp_path):
    def fit(callbacks=(), ckpt_path=None):
        torch.manual_seed(0)
        module = Classifier(MLP(4, 3, hidden=[8]), num_classes=3)
        module.configure_optimizers = lambda: torch.optim.SGD(module.parameters(), lr=0.1)
        trainer = _trainer(max_epochs=1, log_every_n_steps=3, callbacks=list(callbacks))
        trainer.fit(module, TensorLoader(*_data(64), batch_size=16), ckpt_path=ckpt_path)
        return trainer.logger

    whole = fit(callbacks=[SaveAt(2, tmp_path / "mid.ckpt")])  # a checkpoint inside the logging window
    resumed = fit(ckpt_path=tmp_path / "mid.ckpt")
    assert resumed.values("train/loss") == whole.values("train/loss")
    assert resumed.values("train/loss_step") == whole.values("train/loss_step")[-1:]


def test_a_run_resumed_from_an_epoch_end_checkpoint_equals_the_uninterrupted_one(tmp_path):
    from lit_train.data import XorDataModule

    def fit(callbacks=(), ckpt_path=None):
        torch.manual_seed(0)
        module = Classifier(MLP(2, 2, hidden=[8]), num_classes=2)
        module.configure_optimizers = lambda: torch.optim.SGD(module.parameters(), lr=0.1)
        data = XorDataModule(num_samples=64, batch_size=16, val_fraction=0.0, test_fraction=0.0)
        trainer = _trainer(max_epochs=3, log_every_n_steps=2, callbacks=list(callbacks))
        trainer.fit(module, datamodule=data, ckpt_path=ckpt_path)
        return trainer, module

    whole, whole_module = fit(callbacks=[SaveAt(4, tmp_path / "epoch_end.ckpt")])  # 4 batches an epoch
    resumed, resumed_module = fit(ckpt_path=tmp_path / "epoch_end.ckpt")
    assert resumed.global_step == whole.global_step == 12
    assert all(torch.equal(a, b) for a, b in zip(whole_module.parameters(), resumed_module.parameters()))
    assert resumed.logger.values("train/loss") == whole.logger.values("train/loss")[1:]



def test_quick_hooks_skip_module_checks_only_for_lightnings_hook_attribute(monkeypatch):
    import lightning.pytorch as L
    from torch import nn

    from lit_train._compat import CURRENT_HOOK_ATTRIBUTE
    from lit_train.modules import QuickHooks

    class Mine(QuickHooks, L.LightningModule):
        pass

    module = Mine()
    checked = []
    monkeypatch.setattr(nn.Module, "__setattr__", lambda self, name, value: (checked.append(name),
                                                                              object.__setattr__(self, name, value)))
    setattr(module, CURRENT_HOOK_ATTRIBUTE, "training_step")
    module.layer = "kept"
    assert checked == ["layer"]
    assert getattr(module, CURRENT_HOOK_ATTRIBUTE) == "training_step"


def test_compile_compiles_the_network_once_in_place_and_keeps_its_state_dict_keys(monkeypatch):
    module = Classifier(MLP(4, 3, hidden=[8]), num_classes=3, compile=True, compile_mode="max-autotune",
                        compile_dynamic=False)
    keys = list(module.state_dict())
    calls = []
    monkeypatch.setattr(module.net, "compile", lambda **options: calls.append(options))
    module.configure_model()
    module.configure_model()  # Lightning calls it once per stage
    assert calls == [{"mode": "max-autotune", "dynamic": False}]
    assert list(module.state_dict()) == keys


def test_an_uncompiled_module_leaves_its_network_alone(monkeypatch):
    module = Classifier(MLP(4, 3, hidden=[8]), num_classes=3)
    monkeypatch.setattr(module.net, "compile", lambda **options: pytest.fail("compiled"))
    module.configure_model()


def test_an_unknown_compile_mode_is_refused():
    with pytest.raises(ValueError, match=r"`compile_mode` must be one of \('default', .*\), got 'fast'"):
        Regressor(MLP(4, 1, hidden=[]), compile=True, compile_mode="fast")
