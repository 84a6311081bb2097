import copy
from types import SimpleNamespace

import lightning.pytorch as L
import pytest
import torch
from _tiny import MemoryLogger, TinyModule, tiny_loader, tiny_trainer
from torch import nn

from lit_callbacks import GradientMonitor, WeightPenalty


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"l1": -0.1}, ValueError, r"`l1` must be >= 0.0, got -0.1"),
        ({"l2": float("nan")}, ValueError, r"`l2` must be finite, got nan"),
        ({"l2": "1e-4"}, TypeError, r"`l2` must be a number, got '1e-4'"),
        ({"exclude_bias_and_norm": "yes"}, TypeError, r"`exclude_bias_and_norm` must be a bool, got 'yes'"),
    ],
)
def test_invalid_arguments_are_named_in_the_error(kwargs, error, match):
    with pytest.raises(error, match=match):
        WeightPenalty(**kwargs)


class NormNet(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(4, 6)
        self.norm = nn.LayerNorm(6)
        self.bn = nn.BatchNorm1d(6)
        self.out = nn.Linear(6, 1)

    def forward(self, x):
        return self.out(self.bn(self.norm(self.fc(x)).relu()))


def test_excludes_biases_and_norm_layers_by_default():
    model = NormNet()
    names = {id(p): n for n, p in model.named_parameters()}
    assert [names[id(p)] for p in WeightPenalty().penalized_parameters(model)] == ["fc.weight", "out.weight"]
    everything = WeightPenalty(exclude_bias_and_norm=False).penalized_parameters(model)
    assert [names[id(p)] for p in everything] == [n for n, _ in model.named_parameters()]


@pytest.mark.parametrize("exclude", [True, False])
def test_added_gradient_equals_autograd_of_the_penalty(exclude):
    torch.manual_seed(0)
    model = NormNet()
    with torch.no_grad():
        model.fc.weight[0, :2] = 0.0  # sign(0) = 0, as autograd's gradient of |w| at 0
    x, y = torch.randn(8, 4), torch.randn(8, 1)
    l1, l2 = 0.03, 0.2
    callback = WeightPenalty(l1=l1, l2=l2, exclude_bias_and_norm=exclude)
    params = callback.penalized_parameters(model)

    reference = copy.deepcopy(model)
    by_name = dict(reference.named_parameters())
    penalized = [by_name[n] for n, p in model.named_parameters() if any(p is q for q in params)]
    loss = nn.functional.mse_loss(reference(x), y)
    loss = loss + l1 * sum(p.abs().sum() for p in penalized) + l2 * sum(p.pow(2).sum() for p in penalized)
    loss.backward()

    nn.functional.mse_loss(model(x), y).backward()
    trainer = SimpleNamespace(global_step=0, log_every_n_steps=0)
    callback.setup(trainer, model, "fit")
    callback.on_before_optimizer_step(trainer, model, optimizer=None)

    for (name, got), (_, want) in zip(model.named_parameters(), reference.named_parameters()):
        torch.testing.assert_close(got.grad, want.grad, msg=name)


class PenaltyInLoss(TinyModule):
    """TinyModule with the penalty written into the loss, the way the callback promises to behave."""

    def __init__(self, l1: float, l2: float) -> None:
        super().__init__(optimizer="adam", lr=0.05)
        self.l1, self.l2 = l1, l2

    def training_step(self, batch, batch_idx):
        weights = [self.net[0].weight, self.net[2].weight]
        penalty = self.l1 * sum(w.abs().sum() for w in weights) + self.l2 * sum(w.pow(2).sum() for w in weights)
        return super().training_step(batch, batch_idx) + penalty


def test_training_update_equals_adding_the_penalty_to_the_loss():
    l1, l2 = 0.01, 0.05
    L.seed_everything(0)
    with_callback = TinyModule(optimizer="adam", lr=0.05)
    in_loss = PenaltyInLoss(l1, l2)
    in_loss.load_state_dict(with_callback.state_dict())

    for model, callbacks in ((with_callback, [WeightPenalty(l1=l1, l2=l2)]), (in_loss, [])):
        trainer = tiny_trainer(max_epochs=1, accumulate_grad_batches=2, callbacks=callbacks)
        trainer.fit(model, tiny_loader(samples=48, batch_size=8))  # 3 optimizer steps of 2 micro-batches

    for (name, got), (_, want) in zip(with_callback.named_parameters(), in_loss.named_parameters()):
        torch.testing.assert_close(got, want, msg=name)
    assert not torch.equal(with_callback.net[0].weight, TinyModule().net[0].weight)


def test_logs_the_penalty_values_at_lightnings_logging_interval():
    model = TinyModule(lr=0.0)  # weights stay put, so every logged value is the same
    logger = MemoryLogger()
    trainer = tiny_trainer(max_steps=5, log_every_n_steps=2, logger=logger, callbacks=[WeightPenalty(l1=0.5, l2=0.25)])
    trainer.fit(model, tiny_loader(samples=40))

    weights = [model.net[0].weight, model.net[2].weight]
    l1 = 0.5 * sum(float(w.abs().sum()) for w in weights)
    l2 = 0.25 * sum(float(w.pow(2).sum()) for w in weights)
    assert logger.steps_with("penalty/l1") == [1, 3]
    assert logger.values("penalty/l1") == pytest.approx([l1, l1])
    assert logger.values("penalty/l2") == pytest.approx([l2, l2])


def test_double_precision_weights_are_penalized_in_double():
    model = TinyModule(lr=0.0)
    trainer = tiny_trainer(max_steps=1, precision="64-true", callbacks=[WeightPenalty(l1=0.5, l2=0.25)])
    trainer.fit(model, tiny_loader())
    weights = [model.net[0].weight, model.net[2].weight]
    assert weights[0].dtype == torch.float64
    assert float(trainer.logged_metrics["penalty/l2"]) == pytest.approx(0.25 * sum(float(w.pow(2).sum()) for w in weights))


def test_only_the_nonzero_penalty_is_logged():
    trainer = tiny_trainer(max_steps=1, log_every_n_steps=1, callbacks=[WeightPenalty(l2=0.1)])
    trainer.fit(TinyModule(), tiny_loader())
    assert "penalty/l2" in trainer.logged_metrics
    assert "penalty/l1" not in trainer.logged_metrics


def test_leaves_a_step_dropped_by_gradient_monitor_dropped():
    class NaNGrad(TinyModule):
        def on_after_backward(self):
            self.net[0].weight.grad[0, 0] = float("nan")

    model = NaNGrad()
    before = copy.deepcopy(model.state_dict())
    trainer = tiny_trainer(max_steps=1, callbacks=[GradientMonitor(on_nonfinite="skip"), WeightPenalty(l2=0.1)])
    with pytest.warns(UserWarning, match="Skipped this optimizer step"):
        trainer.fit(model, tiny_loader())
    for name, value in model.state_dict().items():
        assert torch.equal(value, before[name]), name


def test_two_instances_have_distinct_state_keys():
    assert WeightPenalty(l1=0.1).state_key != WeightPenalty(l2=0.1).state_key
