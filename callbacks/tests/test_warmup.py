"""Warmup: argument checks, the factor formulas, and the LR of every step against pure PyTorch."""

from __future__ import annotations

import math
from typing import Any, Callable

import lightning.pytorch as L
import pytest
import torch
from _tiny import MemoryLogger, tiny_loader, tiny_trainer
from lightning.pytorch.callbacks import LearningRateMonitor
from lightning.pytorch.plugins import MixedPrecision
from torch import nn
from torch.optim import lr_scheduler as sched

from lit_callbacks import LRFinder, Warmup


LR = 0.1
BATCHES_PER_EPOCH = 3
EPOCHS = 4
TOTAL = BATCHES_PER_EPOCH * EPOCHS  # 12 optimizer steps
WARMUP = 5
# One value of the monitored metric per optimizer step: improves, then stalls (ReduceLROnPlateau reacts).
METRIC = [1.0, 0.9, 0.9, 0.9, 0.8, 0.8, 0.8, 0.8, 0.7, 0.7, 0.7, 0.7]

SCHEDULERS: dict[str, Callable[[torch.optim.Optimizer], Any] | None] = {
    "none": None,
    "StepLR": lambda opt: sched.StepLR(opt, step_size=3, gamma=0.5),
    "MultiStepLR": lambda opt: sched.MultiStepLR(opt, milestones=[2, 5, 7], gamma=0.5),
    "ExponentialLR": lambda opt: sched.ExponentialLR(opt, gamma=0.8),
    "CosineAnnealingLR": lambda opt: sched.CosineAnnealingLR(opt, T_max=TOTAL),
    "CosineAnnealingWarmRestarts": lambda opt: sched.CosineAnnealingWarmRestarts(opt, T_0=4),
    "ReduceLROnPlateau": lambda opt: sched.ReduceLROnPlateau(opt, factor=0.5, patience=0),
    "OneCycleLR": lambda opt: sched.OneCycleLR(opt, max_lr=LR, total_steps=TOTAL + 1),
    "CyclicLR": lambda opt: sched.CyclicLR(opt, base_lr=LR / 10, max_lr=LR, step_size_up=3),
    "LinearLR": lambda opt: sched.LinearLR(opt, start_factor=0.5, total_iters=6),
    "LambdaLR": lambda opt: sched.LambdaLR(opt, lambda epoch: 1.0 / (1.0 + epoch)),
}


class Recorder(L.LightningModule):
    """Records the LR of every optimizer update (an optimizer post-step hook registered before any callback's)."""

    def __init__(self, scheduler: str = "none", interval: str = "step", automatic: bool = True) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.net = nn.Linear(4, 1)
        self.scheduler = scheduler
        self.interval = interval
        self.automatic_optimization = automatic
        self.lrs: list[float] = []

    def training_step(self, batch: Any, batch_idx: int) -> torch.Tensor:
        x, y = batch
        loss = nn.functional.mse_loss(self.net(x), y)
        self.log("metric", METRIC[min(self.global_step, len(METRIC) - 1)])
        if not self.automatic_optimization:
            optimizer = self.optimizers()
            optimizer.zero_grad()
            self.manual_backward(loss)
            optimizer.step()
            scheduler = self.lr_schedulers()
            if scheduler is not None:
                scheduler.step()
        return loss

    def configure_optimizers(self) -> Any:
        optimizer = torch.optim.SGD(self.parameters(), lr=LR, momentum=0.9)
        optimizer.register_step_post_hook(lambda opt, args, kwargs: self.lrs.append(opt.param_groups[0]["lr"]))
        factory = SCHEDULERS[self.scheduler]
        if factory is None:
            return optimizer
        config = {"scheduler": factory(optimizer), "interval": self.interval, "monitor": "metric"}
        return {"optimizer": optimizer, "lr_scheduler": config}


def pytorch_curve(scheduler: str, interval: str, steps: int = TOTAL, epoch_len: int = BATCHES_PER_EPOCH) -> list[float]:
    """The LR of each optimizer step with the scheduler alone, stepped by hand as Lightning does."""
    optimizer = torch.optim.SGD([nn.Parameter(torch.zeros(1))], lr=LR, momentum=0.9)
    factory = SCHEDULERS[scheduler]
    scheduler_ = factory(optimizer) if factory is not None else None
    lrs = []
    for step in range(steps):
        lrs.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        if scheduler_ is None or (interval == "epoch" and (step + 1) % epoch_len != 0):
            continue
        if isinstance(scheduler_, sched.ReduceLROnPlateau):
            scheduler_.step(METRIC[step])
        else:
            scheduler_.step()
    return lrs


def fit(module: L.LightningModule, callbacks: list, **kwargs: Any) -> L.Trainer:
    options = {"max_epochs": EPOCHS, "log_every_n_steps": 1, "callbacks": callbacks}
    options.update(kwargs)
    trainer = tiny_trainer(**options)
    trainer.fit(module, tiny_loader(samples=BATCHES_PER_EPOCH * 8 * options.get("accumulate_grad_batches", 1)))
    return trainer


# ---------------------------------------------------------------- arguments


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({}, ValueError, r"Give exactly one of `steps` and `ratio`, got steps=None, ratio=None"),
        ({"steps": 10, "ratio": 0.1}, ValueError, r"Give exactly one of `steps` and `ratio`, got steps=10, ratio=0.1"),
        ({"steps": 0}, ValueError, r"`steps` must be an int >= 1, got 0"),
        ({"steps": 2.5}, TypeError, r"`steps` must be an int, got 2.5"),
        ({"steps": True}, TypeError, r"`steps` must be an int, got True"),
        ({"ratio": 0.0}, ValueError, r"`ratio` must be > 0.0, got 0.0"),
        ({"ratio": 1.0}, ValueError, r"`ratio` must be < 1, got 1.0"),
        ({"ratio": "5%"}, TypeError, r"`ratio` must be a number, got '5%'"),
        ({"steps": 5, "start_factor": -0.1}, ValueError, r"`start_factor` must be >= 0.0, got -0.1"),
        ({"steps": 5, "start_factor": 1.5}, ValueError, r"`start_factor` must be <= 1, got 1.5"),
        (
            {"steps": 5, "mode": "lin"},
            ValueError,
            r"`mode` must be one of \('cosine', 'exponential', 'linear'\), got 'lin'",
        ),
        ({"steps": 5, "mode": "exponential"}, ValueError, r"`start_factor` must be > 0 with mode='exponential', got 0.0"),
    ],
)
def test_invalid_arguments_are_rejected(kwargs, error, match):
    with pytest.raises(error, match=match):
        Warmup(**kwargs)


def test_modes_constant_is_sorted_and_feeds_the_message():
    assert Warmup.MODES == tuple(sorted(Warmup.MODES))


# ---------------------------------------------------------------- formulas


def test_linear_factor_starts_at_start_factor_and_reaches_one_at_steps():
    warmup = Warmup(steps=4, start_factor=0.2)
    assert [warmup.factor(k, 4) for k in range(6)] == [0.2, 0.2 + 0.8 * 1 / 4, 0.2 + 0.8 * 2 / 4, 0.2 + 0.8 * 3 / 4, 1.0, 1.0]
    assert [Warmup(steps=4).factor(k, 4) for k in range(5)] == [0.0, 0.25, 0.5, 0.75, 1.0]


def test_cosine_and_exponential_factors_follow_their_formulas():
    cosine = Warmup(steps=4, start_factor=0.1, mode="cosine")
    assert [cosine.factor(k, 4) for k in range(5)] == [
        0.1 + 0.9 * (1 - math.cos(math.pi * k / 4)) / 2 for k in range(4)
    ] + [1.0]
    exponential = Warmup(steps=2, start_factor=0.01, mode="exponential")
    assert [exponential.factor(k, 2) for k in range(3)] == [0.01, 0.01**0.5, 1.0]


def test_ratio_resolves_against_the_run_length():
    assert Warmup(ratio=0.1).resolve_steps(95) == 10  # round(9.5)
    assert Warmup(ratio=0.001).resolve_steps(100) == 1  # never zero
    assert Warmup(steps=7).resolve_steps(math.inf) == 7
    with pytest.raises(ValueError, match=r"Warmup\(ratio=\.\.\.\) needs a run of known length"):
        Warmup(ratio=0.1).resolve_steps(math.inf)


def test_warmup_not_shorter_than_the_run_is_rejected_at_fit_start():
    with pytest.raises(
        ValueError,
        match=r"Warmup of 12 optimizer steps is not shorter than the run's 12 optimizer steps "
        r"\(trainer.estimated_stepping_batches\). Lower `steps`/`ratio`, or train longer",
    ):
        fit(Recorder(), [Warmup(steps=TOTAL)])


# ---------------------------------------------------------------- LR of every step


@pytest.mark.parametrize("interval", ["step", "epoch"])
@pytest.mark.parametrize("scheduler", list(SCHEDULERS))
def test_lr_is_warmed_then_exactly_the_schedulers_own(scheduler, interval):
    warmup = Warmup(steps=WARMUP, start_factor=0.1)
    module = Recorder(scheduler, interval)
    fit(module, [warmup])
    reference = pytorch_curve(scheduler, interval)
    assert len(module.lrs) == TOTAL
    assert module.lrs[:WARMUP] == [lr * warmup.factor(k, WARMUP) for k, lr in enumerate(reference[:WARMUP])]
    assert module.lrs[WARMUP:] == reference[WARMUP:]  # bitwise: the scheduler never saw a warmed LR
    assert module.lrs[0] == reference[0] * 0.1


def test_without_warmup_the_recorder_matches_pytorch():
    """The reference itself is right: with no callback, training follows the hand-stepped curve."""
    for scheduler, interval in [("ExponentialLR", "step"), ("ReduceLROnPlateau", "epoch"), ("ReduceLROnPlateau", "step")]:
        module = Recorder(scheduler, interval)
        fit(module, [])
        assert module.lrs == pytorch_curve(scheduler, interval)


def test_manual_optimization_is_warmed_too():
    warmup = Warmup(steps=WARMUP, mode="cosine")
    module = Recorder("ExponentialLR", automatic=False)
    fit(module, [warmup])
    reference = pytorch_curve("ExponentialLR", "step")
    assert module.lrs == [lr * warmup.factor(k, WARMUP) for k, lr in enumerate(reference)]


def test_gradient_accumulation_counts_optimizer_steps():
    warmup = Warmup(steps=WARMUP)
    module = Recorder("ExponentialLR")
    fit(module, [warmup], accumulate_grad_batches=2)
    reference = pytorch_curve("ExponentialLR", "step")
    assert len(module.lrs) == TOTAL  # 24 batches, 12 optimizer steps
    assert module.lrs == [lr * warmup.factor(k, WARMUP) for k, lr in enumerate(reference)]


class SkipsStep(Recorder):
    """Returns an infinite loss on optimizer step 2 so that the fp16 grad scaler skips that update."""

    def training_step(self, batch: Any, batch_idx: int) -> torch.Tensor:
        loss = super().training_step(batch, batch_idx)
        return loss * math.inf if self.global_step == 2 else loss


def test_a_skipped_update_leaves_the_scheduler_its_own_lr():
    """The fp16 grad scaler skips ``optimizer.step()`` on step 2; the scheduler still steps, from its own LR."""
    warmup = Warmup(steps=WARMUP, start_factor=0.1)
    module = SkipsStep("ExponentialLR")
    precision = MixedPrecision("16-mixed", "cpu", scaler=torch.amp.GradScaler("cpu", init_scale=1.0))
    fit(module, [warmup], plugins=[precision])
    reference = pytorch_curve("ExponentialLR", "step")
    warmed = [lr * warmup.factor(k, WARMUP) for k, lr in enumerate(reference)]
    assert module.lrs == warmed[:2] + warmed[3:]  # update 2 never happened; the scheduler still stepped


def test_learning_rate_monitor_listed_after_warmup_logs_the_warmed_lr():
    warmup = Warmup(steps=WARMUP, start_factor=0.1)
    logger = MemoryLogger()
    module = Recorder("StepLR")
    fit(module, [warmup, LearningRateMonitor(logging_interval="step")], logger=logger)
    assert logger.values("lr-SGD") == module.lrs


def test_learning_rate_monitor_listed_first_gets_a_warning():
    with pytest.warns(UserWarning, match="LearningRateMonitor comes before Warmup in `callbacks`"):
        fit(Recorder(), [LearningRateMonitor(), Warmup(steps=WARMUP)], logger=MemoryLogger())


@pytest.mark.parametrize("finder_first", [True, False])
def test_an_lr_range_test_is_not_warmed_and_its_suggestion_is(finder_first):
    finder = LRFinder(min_lr=1e-3, max_lr=1.0, num_training_steps=10, method="minimum", plot=False)
    warmup = Warmup(steps=WARMUP, start_factor=0.1)
    module = Recorder("ExponentialLR")
    fit(module, [finder, warmup] if finder_first else [warmup, finder])
    assert module.lrs[:10] == finder.lrs == finder.schedule()  # the test's own LRs, untouched by the warmup
    scale = finder.suggestion / LR
    expected = [lr * scale * warmup.factor(k, WARMUP) for k, lr in enumerate(pytorch_curve("ExponentialLR", "step"))]
    assert module.lrs[10:] == pytest.approx(expected, rel=1e-12)


# ---------------------------------------------------------------- checkpoints


class StopAt(L.Callback):
    def __init__(self, step: int, path: str) -> None:
        self.step, self.path = step, path

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        if trainer.global_step == self.step:
            trainer.save_checkpoint(self.path)
            trainer.should_stop = True


def test_resume_mid_warmup_gives_the_uninterrupted_lr_sequence(tmp_path):
    uninterrupted = Recorder("ExponentialLR")
    fit(uninterrupted, [Warmup(ratio=0.5, start_factor=0.1)])

    first = Recorder("ExponentialLR")
    fit(first, [Warmup(ratio=0.5, start_factor=0.1), StopAt(4, str(tmp_path / "mid.ckpt"))])
    resumed = Recorder("ExponentialLR")
    trainer = tiny_trainer(max_epochs=EPOCHS, callbacks=[Warmup(ratio=0.5, start_factor=0.1)])
    trainer.fit(resumed, tiny_loader(samples=BATCHES_PER_EPOCH * 8), ckpt_path=tmp_path / "mid.ckpt")

    assert len(first.lrs) == 4 and first.lrs + resumed.lrs == uninterrupted.lrs


def test_resumed_run_keeps_the_warmup_length_it_started_with(tmp_path):
    fit(Recorder(), [Warmup(ratio=0.5), StopAt(2, str(tmp_path / "mid.ckpt"))])  # 6 warmup steps of 12
    warmup = Warmup(ratio=0.5)
    trainer = tiny_trainer(max_epochs=2 * EPOCHS, callbacks=[warmup])  # now a 24-step run
    trainer.fit(Recorder(), tiny_loader(samples=BATCHES_PER_EPOCH * 8), ckpt_path=tmp_path / "mid.ckpt")
    assert warmup.num_steps == 6
    assert warmup.state_dict() == {"num_steps": 6}


def test_state_dict_reads_missing_keys_with_defaults():
    warmup = Warmup(steps=3)
    warmup.load_state_dict({})
    assert warmup.num_steps == 3


def test_state_key_tells_instances_apart():
    assert Warmup(steps=3).state_key != Warmup(steps=4).state_key
    assert Warmup(steps=3).state_key != Warmup(steps=3, mode="cosine").state_key
