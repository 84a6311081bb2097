"""LRFinder: argument checks, the suggestion on known curves and on real problems, exact restore, apply, resume, DDP."""

from __future__ import annotations

import functools
import inspect
import json
import logging
import math
import os
import subprocess
import sys
import textwrap
from typing import Any

import lightning.pytorch as L
import pytest
import torch
from _tiny import MemoryLogger, tiny_loader, tiny_trainer
from lightning.pytorch.callbacks import LearningRateFinder
from lightning.pytorch.plugins import MixedPrecision
from lightning.pytorch.utilities.exceptions import MisconfigurationException
from torch import nn
from torch.optim import lr_scheduler as sched
from torch.utils.data import DataLoader, TensorDataset

from test_warmup import BATCHES_PER_EPOCH, EPOCHS, LR, SCHEDULERS, Recorder, pytorch_curve

from lit_callbacks import LRFinder, lr_find
from lit_callbacks.lr_finder import apply_lr, suggest_lr


# ---------------------------------------------------------------- arguments


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"min_lr": 0.0}, ValueError, r"`min_lr` must be > 0.0, got 0.0"),
        ({"max_lr": "big"}, TypeError, r"`max_lr` must be a number, got 'big'"),
        ({"min_lr": 1.0, "max_lr": 0.1}, ValueError, r"`max_lr` must be above `min_lr`, got min_lr=1.0, max_lr=0.1"),
        ({"num_training_steps": 5}, ValueError, r"`num_training_steps` must be an int >= 10, got 5"),
        ({"num_training_steps": 50.0}, TypeError, r"`num_training_steps` must be an int, got 50.0"),
        ({"mode": "exp"}, ValueError, r"`mode` must be one of \('exponential', 'linear'\), got 'exp'"),
        ({"method": "fastest"}, ValueError, r"`method` must be one of \('minimum', 'steepest', 'valley'\), got 'fastest'"),
        ({"apply": 1}, TypeError, r"`apply` must be a bool, got 1"),
        ({"plot": "yes"}, TypeError, r"`plot` must be a bool, got 'yes'"),
        ({"smoothing": 1.0}, ValueError, r"`smoothing` must be < 1, got 1.0"),
        ({"smoothing": -0.5}, ValueError, r"`smoothing` must be >= 0.0, got -0.5"),
        ({"early_stop_threshold": 1.0}, ValueError, r"`early_stop_threshold` must be > 1.0, got 1.0"),
    ],
)
def test_invalid_arguments_are_rejected(kwargs, error, match):
    with pytest.raises(error, match=match):
        LRFinder(**kwargs)


@pytest.mark.parametrize(
    ("old", "new", "value"),
    [("num_steps", "num_training_steps", 20), ("divergence_threshold", "early_stop_threshold", None)],
)
def test_old_argument_names_still_work_for_a_release_with_a_deprecation_warning(old, new, value):
    match = rf"LRFinder: `{old}` is deprecated and goes in the next release; use `{new}`"
    with pytest.warns(DeprecationWarning, match=match) as caught:
        finder = LRFinder(**{old: value})
    assert caught[0].filename == __file__  # points at the caller
    assert getattr(finder, new) == value
    with pytest.warns(DeprecationWarning, match=match):
        assert getattr(finder, old) == value
    with pytest.warns(DeprecationWarning, match=match):
        setattr(finder, old, 30)
    assert getattr(finder, new) == 30


@pytest.mark.parametrize(
    ("args", "kwargs"),
    [((), {"num_training_steps": 100, "num_steps": 50}), ((1e-7, 10.0, 100), {"num_steps": 50})],
    ids=["keyword", "positional"],
)
def test_an_old_name_and_its_new_name_together_are_an_error(args, kwargs):
    match = (
        r"LRFinder got both `num_steps` and `num_training_steps`; `num_steps` is the deprecated name of"
        r" `num_training_steps`: pass only `num_training_steps`"
    )
    with pytest.raises(TypeError, match=match):
        LRFinder(*args, **kwargs)


def test_arguments_lightnings_finder_also_has_carry_its_names():
    lightnings = set(inspect.signature(LearningRateFinder).parameters) - {"update_attr", "attr_name"}
    assert lightnings == {"min_lr", "max_lr", "num_training_steps", "mode", "early_stop_threshold"}
    assert lightnings <= set(inspect.signature(LRFinder).parameters)


def test_state_key_keeps_the_old_name_so_older_checkpoints_restore():
    assert LRFinder().state_key == (
        "LRFinder{'min_lr': 1e-07, 'max_lr': 10.0, 'num_steps': 100, 'mode': 'exponential', 'method': 'steepest'}"
    )


def test_suggest_lr_rejects_bad_input():
    with pytest.raises(ValueError, match=r"`method` must be one of \('minimum', 'steepest', 'valley'\), got 'max'"):
        suggest_lr([1.0, 2.0], [1.0, 1.0], "max")
    with pytest.raises(ValueError, match=r"`lrs` and `losses` must have the same length, got 2 and 1"):
        suggest_lr([1.0, 2.0], [1.0])


def test_schedule_ramps_from_min_lr_to_max_lr():
    exponential = LRFinder(min_lr=1e-4, max_lr=1.0, num_training_steps=10).schedule()
    assert exponential[0] == 1e-4 and exponential[-1] == pytest.approx(1.0, rel=1e-12) and len(exponential) == 10
    assert all(b / a == pytest.approx(10 ** (4 / 9)) for a, b in zip(exponential, exponential[1:]))
    assert LRFinder(min_lr=0.1, max_lr=1.0, num_training_steps=10, mode="linear").schedule() == pytest.approx(
        [0.1 + 0.1 * i for i in range(10)]
    )


# ---------------------------------------------------------------- the suggestion on known curves

LRS = LRFinder().schedule()  # 100 LRs, 1e-7 .. 10, 12.4 points per decade


def flat_noisy_descent_blowup(noise: float = 0.02, seed: int = 0) -> list[float]:
    """Flat at 2.3 (+- noise) up to 1e-4, a smooth fall to 0.3 centred on 1e-2 (index 62), blow-up past 1."""
    generator = torch.Generator().manual_seed(seed)
    curve = []
    for i, lr in enumerate(LRS):
        x = math.log10(lr)
        loss = 0.3 + 2.0 / (1.0 + math.exp(3.0 * (x + 2.0)))
        if lr > 1.0:
            loss += math.exp(4.0 * x) - 1.0
        curve.append(loss + noise * float(torch.randn((), generator=generator)))
    return curve


def adjacent_point_steepest(lrs: list[float], losses: list[float], skip_begin: int = 10) -> int:
    """The naive rule: steepest gradient between adjacent points, w.r.t. the LR itself."""
    gradients = torch.gradient(torch.tensor(losses[skip_begin:-1]), spacing=[torch.tensor(lrs[skip_begin:-1])])[0]
    return skip_begin + int(gradients.argmin())


@pytest.mark.parametrize("seed", [0, 1, 2, 3])
def test_steepest_lands_in_the_descent_not_in_the_flat_noisy_start(seed):
    curve = flat_noisy_descent_blowup(seed=seed)
    lr, index = suggest_lr(LRS, curve, "steepest")
    assert 55 <= index <= 62, index  # 2.8e-3 .. 1e-2: the steep part of the fall, up to its centre (62)
    assert lr == LRS[index]
    assert adjacent_point_steepest(LRS, curve) < 38  # the same curve fools the naive rule into the flat start


def _index_of(lr: float) -> float:
    """Where ``lr`` falls among LRS, as a fractional index (LRS is evenly spaced in log(lr))."""
    return (math.log(lr) - math.log(LRS[0])) / (math.log(LRS[-1]) - math.log(LRS[0])) * (len(LRS) - 1)


def _steepest_expected(curve: list[float]) -> int:
    """The steepest window's start on the noise-free sigmoid, from the documented rule and the curve's shape.

    The sigmoid is symmetric in log(lr) about its centre, 1e-2, so among windows of ``w``
    points the steepest fall is the one centred there: it starts ``w / 2`` points before 1e-2.
    ``w`` is a quarter of the searched stretch (its start: the last point above
    ``min + 0.9 * (start - min)``; its end: the minimum), at most one decade of points.
    """
    finite = curve[: next((i for i, v in enumerate(curve) if not math.isfinite(v)), len(curve))]
    lowest = min(range(len(finite)), key=finite.__getitem__)
    start = sorted(curve[:10])[5]
    begin = max(i for i in range(lowest + 1) if curve[i] >= curve[lowest] + 0.9 * (start - curve[lowest]))
    window = min((lowest - begin) // 4, int(_index_of(10.0) / math.log10(10.0 / 1e-7)))
    return round(_index_of(1e-2) - window / 2)


def test_suggestions_on_a_noise_free_curve_are_pinned():
    curve = flat_noisy_descent_blowup(noise=0.0)
    assert _steepest_expected(curve) == 58  # a window of 8 points (the stretch: 52 .. 86), centred on 61.9
    assert suggest_lr(LRS, curve, "steepest") == (LRS[58], 58)
    # valley follows the longest strictly falling run; without noise the sigmoid's tail falls from index 0 on
    assert suggest_lr(LRS, curve, "valley") == (LRS[42], 42)
    lowest = min(range(len(curve)), key=curve.__getitem__)
    assert lowest == 86
    assert suggest_lr(LRS, curve, "minimum") == (LRS[86] / 10, 74)


def test_curve_is_cut_at_the_first_non_finite_loss():
    curve = flat_noisy_descent_blowup(noise=0.0)
    cut = curve[:70] + [math.nan] + [0.0] * 29  # the zeros after the NaN must not count as a minimum
    assert suggest_lr(LRS, cut, "minimum") == (LRS[69] / 10, 57)
    # The stretch ends at the last finite point (69): a window of 4 points (52 .. 69), centred on 61.9.
    assert _steepest_expected(cut) == 60
    assert suggest_lr(LRS, cut, "steepest") == (LRS[60], 60)


def test_no_descent_gives_no_suggestion():
    rising = [1.0 + 0.01 * i for i in range(len(LRS))]
    assert suggest_lr(LRS, rising, "steepest") is None
    assert suggest_lr(LRS, rising, "valley") is None
    assert suggest_lr(LRS[:2], [1.0, 0.5]) is None


# ---------------------------------------------------------------- scripted range tests


class Scripted(L.LightningModule):
    """Its loss is ``curve[i]`` on the i-th call of ``training_step``, whatever the LR."""

    def __init__(self, curve: list[float], lr: float = 0.5) -> None:
        super().__init__()
        self.w = nn.Parameter(torch.zeros(1))
        self.curve, self.lr, self.calls = curve, lr, 0

    def training_step(self, batch: Any, batch_idx: int) -> torch.Tensor:
        self.calls += 1
        return torch.tensor(self.curve[min(self.calls - 1, len(self.curve) - 1)]) + 0.0 * self.w.sum()

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return torch.optim.SGD(self.parameters(), lr=self.lr)


def data(samples: int = 64, batch_size: int = 8, seed: int = 0, loader: str = "global-rng") -> DataLoader:
    """Shuffled blobs; the shuffling draws from the global RNG, or from the loader's own generator, or
    happens in a persistent worker process."""
    x, y = blobs(samples, seed=seed)
    kwargs: dict[str, Any] = {"batch_size": batch_size, "shuffle": True}
    if loader == "loader-generator":
        kwargs["generator"] = torch.Generator().manual_seed(seed)
    if loader == "persistent-workers":
        kwargs.update(num_workers=1, persistent_workers=True)
    return DataLoader(TensorDataset(x, y), **kwargs)


def test_scripted_curve_gives_the_pinned_suggestion_and_it_is_applied(caplog):
    curve = flat_noisy_descent_blowup(noise=0.0)
    finder = LRFinder(smoothing=0.0, early_stop_threshold=None, plot=False)
    module = Scripted(curve)
    with caplog.at_level(logging.INFO):
        tiny_trainer(max_steps=1, callbacks=[finder]).fit(module, data())
    assert finder.lrs == LRS
    assert finder.losses == pytest.approx(curve, rel=1e-6)  # float32 losses, no smoothing
    assert finder.suggestion == LRS[58]
    assert f"LRFinder: suggested lr = {LRS[58]:.4g} (method='steepest', 100 steps" in caplog.text
    assert module.trainer.optimizers[0].param_groups[0]["lr"] == LRS[58]
    assert module.calls == 101  # 100 test steps, then one real one


def test_divergence_stops_the_test_and_no_descent_keeps_the_lr():
    curve = [1.0] * 50 + [1000.0] * 50
    finder = LRFinder(plot=False)
    module = Scripted(curve, lr=0.5)
    with pytest.warns(UserWarning, match=r"LRFinder: no suggestion, the loss did not descend over the 51 recorded"):
        tiny_trainer(max_steps=1, callbacks=[finder]).fit(module, data())
    # the debiased EMA (0.98) of fifty 1.0s then 1000 is 32 > 4 x best: the test stops on step 50
    assert len(finder.lrs) == len(finder.losses) == 51
    assert finder.losses[:50] == pytest.approx([1.0] * 50) and finder.losses[50] == pytest.approx(32.07, abs=0.01)
    assert finder.suggestion is None
    assert module.trainer.optimizers[0].param_groups[0]["lr"] == 0.5


def test_non_finite_loss_stops_the_test():
    finder = LRFinder(plot=False)
    tiny_trainer(max_steps=1, callbacks=[finder]).fit(Scripted([1.0] * 30 + [math.inf] * 70), data())
    assert len(finder.lrs) == 30


# ---------------------------------------------------------------- restoring, applying, resuming


def blobs(samples: int, dim: int = 8, classes: int = 4, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Gaussian blobs: ``classes`` centres drawn N(0, 1.5^2), unit-variance points around them."""
    generator = torch.Generator().manual_seed(seed)
    centers = torch.randn(classes, dim, generator=generator) * 1.5
    y = torch.randint(0, classes, (samples,), generator=generator)
    return centers[y] + torch.randn(samples, dim, generator=generator), y


class Classifier(L.LightningModule):
    """8 -> 16 -> 4 MLP with batch norm and dropout; Adam built through ``functools.partial`` plus a StepLR."""

    def __init__(self, lr: float = 1e-3) -> None:
        super().__init__()
        self.net = nn.Sequential(nn.Linear(8, 16), nn.BatchNorm1d(16), nn.ReLU(), nn.Dropout(0.2), nn.Linear(16, 4))
        self.lr = lr
        self.lrs: list[float] = []
        self.calls = 0

    def training_step(self, batch: Any, batch_idx: int) -> torch.Tensor:
        self.calls += 1
        x, y = batch
        loss = nn.functional.cross_entropy(self.net(x), y)
        self.log("train_loss", loss, on_step=True, on_epoch=True)
        return loss

    def configure_optimizers(self) -> Any:
        optimizer = functools.partial(torch.optim.Adam, betas=(0.9, 0.99))(self.parameters(), lr=self.lr)
        optimizer.register_step_post_hook(lambda opt, args, kwargs: self.lrs.append(opt.param_groups[0]["lr"]))
        scheduler = functools.partial(sched.StepLR, step_size=3, gamma=0.5)(optimizer)
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "step"}}


def train(callbacks: list, loader: str = "global-rng", **kwargs: Any) -> tuple[Classifier, L.Trainer]:
    L.seed_everything(0, verbose=False)
    module = Classifier()
    trainer = tiny_trainer(max_epochs=2, callbacks=callbacks, **kwargs)
    trainer.fit(module, data(loader=loader))
    return module, trainer


class MetricsAtFirstEpoch(L.Callback):
    def __init__(self) -> None:
        self.metrics: dict | None = None

    def on_train_epoch_start(self, trainer, pl_module):
        if self.metrics is None:
            self.metrics = dict(trainer.callback_metrics)


@pytest.mark.parametrize("loader", ["global-rng", "loader-generator", "persistent-workers"])
def test_range_test_leaves_no_trace_on_training(loader):
    """Weights, batch-norm statistics, Adam state, scheduler, RNG, data order and metrics are put back exactly."""
    finder, probe_with, probe_without = LRFinder(num_training_steps=30, apply=False, plot=False), MetricsAtFirstEpoch(), MetricsAtFirstEpoch()
    with_finder, trainer_with = train([finder, probe_with], loader)
    without, trainer_without = train([probe_without], loader)
    assert len(finder.lrs) == 30 and finder.suggestion is not None
    assert probe_with.metrics == probe_without.metrics == {}  # nothing the test's `self.log` calls logged
    assert with_finder.calls == without.calls + 30
    for (name, got), want in zip(with_finder.state_dict().items(), without.state_dict().values()):
        assert torch.equal(got, want), name
    assert with_finder.lrs[:30] == finder.lrs  # the optimizer's updates: 30 test steps, then the real run
    assert with_finder.lrs[30:] == without.lrs
    assert trainer_with.callback_metrics["train_loss_epoch"] == trainer_without.callback_metrics["train_loss_epoch"]


def test_fp16_scaler_state_is_restored_and_accumulation_is_honoured():
    """Under an fp16 grad scaler the test's overflows back the scale off; the real run must not notice."""
    runs = []
    for callbacks in ([LRFinder(num_training_steps=20, apply=False, plot=False)], []):
        scaler = torch.amp.GradScaler("cpu", init_scale=2.0**16)
        module, _ = train(callbacks, plugins=[MixedPrecision("16-mixed", "cpu", scaler=scaler)], accumulate_grad_batches=2)
        runs.append((module, scaler.get_scale()))
    (with_finder, scale_with), (without, scale_without) = runs
    assert with_finder.calls == without.calls + 2 * 20  # each test step accumulates two batches
    assert scale_with == scale_without
    for (name, got), want in zip(with_finder.state_dict().items(), without.state_dict().values()):
        assert torch.equal(got, want), name


def test_suggestion_is_applied_to_a_partial_built_optimizer_and_its_scheduler():
    finder = LRFinder(num_training_steps=30, plot=False)
    module, trainer = train([finder])
    suggestion = finder.suggestion
    assert isinstance(suggestion, float) and 1e-7 <= suggestion <= 10.0
    optimizer = trainer.optimizers[0]
    assert optimizer.param_groups[0]["initial_lr"] == suggestion
    assert trainer.lr_scheduler_configs[0].scheduler.base_lrs == [suggestion]
    # after the test's updates, StepLR(step_size=3, gamma=0.5) from the suggestion: s, s, s, s/2, s/2, s/2, ...
    assert module.lrs[: len(finder.lrs)] == finder.lrs
    assert module.lrs[len(finder.lrs) :] == pytest.approx([suggestion * 0.5 ** (k // 3) for k in range(16)], rel=1e-12)


def curve_after(scheduler: Any, optimizer: torch.optim.Optimizer, steps: int = 12) -> list[float]:
    lrs = []
    for _ in range(steps):
        lrs.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        scheduler.step(1.0) if isinstance(scheduler, sched.ReduceLROnPlateau) else scheduler.step()
    return lrs


SUGGESTION = 0.02
APPLIED = {
    "OneCycleLR": (
        lambda opt, lr: sched.OneCycleLR(opt, max_lr=lr, total_steps=20),
        lambda opt: sched.OneCycleLR(opt, max_lr=SUGGESTION, total_steps=20),
    ),
    "CyclicLR": (
        lambda opt, lr: sched.CyclicLR(opt, base_lr=lr / 4, max_lr=lr, step_size_up=3),
        lambda opt: sched.CyclicLR(opt, base_lr=SUGGESTION / 4, max_lr=SUGGESTION, step_size_up=3),
    ),
    "LinearLR": (
        lambda opt, lr: sched.LinearLR(opt, start_factor=0.1, total_iters=5),
        lambda opt: sched.LinearLR(opt, start_factor=0.1, total_iters=5),
    ),
    "SequentialLR": (
        lambda opt, lr: sched.SequentialLR(
            opt, [sched.LinearLR(opt, 0.1, total_iters=3), sched.CosineAnnealingLR(opt, T_max=9)], milestones=[3]
        ),
        lambda opt: sched.SequentialLR(
            opt, [sched.LinearLR(opt, 0.1, total_iters=3), sched.CosineAnnealingLR(opt, T_max=9)], milestones=[3]
        ),
    ),
    "ReduceLROnPlateau": (
        lambda opt, lr: sched.ReduceLROnPlateau(opt, patience=1, factor=0.5),
        lambda opt: sched.ReduceLROnPlateau(opt, patience=1, factor=0.5),
    ),
}


@pytest.mark.parametrize("name", list(APPLIED))
def test_apply_lr_makes_the_scheduler_run_as_if_built_with_the_suggestion(name):
    build, reference = APPLIED[name]
    optimizer = torch.optim.SGD([nn.Parameter(torch.zeros(1))], lr=1e-3, momentum=0.9)
    scheduler = build(optimizer, 1e-3)
    apply_lr(optimizer, [scheduler], SUGGESTION)
    fresh = torch.optim.SGD([nn.Parameter(torch.zeros(1))], lr=SUGGESTION, momentum=0.9)
    assert curve_after(scheduler, optimizer) == pytest.approx(curve_after(reference(fresh), fresh), rel=1e-12)


@pytest.mark.parametrize("name", [name for name in SCHEDULERS if name != "none"])
def test_every_scheduler_family_trains_as_if_built_with_the_suggestion(name):
    # "minimum" always suggests something; LRs well above ReduceLROnPlateau's absolute `eps` of 1e-8
    finder = LRFinder(min_lr=1e-3, max_lr=1.0, num_training_steps=10, method="minimum", plot=False)
    module = Recorder(name, "step")
    tiny_trainer(max_epochs=EPOCHS, callbacks=[finder]).fit(module, tiny_loader(samples=BATCHES_PER_EPOCH * 8))
    scale = finder.suggestion / LR  # every LR these schedulers produce is proportional to the optimizer's LR
    assert module.lrs[10:] == pytest.approx([lr * scale for lr in pytorch_curve(name, "step")], rel=1e-9)


class CountSteps(L.Callback):
    def __init__(self) -> None:
        self.lr_at_start = None

    def on_train_start(self, trainer, pl_module):
        self.lr_at_start = trainer.optimizers[0].param_groups[0]["lr"]


def test_resumed_run_does_not_test_again_and_keeps_the_checkpoint_lr(tmp_path):
    finder = LRFinder(num_training_steps=30, plot=False)
    module, trainer = train([finder])
    trainer.save_checkpoint(tmp_path / "run.ckpt")
    saved_lr = trainer.optimizers[0].param_groups[0]["lr"]

    resumed_finder, probe = LRFinder(num_training_steps=30, plot=False), CountSteps()
    L.seed_everything(0, verbose=False)
    resumed = Classifier()
    trainer = tiny_trainer(max_epochs=3, callbacks=[resumed_finder, probe])
    trainer.fit(resumed, data(), ckpt_path=tmp_path / "run.ckpt")
    assert resumed.calls == 8  # one epoch of 8 batches, no range test
    assert resumed_finder.suggestion == finder.suggestion and resumed_finder.lrs == finder.lrs
    assert resumed_finder.state_dict() == finder.state_dict()
    assert probe.lr_at_start == saved_lr


def test_state_dict_reads_missing_keys_with_defaults():
    finder = LRFinder()
    finder.load_state_dict({"suggestion": 0.1})
    assert finder.state_dict() == {"done": False, "suggestion": 0.1, "lrs": [], "losses": []}


def test_state_key_tells_instances_apart():
    assert LRFinder().state_key != LRFinder(num_training_steps=50).state_key
    assert LRFinder().state_key != LRFinder(method="valley").state_key


# ---------------------------------------------------------------- plot, standalone use, errors


class FigureLogger(MemoryLogger):
    """A logger whose experiment takes figures, as TensorBoard's does."""

    def __init__(self, save_dir: str) -> None:
        super().__init__()
        self.figures: list[tuple[str, Any]] = []
        self._save_dir = save_dir

    @property
    def save_dir(self) -> str:
        return self._save_dir

    @property
    def experiment(self) -> Any:
        logger = self

        class Experiment:
            def add_figure(self, tag: str, figure: Any, global_step: int) -> None:
                logger.figures.append((tag, figure))

        return Experiment()


def test_plot_is_saved_into_the_run_directory_and_logged(tmp_path):
    pytest.importorskip("matplotlib")
    finder, logger = LRFinder(num_training_steps=20), FigureLogger(str(tmp_path / "run"))
    _, trainer = train([finder], logger=[logger, MemoryLogger()])
    assert finder.plot_path == os.path.join(str(tmp_path / "run"), "lr_finder.png")
    with open(finder.plot_path, "rb") as png:
        assert png.read(8) == b"\x89PNG\r\n\x1a\n"
    assert [tag for tag, _ in logger.figures] == ["lr_finder"]
    axes = logger.figures[0][1].axes[0]
    assert axes.get_xscale() == "log" and axes.lines[1].get_xdata()[0] == finder.suggestion


def test_lr_find_only_runs_the_range_test():
    L.seed_everything(0, verbose=False)
    module = Classifier()
    before = {name: tensor.clone() for name, tensor in module.state_dict().items()}
    trainer = tiny_trainer(max_epochs=2, num_sanity_val_steps=2)
    finder = lr_find(trainer, module, train_dataloaders=data(), num_training_steps=20, plot=False)
    assert len(finder.lrs) == 20 and finder.suggestion is not None
    assert trainer.global_step == 0 and module.calls == 20 and module.lrs == finder.lrs
    assert all(torch.equal(module.state_dict()[name], tensor) for name, tensor in before.items())
    assert finder not in trainer.callbacks and trainer.num_sanity_val_steps == 2


class Manual(Classifier):
    def __init__(self) -> None:
        super().__init__()
        self.automatic_optimization = False


class ReturnsNothing(Classifier):
    def training_step(self, batch: Any, batch_idx: int) -> None:
        super().training_step(batch, batch_idx)


@pytest.mark.parametrize(
    ("module", "match"),
    [
        (Manual, r"LRFinder drives the optimizer itself and needs automatic optimization, but `automatic_optimization` is False"),
        (ReturnsNothing, r"LRFinder needs `training_step` to return the loss as a Tensor or in a dict under 'loss', got NoneType"),
    ],
)
def test_unsupported_modules_get_a_clear_error(module, match):
    with pytest.raises(MisconfigurationException, match=match):
        tiny_trainer(max_steps=1, callbacks=[LRFinder(plot=False)]).fit(module(), data())


# ---------------------------------------------------------------- does the suggestion train well?


def load_problem(name: str) -> tuple[torch.Tensor, torch.Tensor, int, int, int]:
    """``(x, y, hidden, epochs, batch_size)``."""
    if name == "blobs":
        x, y = blobs(512)
        return x, y, 16, 3, 32
    datasets = pytest.importorskip("sklearn.datasets")
    digits = datasets.load_digits()
    return torch.tensor(digits.data, dtype=torch.float32) / 16.0, torch.tensor(digits.target), 0, 2, 64


def make_net(dim: int, classes: int, hidden: int) -> nn.Module:
    torch.manual_seed(0)
    if hidden:
        return nn.Sequential(nn.Linear(dim, hidden), nn.ReLU(), nn.Linear(hidden, classes))
    return nn.Linear(dim, classes)


def make_optimizer(name: str, params: Any, lr: float) -> torch.optim.Optimizer:
    return torch.optim.Adam(params, lr=lr) if name == "adam" else torch.optim.SGD(params, lr=lr, momentum=0.9)


def short_run_loss(problem: tuple, optimizer_name: str, lr: float) -> float:
    """Train from the same init on the same batches, return the loss on the whole training set."""
    x, y, hidden, epochs, batch_size = problem
    net = make_net(x.shape[1], int(y.max()) + 1, hidden)
    optimizer = make_optimizer(optimizer_name, net.parameters(), lr)
    generator = torch.Generator().manual_seed(1)
    for _ in range(epochs):
        order = torch.randperm(len(x), generator=generator)
        for start in range(0, len(x), batch_size):
            batch = order[start : start + batch_size]
            loss = nn.functional.cross_entropy(net(x[batch]), y[batch])
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
    with torch.no_grad():
        loss = nn.functional.cross_entropy(net(x), y).item()
    return loss if math.isfinite(loss) else math.inf


class NetModule(L.LightningModule):
    def __init__(self, net: nn.Module, optimizer_name: str) -> None:
        super().__init__()
        self.net, self.optimizer_name = net, optimizer_name

    def training_step(self, batch: Any, batch_idx: int) -> torch.Tensor:
        x, y = batch
        return nn.functional.cross_entropy(self.net(x), y)

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return make_optimizer(self.optimizer_name, self.parameters(), 1e-3)


@pytest.mark.parametrize("optimizer_name", ["adam", "sgd_momentum"])
@pytest.mark.parametrize("problem_name", ["blobs", "digits"])
def test_suggestion_trains_as_well_as_the_best_lr_of_a_grid(problem_name, optimizer_name):
    """Short runs over 11 LRs (1e-4 .. 10, half a decade apart) against one short run at the suggestion."""
    problem = load_problem(problem_name)
    x, y, hidden, _, batch_size = problem
    grid = [10 ** (-4 + k / 2) for k in range(11)]
    losses = [short_run_loss(problem, optimizer_name, lr) for lr in grid]
    best = min(range(len(grid)), key=losses.__getitem__)

    L.seed_everything(0, verbose=False)
    module = NetModule(make_net(x.shape[1], int(y.max()) + 1, hidden), optimizer_name)
    loader = DataLoader(TensorDataset(x, y), batch_size=batch_size, shuffle=True)
    finder = lr_find(tiny_trainer(), module, train_dataloaders=loader, plot=False)
    at_suggestion = short_run_loss(problem, optimizer_name, finder.suggestion)

    report = (
        f"grid best lr {grid[best]:.3g} (loss {losses[best]:.4f}), suggestion {finder.suggestion:.3g}"
        f" (loss {at_suggestion:.4f}); grid {[round(loss, 3) for loss in losses]}"
    )
    assert grid[best] / 10 <= finder.suggestion <= grid[best] * 10, report
    assert at_suggestion <= 2 * losses[best], report


# ---------------------------------------------------------------- DDP

DDP_SCRIPT = textwrap.dedent(
    """
    import json, sys
    import lightning.pytorch as L
    import torch
    from torch import nn
    from torch.utils.data import DataLoader, TensorDataset
    from lit_callbacks import LRFinder

    class Model(L.LightningModule):
        def __init__(self):
            super().__init__()
            self.net = nn.Sequential(nn.Linear(8, 16), nn.ReLU(), nn.Linear(16, 4))
            self.first_lr = None

        def on_train_batch_start(self, batch, batch_idx):  # not called during the range test
            if self.first_lr is None:
                self.first_lr = self.trainer.optimizers[0].param_groups[0]["lr"]

        def training_step(self, batch, batch_idx):
            x, y = batch
            return nn.functional.cross_entropy(self.net(x), y)

        def configure_optimizers(self):
            return torch.optim.Adam(self.parameters(), lr=1e-3)

    if __name__ == "__main__":
        out = sys.argv[1]
        L.seed_everything(0, verbose=False)
        g = torch.Generator().manual_seed(0)
        centers = torch.randn(4, 8, generator=g) * 1.5
        y = torch.randint(0, 4, (256,), generator=g)
        x = centers[y] + torch.randn(256, 8, generator=g)
        model = Model()
        initial = {k: v.tolist() for k, v in model.state_dict().items()}
        finder = LRFinder(num_training_steps=30, plot=False)
        trainer = L.Trainer(
            accelerator="cpu", devices=2, strategy="ddp", max_steps=2, logger=False, enable_checkpointing=False,
            enable_progress_bar=False, enable_model_summary=False, callbacks=[finder],
        )
        trainer.fit(model, DataLoader(TensorDataset(x, y), batch_size=16, shuffle=True))
        result = {
            "suggestion": finder.suggestion, "first_lr": model.first_lr, "losses": finder.losses,
            "initial": initial, "final": {k: v.tolist() for k, v in model.state_dict().items()},
        }
        with open(f"{out}/rank{trainer.global_rank}.json", "w") as f:
            json.dump(result, f)
        torch.distributed.destroy_process_group()  # else gloo's threads can abort the interpreter's shutdown
    """
)


@pytest.mark.slow
def test_ddp_ranks_run_the_same_test_and_apply_the_same_suggestion(tmp_path):
    script = tmp_path / "ddp_lr_find.py"
    script.write_text(DDP_SCRIPT)
    env = {**os.environ, "PYTHONWARNINGS": "ignore", "OMP_NUM_THREADS": "1"}
    subprocess.run([sys.executable, str(script), str(tmp_path)], check=True, timeout=120, env=env, cwd=tmp_path)
    ranks = [json.loads((tmp_path / f"rank{rank}.json").read_text()) for rank in (0, 1)]
    assert ranks[0]["suggestion"] is not None
    assert ranks[0]["suggestion"] == ranks[1]["suggestion"] == ranks[0]["first_lr"] == ranks[1]["first_lr"]
    assert ranks[0]["losses"] == ranks[1]["losses"] and len(ranks[0]["losses"]) == 30
    assert ranks[0]["initial"] == ranks[1]["initial"] and ranks[0]["final"] == ranks[1]["final"]


def test_plot_keeps_the_descent_in_view_when_the_loss_explodes():
    pytest.importorskip("matplotlib")
    curve = flat_noisy_descent_blowup(noise=0.0)  # 2.3 at the start, 0.3 at the lowest, over 50 at the end
    finder = LRFinder(smoothing=0.0, early_stop_threshold=None, plot=False)
    tiny_trainer(max_steps=1, callbacks=[finder]).fit(Scripted(curve), data())
    axes = finder.figure().axes[0]
    assert axes.get_title() == f"LR range test: suggested lr {LRS[58]:.3g} (steepest)"
    start, lowest = sorted(finder.losses[:10])[5], min(finder.losses)
    assert max(finder.losses) > 50
    bottom, top = axes.get_ylim()
    assert top == pytest.approx(start + (start - lowest))  # the drop again above the start: about 4.3
    assert bottom < lowest < start < top
    assert list(axes.lines[0].get_ydata()) == finder.losses  # clipped by the axis, not by leaving points out


def test_plot_leaves_a_curve_that_stays_low_as_it_is():
    pytest.importorskip("matplotlib")
    finder = LRFinder(plot=False)
    finder.lrs, finder.losses = LRS[:20], [2.0 - 0.05 * i for i in range(20)]
    bottom, top = finder.figure().axes[0].get_ylim()
    assert bottom < 1.05 and 2.0 < top < 2.2  # matplotlib's own margins


def test_plot_leaves_out_non_finite_points_and_says_when_there_is_no_suggestion():
    pytest.importorskip("matplotlib")
    finder = LRFinder(plot=False)
    finder.lrs, finder.losses = LRS[:6], [1.0, 0.9, math.nan, 0.5, 1e6, math.inf]
    axes = finder.figure().axes[0]
    assert axes.get_title() == "LR range test: no suggestion"
    assert list(axes.lines[0].get_ydata()) == [1.0, 0.9, 0.5, 1e6]
    bottom, top = axes.get_ylim()
    assert math.isfinite(bottom) and top == pytest.approx(1.5)  # start 1.0 plus its drop of 0.5; 1e6 is off the top
    finder.lrs, finder.losses = LRS[:2], [math.nan, math.inf]
    assert finder.figure().axes[0].lines[0].get_ydata().size == 0
