import copy
import json
import math
import os
import subprocess
import sys
import textwrap
import warnings

import lightning.pytorch as L
import pytest
import torch
from _tiny import MemoryLogger, TinyModule, count_host_syncs, tiny_loader, tiny_trainer
from torch import nn

from lit_callbacks import GradientMonitor


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"per": "modul"}, ValueError, r"`per` must be one of \('module', 'parameter'\), got 'modul'"),
        ({"on_nonfinite": "halt"}, ValueError, r"`on_nonfinite` must be one of \('stop', 'skip', 'warn'\), got 'halt'"),
        ({"log_every_n_steps": 0}, ValueError, r"`log_every_n_steps` must be an int >= 1, got 0"),
        ({"log_every_n_steps": 2.5}, TypeError, r"`log_every_n_steps` must be an int, got 2.5"),
        ({"vanishing": -1.0}, ValueError, r"`vanishing` must be >= 0.0, got -1.0"),
        ({"exploding": 0.0}, ValueError, r"`exploding` must be > 0.0, got 0.0"),
        ({"exploding": "big"}, TypeError, r"`exploding` must be a number, got 'big'"),
        ({"vanishing": 1.0, "exploding": 1.0}, ValueError, r"`vanishing` must be below `exploding`, got vanishing=1.0"),
        ({"patience": 0}, ValueError, r"`patience` must be an int >= 1, got 0"),
        ({"max_skipped_fraction": 0.0}, ValueError, r"`max_skipped_fraction` must be > 0.0, got 0.0"),
        ({"max_skipped_fraction": 1.5}, ValueError, r"`max_skipped_fraction` must be <= 1.0, got 1.5"),
        ({"max_skipped_fraction": math.nan}, ValueError, r"`max_skipped_fraction` must be finite, got nan"),
        ({"max_skipped_fraction": "10%"}, TypeError, r"`max_skipped_fraction` must be a number, got '10%'"),
    ],
)
def test_invalid_arguments_are_named_in_the_error(kwargs, error, match):
    with pytest.raises(error, match=match):
        GradientMonitor(**kwargs)


class NormRecorder(L.Callback):
    """Runs after GradientMonitor and computes the expected norms the slow, obvious way."""

    def __init__(self, per: str = "module") -> None:
        self.per = per
        self.expected: dict[int, dict[str, float]] = {}

    def on_before_optimizer_step(self, trainer, pl_module, optimizer):
        squares: dict[str, float] = {}
        for name, param in pl_module.named_parameters():
            layer = name if self.per == "parameter" else name.rpartition(".")[0]
            squares[layer] = squares.get(layer, 0.0) + float(param.grad.pow(2).sum())
        expected = {f"grad_norm/{layer}": value**0.5 for layer, value in squares.items()}
        expected["grad_norm/total"] = sum(squares.values()) ** 0.5
        self.expected[trainer.global_step] = expected


@pytest.mark.parametrize(
    ("per", "layers"),
    [
        ("module", ["net.0", "net.2"]),
        ("parameter", ["net.0.weight", "net.0.bias", "net.2.weight", "net.2.bias"]),
    ],
)
def test_logs_exact_keys_and_norms_every_n_optimizer_steps(per, layers):
    monitor = GradientMonitor(log_every_n_steps=2, per=per)
    recorder = NormRecorder(per)
    logger = MemoryLogger()
    trainer = tiny_trainer(max_steps=5, logger=logger, callbacks=[monitor, recorder])
    trainer.fit(TinyModule(), tiny_loader(samples=40))

    records = [(step, m) for step, m in logger.records if "grad_norm/total" in m]
    assert [step for step, _ in records] == [0, 2, 4]
    keys = {f"grad_norm/{layer}" for layer in layers} | {"grad_norm/total", "grad_norm/skipped_steps"}
    for step, metrics in records:
        assert set(metrics) == keys
        assert metrics["grad_norm/skipped_steps"] == 0.0
        for key, value in recorder.expected[step].items():
            assert metrics[key] == pytest.approx(value, rel=1e-5)
    assert monitor.last_metrics == records[-1][1]


@pytest.mark.parametrize(
    ("log_every_n_steps", "trainers", "logged"), [(None, 3, [0, 3, 6]), (None, 0, []), (2, 3, [0, 2, 4, 6])]
)
def test_logs_every_n_steps_of_the_trainer_unless_told_otherwise(log_every_n_steps, trainers, logged):
    logger = MemoryLogger()
    trainer = tiny_trainer(
        max_steps=7, log_every_n_steps=trainers, logger=logger, callbacks=[GradientMonitor(log_every_n_steps)]
    )
    trainer.fit(TinyModule(), tiny_loader(samples=56))
    assert logger.steps_with("grad_norm/total") == logged


def test_measures_once_per_optimizer_step_under_gradient_accumulation():
    monitor = GradientMonitor(log_every_n_steps=1)
    recorder = NormRecorder()
    logger = MemoryLogger()
    trainer = tiny_trainer(max_epochs=1, accumulate_grad_batches=2, logger=logger, callbacks=[monitor, recorder])
    trainer.fit(TinyModule(), tiny_loader(samples=32, batch_size=8))  # 4 batches -> 2 optimizer steps

    assert logger.steps_with("grad_norm/total") == [0, 1]
    assert logger.values("grad_norm/total") == pytest.approx([recorder.expected[s]["grad_norm/total"] for s in (0, 1)])


def test_one_host_sync_per_step_logged_or_not(monkeypatch):
    syncs = count_host_syncs(monkeypatch, "lit_callbacks.gradient_monitor")
    trainer = tiny_trainer(max_steps=6, callbacks=[GradientMonitor(log_every_n_steps=3)])
    trainer.fit(TinyModule(), tiny_loader(samples=48))
    assert trainer.global_step == 6
    assert syncs[0] == 6


class PlantNaN(L.LightningModule):
    """TinyModule that writes NaN into the gradient of chosen layers on one optimizer step."""

    def __init__(self, step: int, layers: tuple[str, ...], optimizer: str = "sgd") -> None:
        super().__init__()
        self.net = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 1))
        self.bad_step, self.bad_layers, self.optimizer = step, layers, optimizer
        self.before_bad_step: dict | None = None
        self.after_bad_step: dict | None = None

    def training_step(self, batch, batch_idx):
        x, y = batch
        return nn.functional.mse_loss(self.net(x), y)

    def on_train_batch_start(self, batch, batch_idx):
        if self.global_step == self.bad_step:
            self.before_bad_step = self._snapshot()

    def on_after_backward(self):
        if self.global_step == self.bad_step:
            for layer in self.bad_layers:
                self.get_submodule(layer).weight.grad[0, 0] = float("nan")

    def on_train_batch_end(self, outputs, batch, batch_idx):
        if self.global_step == self.bad_step + 1:
            self.after_bad_step = self._snapshot()

    def _snapshot(self) -> dict:
        optimizer = self.trainer.optimizers[0]
        return {"weights": copy.deepcopy(self.state_dict()), "optimizer": copy.deepcopy(optimizer.state_dict())}

    def configure_optimizers(self):
        if self.optimizer == "adam":
            return torch.optim.Adam(self.parameters(), lr=0.01)
        return torch.optim.SGD(self.parameters(), lr=0.1, momentum=0.9)


def assert_same(a, b):
    if isinstance(a, dict):
        assert a.keys() == b.keys()
        for key in a:
            assert_same(a[key], b[key])
    elif isinstance(a, (list, tuple)):
        assert len(a) == len(b)
        for x, y in zip(a, b):
            assert_same(x, y)
    elif isinstance(a, torch.Tensor):
        assert torch.equal(a, b)
    else:
        assert a == b


BACKWARD = (
    r"The loss was finite: a backward problem \(an overflow in the backward pass, a custom autograd function or a"
    r" gradient hook\)\."
)
FORWARD = r"The loss was already non-finite: a forward problem \(NaN/Inf in the data, or an overflow in the model\)\."
NET_2 = r"1 parameter has non-finite gradients: net.2.weight\."


@pytest.mark.parametrize(
    ("bad_layers", "named"),
    [
        (("net.2",), "1 parameter has non-finite gradients: net.2.weight"),
        (("net.2", "net.0"), "2 parameters have non-finite gradients: net.0.weight, net.2.weight"),
    ],
)
def test_stop_drops_the_bad_update_and_names_every_bad_parameter(bad_layers, named):
    model = PlantNaN(step=2, layers=bad_layers)
    monitor = GradientMonitor(on_nonfinite="stop")
    trainer = tiny_trainer(max_steps=10, callbacks=[monitor])
    with pytest.warns(UserWarning, match=rf"^At optimizer step 2, {named}\. {BACKWARD} Stopped training"):
        trainer.fit(model, tiny_loader(samples=80))

    assert trainer.global_step == 3  # the bad step was the last one
    assert trainer.should_stop
    assert monitor.skipped_steps == 1
    assert named in monitor.stop_message
    assert "Lower the learning rate, clip gradients" in monitor.stop_message
    assert monitor.stopped_reason == "non_finite_gradient"
    assert all(torch.isfinite(p).all() for p in model.parameters())
    assert_same(model.state_dict(), model.before_bad_step["weights"])


def test_skip_leaves_weights_and_adam_state_untouched_and_counts():
    model = PlantNaN(step=1, layers=("net.0",), optimizer="adam")
    monitor = GradientMonitor(log_every_n_steps=1, on_nonfinite="skip")
    logger = MemoryLogger()
    trainer = tiny_trainer(max_steps=4, logger=logger, callbacks=[monitor])
    match = rf"step 1, 1 parameter has non-finite gradients: net.0.weight\. {BACKWARD} Skipped this optimizer step \(1 "
    with pytest.warns(UserWarning, match=match):
        trainer.fit(model, tiny_loader())

    assert trainer.global_step == 4  # training went on
    assert_same(model.after_bad_step, model.before_bad_step)  # weights and Adam state exactly as before
    assert [s["step"].item() for s in trainer.optimizers[0].state.values()] == [3.0] * 4  # 4 steps, 1 dropped
    assert all(torch.isfinite(p).all() for p in model.parameters())
    assert monitor.skipped_steps == 1
    assert logger.values("grad_norm/skipped_steps") == [0.0, 1.0, 1.0, 1.0]  # logged after the drop
    assert monitor.state_dict()["skipped_steps"] == 1


class PlantInfs(PlantNaN):
    """+Inf and -Inf in one gradient of the chosen layers: they cancel to NaN in a sum."""

    def on_after_backward(self):
        if self.global_step == self.bad_step:
            for layer in self.bad_layers:
                self.get_submodule(layer).weight.grad[0, :2] = torch.tensor([math.inf, -math.inf])


@pytest.mark.parametrize("plant", [PlantNaN, PlantInfs])
@pytest.mark.parametrize("precision", ["32-true", "bf16-true"])
def test_steps_that_log_nothing_catch_every_non_finite_gradient(plant, precision):
    """Between logged steps the host check sums the gradients instead of taking their norms: it stops all the same."""
    model = plant(step=2, layers=("net.2",))
    monitor = GradientMonitor(log_every_n_steps=50, on_nonfinite="stop")
    trainer = tiny_trainer(max_steps=10, precision=precision, callbacks=[monitor])
    with pytest.warns(UserWarning, match=rf"^At optimizer step 2, {NET_2} {BACKWARD} Stopped training"):
        trainer.fit(model, tiny_loader(samples=80))
    assert trainer.global_step == 3 and monitor.skipped_steps == 1
    assert_same(model.state_dict(), model.before_bad_step["weights"])


def test_warn_only_reports_and_lets_the_update_through():
    model = PlantNaN(step=0, layers=("net.2",))
    monitor = GradientMonitor(on_nonfinite="warn")
    trainer = tiny_trainer(max_steps=1, callbacks=[monitor])
    with pytest.warns(UserWarning, match=rf"^At optimizer step 0, {NET_2} {BACKWARD}$"):
        trainer.fit(model, tiny_loader())
    assert torch.isnan(model.net[2].weight).any()
    assert monitor.skipped_steps == 0
    assert not trainer.should_stop


def loader_with_nan(batch: int, samples: int = 80) -> torch.utils.data.DataLoader:
    """``tiny_loader`` batches of 8, with a NaN in the first input of batch ``batch``."""
    x, y = tiny_loader(samples=samples).dataset.tensors
    x = x.clone()
    x[8 * batch, 0] = float("nan")
    return torch.utils.data.DataLoader(torch.utils.data.TensorDataset(x, y), batch_size=8)


class Deep(TinyModule):
    """Three linear layers, six parameters."""

    def __init__(self, optimizer: str = "sgd") -> None:
        super().__init__(optimizer=optimizer)
        self.net = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 8), nn.ReLU(), nn.Linear(8, 1))


class PoisonGradient(torch.autograd.Function):
    """The identity forward; backward passes on a NaN gradient."""

    @staticmethod
    def forward(ctx, x):
        return x.clone()

    @staticmethod
    def backward(ctx, grad):
        return torch.full_like(grad, float("nan"))


class PoisonedBackward(TinyModule):
    """On one optimizer step, the gradient flowing back into ``net.0`` turns NaN; the loss stays finite."""

    def __init__(self, step: int) -> None:
        super().__init__()
        self.bad_step = step

    def forward(self, x):
        hidden = self.net[1](self.net[0](x))
        if self.training and self.global_step == self.bad_step:
            hidden = PoisonGradient.apply(hidden)
        return self.net[2](hidden)


def test_a_nan_in_the_input_is_named_a_forward_problem():
    monitor = GradientMonitor(on_nonfinite="stop")
    trainer = tiny_trainer(max_steps=10, callbacks=[monitor])
    names = r"net.0.weight, net.0.bias, net.2.weight, net.2.bias, net.4.weight and 1 more"
    with pytest.warns(UserWarning, match=rf"^At optimizer step 2, 6 parameters have non-finite gradients: {names}\. {FORWARD}"):
        trainer.fit(Deep(), loader_with_nan(batch=2))
    assert trainer.global_step == 3 and monitor.stopped_reason == "non_finite_gradient"


def test_a_nan_made_in_the_backward_pass_is_named_a_backward_problem():
    monitor = GradientMonitor(on_nonfinite="stop")
    trainer = tiny_trainer(max_steps=10, callbacks=[monitor])
    named = r"2 parameters have non-finite gradients: net.0.weight, net.0.bias"
    with pytest.warns(UserWarning, match=rf"^At optimizer step 2, {named}\. {BACKWARD} Stopped training"):
        trainer.fit(PoisonedBackward(step=2), tiny_loader(samples=80))
    assert trainer.global_step == 3 and monitor.stopped_reason == "non_finite_gradient"


def test_naming_the_bad_parameters_costs_no_sync_until_a_gradient_is_non_finite(monkeypatch):
    syncs = count_host_syncs(monkeypatch, "lit_callbacks.gradient_monitor")
    trainer = tiny_trainer(max_steps=6, callbacks=[GradientMonitor(log_every_n_steps=3, on_nonfinite="skip")])
    with pytest.warns(UserWarning, match=rf"At optimizer step 4, 6 parameters .* {FORWARD}"):
        trainer.fit(Deep(), loader_with_nan(batch=4))
    assert syncs[0] == 6 + 1  # one per step, and one to name the parameters and read the loss at step 4


class HealthModule(TinyModule):
    """A layer whose gradient is exactly zero and one whose gradient is about 1e6."""

    def __init__(self) -> None:
        super().__init__(lr=0.0)
        self.dead = nn.Linear(4, 1)
        self.big = nn.Linear(4, 1)

    def training_step(self, batch, batch_idx):
        x, y = batch
        loss = nn.functional.mse_loss(self(x), y)
        return loss + 0.0 * self.dead(x).sum() + 1e6 * self.big(x).mean()


def test_vanishing_and_exploding_layers_get_one_warning_each_after_patience():
    monitor = GradientMonitor(log_every_n_steps=1, vanishing=1e-7, exploding=1e3, patience=3)
    trainer = tiny_trainer(max_steps=6, callbacks=[monitor])
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        trainer.fit(HealthModule(), tiny_loader(samples=48))
    messages = [str(w.message) for w in caught if "Gradient norm of layer" in str(w.message)]
    assert len(messages) == 2
    assert messages[0].startswith("Gradient norm of layer 'dead' stayed below vanishing=1e-07 for 3 logged steps")
    assert messages[1].startswith("Gradient norm of layer 'big' stayed above exploding=1000.0 for 3 logged steps")
    assert monitor.state_dict()["streaks"]["vanishing"]["dead"] == 6
    assert monitor.state_dict()["warned"] == [("exploding", "big"), ("vanishing", "dead")]


def test_warnings_are_not_repeated_after_resume_and_old_checkpoints_load():
    monitor = GradientMonitor(patience=2)
    monitor.load_state_dict({"skipped_steps": 4})  # a checkpoint written before streaks were saved
    assert monitor.skipped_steps == 4
    assert monitor.state_dict()["warned"] == []
    monitor.load_state_dict({"warned": [["vanishing", "dead"]], "streaks": {"vanishing": {"dead": 5}}})
    assert ("vanishing", "dead") in monitor._warned


def test_two_instances_have_distinct_state_keys():
    assert GradientMonitor(per="module").state_key != GradientMonitor(per="parameter").state_key


DDP_SCRIPT = textwrap.dedent(
    """
    import json, sys
    import lightning.pytorch as L
    import torch
    from torch import nn
    from torch.utils.data import DataLoader, TensorDataset
    from lit_callbacks import GradientMonitor, WeightInit

    out = sys.argv[1]

    class Model(L.LightningModule):
        def __init__(self):
            super().__init__()
            self.net = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 1))

        def training_step(self, batch, batch_idx):  # every rank loads the global batch and takes its half
            x, y = batch
            x, y = x[self.global_rank :: 2], y[self.global_rank :: 2]
            return nn.functional.mse_loss(self.net(x), y)

        def on_after_backward(self):  # after DDP's all-reduce: only rank 1 sees the NaN
            if self.global_step == 2 and self.global_rank == 1:
                self.net[2].weight.grad[0, 0] = float("nan")

        def configure_optimizers(self):
            return torch.optim.SGD(self.parameters(), lr=0.1)

    class Record(L.Callback):
        def __init__(self, monitor):
            self.monitor, self.totals, self.initial = monitor, [], None

        def on_train_start(self, trainer, pl_module):
            self.initial = {k: v.tolist() for k, v in pl_module.state_dict().items()}

        def on_before_optimizer_step(self, trainer, pl_module, optimizer):
            self.totals.append(self.monitor.last_metrics["grad_norm/total"])

    if __name__ == "__main__":
        g = torch.Generator().manual_seed(0)
        data = TensorDataset(torch.randn(48, 4, generator=g), torch.randn(48, 1, generator=g))
        monitor = GradientMonitor(log_every_n_steps=1, on_nonfinite="stop")
        record = Record(monitor)
        model = Model()
        trainer = L.Trainer(
            accelerator="cpu", devices=2, strategy="ddp", max_steps=6, logger=False, use_distributed_sampler=False,
            enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False,
            callbacks=[WeightInit(), monitor, record],
        )
        trainer.fit(model, DataLoader(data, batch_size=8))
        result = {
            "initial": record.initial,
            "totals": record.totals,
            "global_step": trainer.global_step,
            "should_stop": trainer.should_stop,
            "skipped": monitor.skipped_steps,
            "message": monitor.stop_message,
            "final": {k: v.tolist() for k, v in model.state_dict().items()},
        }
        with open(f"{out}/rank{trainer.global_rank}.json", "w") as f:
            json.dump(result, f)
        torch.distributed.destroy_process_group()  # else gloo's threads can abort the interpreter's shutdown
    """
)


class TotalRecorder(L.Callback):
    def __init__(self, monitor: GradientMonitor) -> None:
        self.monitor, self.totals = monitor, []

    def on_before_optimizer_step(self, trainer, pl_module, optimizer):
        self.totals.append(self.monitor.last_metrics["grad_norm/total"])


@pytest.mark.slow
def test_ddp_norms_match_one_process_and_ranks_agree_to_stop(tmp_path):
    script = tmp_path / "ddp_run.py"
    script.write_text(DDP_SCRIPT)
    env = {**os.environ, "PYTHONWARNINGS": "ignore"}
    subprocess.run([sys.executable, str(script), str(tmp_path)], check=True, timeout=120, env=env, cwd=tmp_path)
    ranks = [json.loads((tmp_path / f"rank{r}.json").read_text()) for r in (0, 1)]

    # both ranks started from the same WeightInit weights, stopped on step 2 and dropped its update
    assert ranks[0]["initial"] == ranks[1]["initial"]
    for rank in ranks:
        assert rank["global_step"] == 3 and rank["should_stop"] and rank["skipped"] == 1
        assert all(torch.isfinite(torch.tensor(v)).all() for v in rank["final"].values())
    assert ranks[0]["final"] == ranks[1]["final"]
    assert ranks[1]["message"].startswith("At optimizer step 2, 1 parameter has non-finite gradients: net.2.weight.")
    assert ranks[0]["message"].startswith("At optimizer step 2, the non-finite gradients are on another rank.")
    assert all("The loss was finite: a backward problem" in rank["message"] for rank in ranks)

    # one process on the same global batches of 8 samples measures the same global norms
    monitor = GradientMonitor(log_every_n_steps=1)
    record = TotalRecorder(monitor)
    model = TinyModule()
    model.load_state_dict({k: torch.tensor(v) for k, v in ranks[0]["initial"].items()})
    g = torch.Generator().manual_seed(0)
    x, y = torch.randn(48, 4, generator=g), torch.randn(48, 1, generator=g)
    loader = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(x, y), batch_size=8)
    tiny_trainer(max_steps=2, callbacks=[monitor, record]).fit(model, loader)
    assert ranks[0]["totals"][:2] == pytest.approx(record.totals, rel=1e-5)
    assert ranks[1]["totals"][:2] == pytest.approx(record.totals, rel=1e-5)


def test_frozen_layers_are_left_out_and_detached_layers_log_zero():
    class Partial(TinyModule):
        def __init__(self):
            super().__init__()
            self.frozen, self.detached = nn.Linear(4, 1), nn.Linear(4, 1)
            self.frozen.requires_grad_(False)

        def training_step(self, batch, batch_idx):
            x, _ = batch
            loss = super().training_step(batch, batch_idx)
            return loss + self.frozen(x).mean() + 0 * self.detached(x).detach().mean()

    monitor = GradientMonitor(log_every_n_steps=1, patience=1)
    match = r"layer 'detached' stayed below vanishing=1e-07 for 1 logged steps \(latest 0\)"
    with pytest.warns(UserWarning, match=match):
        tiny_trainer(max_steps=1, callbacks=[monitor]).fit(Partial(), tiny_loader())
    assert "grad_norm/frozen" not in monitor.last_metrics
    assert monitor.last_metrics["grad_norm/detached"] == 0.0


@pytest.mark.parametrize("log_every_n_steps", [1, 50])
def test_a_layer_unfrozen_during_training_is_checked_and_logged(log_every_n_steps):
    class Unfreezing(TinyModule):
        def __init__(self):
            super().__init__()
            self.late = nn.Linear(4, 1)
            self.late.requires_grad_(False)

        def training_step(self, batch, batch_idx):
            if self.global_step == 2:  # unfreezes, as a fine-tuning schedule does
                self.late.requires_grad_(True)
            return super().training_step(batch, batch_idx) + self.late(batch[0]).mean()

        def on_after_backward(self):
            if self.global_step == 3:
                self.late.weight.grad[0, 0] = float("nan")

    monitor = GradientMonitor(log_every_n_steps=log_every_n_steps, on_nonfinite="skip")
    with pytest.warns(UserWarning, match=r"At optimizer step 3, 1 parameter has non-finite gradients: late.weight\."):
        tiny_trainer(max_steps=4, callbacks=[monitor]).fit(Unfreezing(), tiny_loader())
    assert monitor.skipped_steps == 1
    # logged from the first logged step after the unfreezing on (with 50: step 0 only, while it was frozen)
    assert ("grad_norm/late" in monitor.last_metrics) == (log_every_n_steps == 1)


def test_under_an_fp16_grad_scaler_norms_are_unscaled_and_overflow_is_left_to_the_scaler():
    from lightning.pytorch.plugins import MixedPrecision

    # Fixed weights and data: with some draws an fp16 step overflows on its own and the scale backs off twice.
    torch.manual_seed(0)
    model = PlantNaN(step=1, layers=("net.2",))
    monitor, recorder = GradientMonitor(log_every_n_steps=1, on_nonfinite="stop"), NormRecorder()
    scaler = torch.amp.GradScaler("cpu", init_scale=2.0**16)
    plugin = MixedPrecision("16-mixed", "cpu", scaler=scaler)
    trainer = tiny_trainer(max_steps=3, plugins=[plugin], callbacks=[monitor, recorder])
    trainer.fit(model, tiny_loader())

    assert trainer.global_step == 3 and not trainer.should_stop and monitor.skipped_steps == 0
    assert scaler.get_scale() == 2.0**15  # the scaler skipped the NaN step and backed off once
    assert_same(model.after_bad_step["weights"], model.before_bad_step["weights"])
    assert monitor.last_metrics["grad_norm/total"] == pytest.approx(recorder.expected[2]["grad_norm/total"])
    assert monitor.last_metrics["grad_norm/total"] < 100.0  # unscaled: scaled grads would be ~2**15 times larger


class FusedPlantNaN(PlantNaN):
    def configure_optimizers(self):
        return torch.optim.AdamW(self.parameters(), lr=0.01, fused=True)


@pytest.mark.parametrize("policy", ["skip", "stop"])
def test_device_skip_drops_the_step_on_the_device_and_reads_the_host_only_on_logged_steps(monkeypatch, policy):
    syncs = count_host_syncs(monkeypatch, "lit_callbacks.gradient_monitor")
    model = FusedPlantNaN(step=1, layers=("net.2",))
    monitor = GradientMonitor(log_every_n_steps=4, on_nonfinite=policy, skip_on_device=True)
    logger = MemoryLogger()
    trainer = tiny_trainer(max_steps=8, logger=logger, callbacks=[monitor])
    match = rf"1 non-finite gradient step\(s\) up to optimizer step 4; {NET_2} {BACKWARD}"
    with pytest.warns(UserWarning, match=match):
        trainer.fit(model, tiny_loader(samples=80))

    # The fused kernel left weights, moments and the step count exactly as before the bad step.
    assert_same(model.after_bad_step, model.before_bad_step)
    assert all(torch.isfinite(p).all() for p in model.parameters())
    assert monitor.skipped_steps == 1
    if policy == "stop":
        assert trainer.global_step == 5  # stopped at the logged step 4 that saw the drop
        assert "Lower the learning rate, clip gradients" in monitor.stop_message
        assert syncs[0] == 2  # logged steps 0 and 4 only
    else:
        assert trainer.global_step == 8
        assert syncs[0] == 3  # logged steps 0 and 4, and the report at the end of training
        assert [s["step"].item() for s in trainer.optimizers[0].state.values()] == [7.0] * 4
    assert not hasattr(trainer.optimizers[0], "found_inf")  # nothing left to drop later steps
    assert not trainer.optimizers[0]._optimizer_step_post_hooks  # the hook that cleared it went at teardown


def test_device_skip_reports_every_step_when_nothing_is_logged(monkeypatch):
    syncs = count_host_syncs(monkeypatch, "lit_callbacks.gradient_monitor")
    model = FusedPlantNaN(step=1, layers=("net.2",))
    monitor = GradientMonitor(on_nonfinite="stop", skip_on_device=True)
    trainer = tiny_trainer(max_steps=8, log_every_n_steps=0, callbacks=[monitor])
    with pytest.warns(UserWarning, match=rf"1 non-finite gradient step\(s\) up to optimizer step 1; {NET_2}"):
        trainer.fit(model, tiny_loader(samples=80))
    assert trainer.global_step == 2 and monitor.skipped_steps == 1  # stopped right after the bad step
    assert_same(model.after_bad_step, model.before_bad_step)
    assert syncs[0] == 2  # one read per step


def test_device_skip_needs_an_optimizer_that_can_skip_on_the_device():
    trainer = tiny_trainer(max_steps=1, callbacks=[GradientMonitor(skip_on_device=True)])
    with pytest.raises(ValueError, match=r"skip_on_device=True\) needs an optimizer .* got SGD"):
        trainer.fit(TinyModule(), tiny_loader())


class PlantHuge(PlantNaN):
    """Finite gradients whose L2 norm overflows float32."""

    def on_after_backward(self):
        if self.global_step == self.bad_step:
            self.net[0].weight.grad[0, :2] = 3e38


@pytest.mark.parametrize("log_every_n_steps", [1, 50])  # steps that log nothing check sums, logged ones norms
def test_a_finite_gradient_whose_norm_overflows_is_not_dropped(log_every_n_steps):
    model = PlantHuge(step=1, layers=())
    monitor = GradientMonitor(log_every_n_steps=log_every_n_steps, on_nonfinite="stop")
    trainer = tiny_trainer(max_steps=2, callbacks=[monitor])  # the huge step is the last one
    with warnings.catch_warnings():
        warnings.filterwarnings("error", message="Non-finite")
        trainer.fit(model, tiny_loader())
    assert trainer.global_step == 2 and monitor.skipped_steps == 0 and monitor.stop_message is None
    assert model.net[0].weight[0, 0].abs() > 1e36  # the update went through


class Awkward(PlantNaN):
    """Plants a NaN on ``bad_step``, and a negative zero and a subnormal in every gradient, bits kept to compare."""

    def on_after_backward(self):
        super().on_after_backward()
        for layer in (self.net[0], self.net[2]):
            tiny = 1e-45 if layer.weight.dtype == torch.float32 else 1e-40
            layer.weight.grad[-1, -2:] = torch.tensor([-0.0, tiny])
        self.planted = [param.grad.clone() for param in self.parameters()]

    def on_before_optimizer_step(self, optimizer):  # after the callbacks' hook
        if self.global_step == self.bad_step:
            return  # dropped: every gradient is None
        for planted, param in zip(self.planted, self.parameters()):
            bits = torch.int32 if planted.dtype == torch.float32 else torch.int16
            assert torch.equal(param.grad.view(bits), planted.view(bits))


@pytest.mark.parametrize("precision", ["32-true", "bf16-true"])
def test_the_check_of_a_step_that_logs_nothing_leaves_every_gradient_bit_as_it_was(precision):
    model = Awkward(step=3, layers=("net.2",))
    trainer = tiny_trainer(max_steps=10, precision=precision, callbacks=[GradientMonitor(log_every_n_steps=50)])
    with pytest.warns(UserWarning, match=rf"^At optimizer step 3, {NET_2} {BACKWARD} Stopped training"):
        trainer.fit(model, tiny_loader(samples=80))
    assert trainer.global_step == 4


def test_where_the_fused_check_cannot_run_the_sums_stand_in(monkeypatch):
    calls = []

    def unsupported(*args):
        calls.append(args)
        raise NotImplementedError("Could not run '_amp_foreach_non_finite_check_and_unscale_' on this backend")

    monkeypatch.setattr("lit_callbacks.gradient_monitor.non_finite_check_and_unscale_", unsupported)
    model = PlantInfs(step=3, layers=("net.2",))
    trainer = tiny_trainer(max_steps=10, callbacks=[GradientMonitor(log_every_n_steps=50)])
    with pytest.warns(UserWarning, match=rf"^At optimizer step 3, {NET_2} {BACKWARD} Stopped training"):
        trainer.fit(model, tiny_loader(samples=80))
    assert trainer.global_step == 4
    assert_same(model.state_dict(), model.before_bad_step["weights"])
    assert len(calls) == 1  # tried once, not on every step


class FrozenWithNaN(PlantNaN):
    """On ``bad_step`` the chosen layers are frozen, yet their weights hold a NaN gradient (set by hand)."""

    def on_after_backward(self):
        if self.global_step == self.bad_step:
            for layer in self.bad_layers:
                weight = self.get_submodule(layer).weight
                weight.requires_grad_(False)
                weight.grad = torch.full_like(weight, math.nan)


@pytest.mark.parametrize("log_every_n_steps", [1, 50])
def test_a_frozen_parameter_that_still_has_a_gradient_is_checked_as_the_optimizer_applies_it(log_every_n_steps):
    model = FrozenWithNaN(step=2, layers=("net.0",))
    monitor = GradientMonitor(log_every_n_steps=log_every_n_steps)
    trainer = tiny_trainer(max_steps=10, callbacks=[monitor])
    match = rf"^At optimizer step 2, 1 parameter has non-finite gradients: net.0.weight\. {BACKWARD} Stopped"
    with pytest.warns(UserWarning, match=match):
        trainer.fit(model, tiny_loader(samples=80))
    assert trainer.global_step == 3
    assert_same(model.state_dict(), model.before_bad_step["weights"])


class SparseEmbedding(L.LightningModule):
    """``Embedding(10, 4, sparse=True) -> Linear(4, 1)``; a NaN in the embedding's gradient on ``bad_step``."""

    def __init__(self, bad_step: int) -> None:
        super().__init__()
        self.embedding = nn.Embedding(10, 4, sparse=True)
        self.head = nn.Linear(4, 1)
        self.bad_step = bad_step

    def training_step(self, batch, batch_idx):
        x, y = batch
        tokens = (x[:, :2].abs() * 3).long() % 10  # two tokens a sample, repeated within a batch
        return nn.functional.mse_loss(self.head(self.embedding(tokens).mean(1)), y)

    def on_after_backward(self):
        if self.global_step == self.bad_step:
            grad = self.embedding.weight.grad
            self.embedding.weight.grad = torch.sparse_coo_tensor(
                grad._indices(), grad._values() * math.nan, grad.shape, check_invariants=True
            )

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.1)


class DenseNormRecorder(NormRecorder):
    def on_before_optimizer_step(self, trainer, pl_module, optimizer):
        grad = pl_module.embedding.weight.grad  # None once the monitor dropped the step
        if grad is not None:
            self.expected[trainer.global_step] = {"grad_norm/embedding": float(grad.to_dense().norm())}


@pytest.mark.parametrize("log_every_n_steps", [1, 50])
def test_sparse_gradients_are_measured_and_checked(log_every_n_steps):
    logger, recorder = MemoryLogger(), DenseNormRecorder()
    monitor = GradientMonitor(log_every_n_steps=log_every_n_steps)
    trainer = tiny_trainer(max_steps=10, logger=logger, callbacks=[monitor, recorder])
    match = r"^At optimizer step 3, 1 parameter has non-finite gradients: embedding.weight\."
    with pytest.warns(UserWarning, match=match):
        trainer.fit(SparseEmbedding(bad_step=3), tiny_loader(samples=80))
    assert trainer.global_step == 4 and monitor.skipped_steps == 1
    logged = logger.steps_with("grad_norm/embedding")
    assert logged == ([0, 1, 2, 3] if log_every_n_steps == 1 else [0])
    finite = [recorder.expected[step]["grad_norm/embedding"] for step in logged if step < 3]
    assert logger.values("grad_norm/embedding")[: len(finite)] == pytest.approx(finite)


def test_skip_on_device_must_be_a_bool_or_none():
    with pytest.raises(TypeError, match=r"`skip_on_device` must be a bool or None, got 'yes'"):
        GradientMonitor(skip_on_device="yes")


class FusedDeep(Deep):
    def configure_optimizers(self):
        return torch.optim.AdamW(self.parameters(), lr=0.01, fused=True)


def test_device_skip_names_the_parameters_and_the_forward_problem():
    monitor = GradientMonitor(log_every_n_steps=4, on_nonfinite="skip", skip_on_device=True)
    trainer = tiny_trainer(max_steps=6, callbacks=[monitor])
    match = rf"^1 non-finite gradient step\(s\) up to optimizer step 4; 6 parameters have .* and 1 more\. {FORWARD}"
    with pytest.warns(UserWarning, match=match):
        trainer.fit(FusedDeep(), loader_with_nan(batch=1))
    assert monitor.skipped_steps == 1


class SaveMonitorState(L.Callback):
    def __init__(self, monitor: GradientMonitor, step: int) -> None:
        self.monitor, self.step, self.state = monitor, step, None

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        if trainer.global_step == self.step:
            self.state = copy.deepcopy(self.monitor.state_dict())


def test_device_drops_not_yet_reported_survive_a_checkpoint():
    monitor = GradientMonitor(log_every_n_steps=10, on_nonfinite="skip", skip_on_device=True)
    saver = SaveMonitorState(monitor, step=3)
    tiny_trainer(max_steps=4, callbacks=[monitor, saver]).fit(FusedPlantNaN(step=1, layers=("net.2",)), tiny_loader())
    pending = {"steps": 1, "loss_seen": 1, "loss_nonfinite": 0, "parameters": ("net.2.weight",)}
    assert saver.state["pending"] == pending and saver.state["skipped_steps"] == 0

    resumed = GradientMonitor(on_nonfinite="skip")
    resumed.load_state_dict(saver.state)
    assert resumed.state_dict()["pending"] == pending
    with pytest.warns(UserWarning, match=rf"^1 non-finite gradient step\(s\) up to optimizer step 1; {NET_2} {BACKWARD}"):
        tiny_trainer(max_steps=2, callbacks=[resumed]).fit(TinyModule(), tiny_loader())
    assert resumed.skipped_steps == 1
    assert resumed.state_dict()["pending"] == {"steps": 0, "loss_seen": 0, "loss_nonfinite": 0, "parameters": ()}


def test_a_pending_count_from_before_parameters_were_named_loads():
    monitor = GradientMonitor()
    monitor.load_state_dict({"pending": [2.0, 1.0]})  # [steps, first bad layer + 1]
    assert monitor.state_dict()["pending"] == {"steps": 2, "loss_seen": 0, "loss_nonfinite": 0, "parameters": ()}


class FusedGrowing(FusedPlantNaN):
    """A NaN in ``net.2``'s gradient at step 1, then a new layer joins the optimizer at step 2."""

    def __init__(self) -> None:
        super().__init__(step=1, layers=("net.2",))
        self.late = nn.Linear(4, 1)

    def configure_optimizers(self):
        return torch.optim.AdamW(self.net.parameters(), lr=0.01, fused=True)

    def training_step(self, batch, batch_idx):
        optimizer = self.trainer.optimizers[0]
        if self.global_step == 2 and len(optimizer.param_groups) == 1:
            optimizer.add_param_group({"params": list(self.late.parameters())})
        return super().training_step(batch, batch_idx) + self.late(batch[0]).mean()


def test_device_drops_are_reported_before_the_parameters_change():
    monitor = GradientMonitor(log_every_n_steps=10, on_nonfinite="skip", skip_on_device=True)
    with pytest.warns(UserWarning, match=rf"^1 non-finite gradient step\(s\) up to optimizer step 1; {NET_2}"):
        tiny_trainer(max_steps=4, callbacks=[monitor]).fit(FusedGrowing(), tiny_loader())
    assert monitor.skipped_steps == 1


def test_double_precision_gradients_are_measured_in_double():
    """``precision="64-true"`` gives float64 gradients, which a float32 norm would have to narrow."""
    monitor = GradientMonitor(log_every_n_steps=1)
    logger = MemoryLogger()
    trainer = tiny_trainer(max_steps=2, precision="64-true", logger=logger, callbacks=[monitor])
    trainer.fit(TinyModule(), tiny_loader())
    assert [step for step, metrics in logger.records if "grad_norm/total" in metrics] == [0, 1]
    assert all(math.isfinite(value) for value in monitor.last_metrics.values())


class NaNOnSteps(TinyModule):
    """TinyModule whose ``net.2.weight`` gradient holds a NaN on the chosen optimizer steps (every one for ``None``)."""

    def __init__(self, steps=None, optimizer: str = "sgd") -> None:
        super().__init__(optimizer=optimizer)
        self.bad_steps = steps

    def on_after_backward(self):
        if self.bad_steps is None or self.global_step in self.bad_steps:
            self.net[2].weight.grad[0, 0] = float("nan")


class FusedNaNOnSteps(NaNOnSteps):
    def configure_optimizers(self):
        return torch.optim.AdamW(self.parameters(), lr=0.01, fused=True)


def cap_message(skipped: int, steps: int, fraction: float) -> str:
    return (
        rf"^{skipped} of the {steps} optimizer steps so far \({round(100 * skipped / steps)}%\) were skipped for"
        rf" non-finite gradients, more than max_skipped_fraction={fraction}\. Stopped training\. Lower the learning"
        r" rate, clip gradients"
    )


@pytest.mark.parametrize(("fraction", "steps"), [(0.25, 4), (0.3, 4), (0.1, 10), (1 / 3, 3)])
def test_skipping_every_step_stops_after_ceil_one_over_the_fraction_steps(fraction, steps):
    monitor = GradientMonitor(on_nonfinite="skip", max_skipped_fraction=fraction)
    trainer = tiny_trainer(max_steps=20, callbacks=[monitor])
    with pytest.warns(UserWarning, match=cap_message(steps, steps, fraction)):
        trainer.fit(NaNOnSteps(), tiny_loader(samples=160))
    assert trainer.global_step == steps and trainer.should_stop
    assert monitor.skipped_steps == steps
    assert monitor.stopped_reason == "too_many_skipped_steps"
    assert monitor.stop_message.startswith(f"{steps} of the {steps} optimizer steps so far")
    assert monitor.state_dict()["stopped_reason"] == "too_many_skipped_steps"


def test_an_early_burst_of_skips_stops_once_enough_steps_ran():
    monitor = GradientMonitor(on_nonfinite="skip", max_skipped_fraction=0.25)
    trainer = tiny_trainer(max_steps=20, callbacks=[monitor])
    with pytest.warns(UserWarning, match=cap_message(3, 4, 0.25)):
        trainer.fit(NaNOnSteps(steps={0, 1, 2}), tiny_loader(samples=160))
    assert trainer.global_step == 4  # step 3 was clean; it is the first step the fraction is checked at
    assert monitor.stopped_reason == "too_many_skipped_steps"


def test_skips_up_to_the_fraction_train_on():
    monitor = GradientMonitor(on_nonfinite="skip", max_skipped_fraction=0.2)
    trainer = tiny_trainer(max_steps=20, callbacks=[monitor])
    with pytest.warns(UserWarning, match=r"Skipped this optimizer step \(2 skipped so far\)"):
        trainer.fit(NaNOnSteps(steps={2, 9}), tiny_loader(samples=160))  # 1 of 5 and 2 of 10: at the cap, not above
    assert trainer.global_step == 20 and not trainer.should_stop
    assert monitor.skipped_steps == 2 and monitor.stopped_reason is None


@pytest.mark.parametrize(("on_nonfinite", "fraction"), [("skip", None), ("warn", 0.25)])
def test_the_cap_is_off_with_none_and_applies_only_to_skip(on_nonfinite, fraction):
    monitor = GradientMonitor(on_nonfinite=on_nonfinite, max_skipped_fraction=fraction)
    trainer = tiny_trainer(max_steps=8, callbacks=[monitor])
    with pytest.warns(UserWarning, match="non-finite gradients"):
        trainer.fit(NaNOnSteps(), tiny_loader(samples=64))
    assert trainer.global_step == 8 and not trainer.should_stop
    assert monitor.stopped_reason is None
    assert monitor.skipped_steps == (8 if on_nonfinite == "skip" else 0)


@pytest.mark.parametrize(("log_every_n_steps", "trainers", "stopped_at"), [(4, 1, 5), (None, 0, 2)])
def test_device_skip_applies_the_cap_at_the_step_that_reads_the_counts(log_every_n_steps, trainers, stopped_at):
    monitor = GradientMonitor(
        log_every_n_steps=log_every_n_steps, on_nonfinite="skip", skip_on_device=True, max_skipped_fraction=0.5
    )
    trainer = tiny_trainer(max_steps=12, log_every_n_steps=trainers, callbacks=[monitor])
    with pytest.warns(UserWarning, match=cap_message(stopped_at, stopped_at, 0.5)):
        trainer.fit(FusedNaNOnSteps(), tiny_loader(samples=96))
    # the cap is checked from step 1 on (ceil(1 / 0.5) = 2 steps), here at the first read after it
    assert trainer.global_step == stopped_at and monitor.skipped_steps == stopped_at
    assert monitor.stopped_reason == "too_many_skipped_steps"


def test_device_skip_applies_the_cap_to_drops_read_at_the_end_of_training():
    monitor = GradientMonitor(log_every_n_steps=10, on_nonfinite="skip", skip_on_device=True, max_skipped_fraction=0.5)
    trainer = tiny_trainer(max_steps=6, callbacks=[monitor])
    with pytest.warns(UserWarning, match=cap_message(4, 6, 0.5)):
        trainer.fit(FusedNaNOnSteps(steps={2, 3, 4, 5}), tiny_loader(samples=48))
    assert trainer.global_step == 6 and monitor.stopped_reason == "too_many_skipped_steps"


def test_the_skip_count_and_the_step_survive_resume(tmp_path):
    first = GradientMonitor(on_nonfinite="skip", max_skipped_fraction=0.25)
    trainer = tiny_trainer(max_steps=3, callbacks=[first])
    with pytest.warns(UserWarning, match=r"Skipped this optimizer step \(2 skipped so far\)"):
        trainer.fit(NaNOnSteps(steps={0, 1}), tiny_loader(samples=160))
    assert first.stopped_reason is None  # 3 steps: too few for a fraction of 0.25
    trainer.save_checkpoint(tmp_path / "run.ckpt")

    resumed = GradientMonitor(on_nonfinite="skip", max_skipped_fraction=0.25)
    trainer = tiny_trainer(max_steps=20, max_epochs=5, callbacks=[resumed])  # saved after fit: epoch 0 counts as done
    with pytest.warns(UserWarning, match=cap_message(2, 4, 0.25)):
        trainer.fit(NaNOnSteps(steps={0, 1}), tiny_loader(samples=160), ckpt_path=tmp_path / "run.ckpt")
    assert trainer.global_step == 4 and resumed.stopped_reason == "too_many_skipped_steps"


def test_the_cap_is_left_out_of_the_state_key_and_old_stops_keep_their_reason():
    assert GradientMonitor(max_skipped_fraction=0.5).state_key == GradientMonitor(max_skipped_fraction=None).state_key
    monitor = GradientMonitor()
    monitor.load_state_dict({"stop_message": "At optimizer step 2, ..."})  # saved before stop reasons were
    assert monitor.stopped_reason == "non_finite_gradient"
    monitor.load_state_dict({"stop_message": "3 of the 4 ...", "stopped_reason": "too_many_skipped_steps"})
    assert monitor.stopped_reason == "too_many_skipped_steps"
    monitor.load_state_dict({})
    assert monitor.stopped_reason is None
