import pytest
import torch
from _tiny import MemoryLogger, TinyModule, count_host_syncs, tiny_loader, tiny_trainer
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from lit_callbacks import ActivationMonitor


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"log_every_n_steps": 0}, ValueError, r"`log_every_n_steps` must be an int >= 1, got 0"),
        ({"log_every_n_steps": True}, TypeError, r"`log_every_n_steps` must be an int, got True"),
        ({"modules": ()}, ValueError, r"`modules` must name at least one module type or pattern, got \(\)"),
        ({"modules": (nn.ReLU, 3)}, TypeError, r"`modules` must be nn.Module subclasses or module-name patterns"),
    ],
)
def test_invalid_arguments_are_named_in_the_error(kwargs, error, match):
    with pytest.raises(error, match=match):
        ActivationMonitor(**kwargs)


class HookSpy(TinyModule):
    """Records how many forward hooks the ReLU carries during each forward and each backward."""

    def __init__(self) -> None:
        super().__init__()
        self.hooks_in_forward: list[int] = []
        self.hooks_in_backward: list[int] = []

    def training_step(self, batch, batch_idx):
        self.hooks_in_forward.append(len(self.net[1]._forward_hooks))
        return super().training_step(batch, batch_idx)

    def on_after_backward(self):
        self.hooks_in_backward.append(len(self.net[1]._forward_hooks))


def test_hooks_exist_only_during_the_forward_of_sampled_steps():
    model, logger = HookSpy(), MemoryLogger()
    monitor = ActivationMonitor(log_every_n_steps=3)
    tiny_trainer(max_steps=7, logger=logger, callbacks=[monitor]).fit(model, tiny_loader(samples=56))

    assert model.hooks_in_forward == [1, 0, 0, 1, 0, 0, 1]
    assert model.hooks_in_backward == [0] * 7
    assert len(model.net[1]._forward_hooks) == 0
    assert logger.steps_with("activations/net.1/mean") == [0, 3, 6]


@pytest.mark.parametrize(
    ("log_every_n_steps", "trainers", "sampled"), [(None, 3, [0, 3, 6]), (None, 0, []), (2, 3, [0, 2, 4, 6])]
)
def test_samples_every_n_steps_of_the_trainer_unless_told_otherwise(log_every_n_steps, trainers, sampled):
    model, logger = HookSpy(), MemoryLogger()
    monitor = ActivationMonitor(log_every_n_steps=log_every_n_steps)
    trainer = tiny_trainer(max_steps=7, log_every_n_steps=trainers, logger=logger, callbacks=[monitor])
    trainer.fit(model, tiny_loader(samples=56))
    assert logger.steps_with("activations/net.1/mean") == sampled
    assert [step for step, hooks in enumerate(model.hooks_in_forward) if hooks] == sampled


def test_samples_only_the_first_micro_batch_of_a_step_under_accumulation():
    model, logger = HookSpy(), MemoryLogger()
    monitor = ActivationMonitor(log_every_n_steps=1)
    trainer = tiny_trainer(max_epochs=1, accumulate_grad_batches=2, logger=logger, callbacks=[monitor])
    trainer.fit(model, tiny_loader(samples=32))  # 4 micro-batches, 2 optimizer steps
    assert model.hooks_in_forward == [1, 0, 1, 0]
    assert logger.steps_with("activations/net.1/mean") == [0, 1]


class Scripted(TinyModule):
    """``Linear(2, 3) -> ReLU`` with weights that make unit 0 always on, unit 1 always off, unit 2 mixed."""

    def __init__(self) -> None:
        super().__init__(lr=0.0)
        self.net = nn.Sequential(nn.Linear(2, 3), nn.ReLU())
        with torch.no_grad():
            self.net[0].weight.copy_(torch.tensor([[0.0, 0.0], [0.0, 0.0], [1.0, 0.0]]))
            self.net[0].bias.copy_(torch.tensor([1.0, -1.0, 0.0]))

    def training_step(self, batch, batch_idx):
        return self.net(batch[0]).sum()


def test_logs_exact_mean_std_and_dead_fraction():
    x = torch.tensor([[2.0, 0.0], [-1.0, 0.0], [0.5, 0.0], [-3.0, 0.0]])
    loader = DataLoader(TensorDataset(x, torch.zeros(4, 1)), batch_size=4)
    monitor, logger = ActivationMonitor(log_every_n_steps=1), MemoryLogger()
    tiny_trainer(max_steps=1, logger=logger, callbacks=[monitor]).fit(Scripted(), loader)

    out = torch.tensor([[1.0, 0.0, 2.0], [1.0, 0.0, 0.0], [1.0, 0.0, 0.5], [1.0, 0.0, 0.0]])
    assert logger.records == [
        (
            0,
            {
                "activations/net.1/mean": pytest.approx(out.mean().item()),
                "activations/net.1/std": pytest.approx(out.std(correction=0).item()),
                "activations/net.1/dead_fraction": pytest.approx(1 / 3),  # unit 1 is <= 0 for every sample
            },
        )
    ]
    assert monitor.last_metrics == logger.records[0][1]


class SharedActivation(TinyModule):
    """One ReLU module applied twice in the forward, and a Tanh chosen by name."""

    def __init__(self) -> None:
        super().__init__()
        self.fc1, self.fc2, self.act, self.squash = nn.Linear(4, 8), nn.Linear(8, 1), nn.ReLU(), nn.Tanh()

    def forward(self, x):
        return self.squash(self.act(self.fc2(self.act(self.fc1(x)))))


def test_reused_module_gets_one_entry_per_call_and_patterns_choose_by_name():
    monitor = ActivationMonitor(log_every_n_steps=1, modules=(nn.ReLU,))
    tiny_trainer(max_steps=1, callbacks=[monitor]).fit(SharedActivation(), tiny_loader())
    assert sorted({key.rsplit("/", 1)[0] for key in monitor.last_metrics}) == ["activations/act", "activations/act@1"]

    monitor = ActivationMonitor(log_every_n_steps=1, modules="squa*")
    tiny_trainer(max_steps=1, callbacks=[monitor]).fit(SharedActivation(), tiny_loader())
    assert sorted(monitor.last_metrics) == [
        "activations/squash/dead_fraction",
        "activations/squash/mean",
        "activations/squash/std",
    ]


def test_one_host_sync_per_sampled_step_and_none_otherwise(monkeypatch):
    syncs = count_host_syncs(monkeypatch, "lit_callbacks.activation_monitor")
    tiny_trainer(max_steps=6, callbacks=[ActivationMonitor(log_every_n_steps=2)]).fit(
        SharedActivation(), tiny_loader(samples=48)
    )
    assert syncs[0] == 3


def test_warns_once_when_no_module_matches():
    class Functional(TinyModule):
        def forward(self, x):
            return self.net[2](torch.relu(self.net[0](x)))

    model = Functional()
    model.net[1] = nn.Identity()
    with pytest.warns(UserWarning, match=r"no module matches modules=\(ReLU\)\. Activations applied with torch\.nn\.f"):
        tiny_trainer(max_steps=2, callbacks=[ActivationMonitor(log_every_n_steps=1, modules=nn.ReLU)]).fit(
            model, tiny_loader()
        )


def test_two_instances_have_distinct_state_keys():
    assert ActivationMonitor(log_every_n_steps=10).state_key != ActivationMonitor(log_every_n_steps=100).state_key
