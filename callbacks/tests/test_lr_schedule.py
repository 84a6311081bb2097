"""preview_lr / plot_lr: the schedule of every step without training, and the caller's objects untouched."""

from __future__ import annotations

import copy

import pytest
import torch
from test_warmup import (
    BATCHES_PER_EPOCH,
    METRIC,
    SCHEDULERS,
    TOTAL,
    WARMUP,
    Recorder,
    fit,
    pytorch_curve,
)
from torch import nn
from torch.optim import lr_scheduler as sched

from lit_callbacks import Warmup, plot_lr, preview_lr

LR = 0.1


def optimizer_and_scheduler(name: str) -> tuple[torch.optim.Optimizer, object]:
    optimizer = torch.optim.SGD([nn.Parameter(torch.zeros(1))], lr=LR, momentum=0.9)
    factory = SCHEDULERS[name]
    return optimizer, (factory(optimizer) if factory is not None else None)


def preview(name: str, interval: str, warmup: Warmup | None = None) -> list[float]:
    optimizer, scheduler = optimizer_and_scheduler(name)
    return preview_lr(
        optimizer,
        scheduler,
        total_steps=TOTAL,
        interval=interval,
        steps_per_epoch=BATCHES_PER_EPOCH,
        warmup=warmup,
        monitor_values=METRIC if interval == "step" else METRIC[BATCHES_PER_EPOCH - 1 :: BATCHES_PER_EPOCH],
    )


@pytest.mark.parametrize("interval", ["step", "epoch"])
@pytest.mark.parametrize("name", list(SCHEDULERS))
def test_preview_is_the_pure_pytorch_curve(name, interval):
    assert preview(name, interval) == pytorch_curve(name, interval)


@pytest.mark.parametrize("name", list(SCHEDULERS))
def test_preview_with_warmup_scales_the_first_steps_only(name):
    warmup = Warmup(steps=WARMUP, start_factor=0.1, mode="cosine")
    reference = pytorch_curve(name, "step")
    assert preview(name, "step", warmup) == [lr * warmup.factor(k, WARMUP) for k, lr in enumerate(reference)]


@pytest.mark.parametrize(("name", "interval"), [("ExponentialLR", "step"), ("ReduceLROnPlateau", "epoch"), ("none", "step")])
def test_preview_matches_what_a_fit_with_warmup_trains_with(name, interval):
    module = Recorder(name, interval)
    fit(module, [Warmup(ratio=0.4, start_factor=0.1)])
    assert preview(name, interval, Warmup(ratio=0.4, start_factor=0.1)) == module.lrs


@pytest.mark.parametrize("name", ["StepLR", "ReduceLROnPlateau", "OneCycleLR", "CyclicLR", "LambdaLR"])
def test_preview_leaves_the_callers_optimizer_and_scheduler_untouched(name):
    optimizer, scheduler = optimizer_and_scheduler(name)
    optimizer.step()  # give the optimizer some state
    groups = copy.deepcopy(optimizer.state_dict())
    state = copy.deepcopy(scheduler.state_dict())
    preview_lr(optimizer, scheduler, total_steps=TOTAL, monitor_values=METRIC, warmup=Warmup(steps=3))
    assert repr(optimizer.state_dict()) == repr(groups)
    assert repr(scheduler.state_dict()) == repr(state)
    assert scheduler.optimizer is optimizer


def test_frequency_and_epoch_interval_follow_lightning():
    optimizer = torch.optim.SGD([nn.Parameter(torch.zeros(1))], lr=1.0)
    halving = sched.StepLR(optimizer, step_size=1, gamma=0.5)
    assert preview_lr(optimizer, halving, total_steps=9, interval="epoch", steps_per_epoch=2, frequency=2) == [
        1.0, 1.0, 1.0, 1.0, 0.5, 0.5, 0.5, 0.5, 0.25,
    ]  # fmt: skip
    assert preview_lr(optimizer, halving, total_steps=7, frequency=2, steps_per_epoch=3) == [
        1.0, 1.0, 0.5, 0.5, 0.5, 0.25, 0.25,
    ]  # fmt: skip  # within-epoch batch index, as Lightning counts it
    assert preview_lr(optimizer, total_steps=3) == [1.0, 1.0, 1.0]


def test_param_group_selects_the_group():
    optimizer = torch.optim.SGD([{"params": [nn.Parameter(torch.zeros(1))]}, {"params": [nn.Parameter(torch.zeros(1))], "lr": 0.5}], lr=1.0)
    assert preview_lr(optimizer, total_steps=2, param_group=1) == [0.5, 0.5]


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"total_steps": 0}, ValueError, r"`total_steps` must be an int >= 1, got 0"),
        ({"total_steps": 10.0}, TypeError, r"`total_steps` must be an int, got 10.0"),
        ({"total_steps": 10, "interval": "batch"}, ValueError, r"`interval` must be one of \('epoch', 'step'\), got 'batch'"),
        ({"total_steps": 10, "frequency": 0}, ValueError, r"`frequency` must be an int >= 1, got 0"),
        ({"total_steps": 10, "interval": "epoch"}, ValueError, r"`steps_per_epoch` is required with interval='epoch'"),
        ({"total_steps": 10, "steps_per_epoch": 0}, ValueError, r"`steps_per_epoch` must be an int >= 1, got 0"),
        ({"total_steps": 10, "warmup": 5}, TypeError, r"`warmup` must be a Warmup or None, got int"),
        ({"total_steps": 10, "param_group": 1}, ValueError, r"`param_group` must be below the optimizer's 1 param group\(s\), got 1"),
        ({"total_steps": 10, "warmup": Warmup(steps=10)}, ValueError, r"Warmup of 10 optimizer steps is not shorter than the run's 10"),
    ],
)
def test_invalid_arguments_are_rejected(kwargs, error, match):
    optimizer, scheduler = optimizer_and_scheduler("StepLR")
    with pytest.raises(error, match=match):
        preview_lr(optimizer, scheduler, **kwargs)


def test_plateau_needs_monitor_values():
    optimizer, scheduler = optimizer_and_scheduler("ReduceLROnPlateau")
    with pytest.raises(ValueError, match=r"ReduceLROnPlateau steps on a metric: pass `monitor_values`"):
        preview_lr(optimizer, scheduler, total_steps=5)
    with pytest.raises(ValueError, match=r"`monitor_values` ran out after 3 optimizer steps"):
        preview_lr(optimizer, scheduler, total_steps=5, monitor_values=[1.0, 0.5])


def test_scheduler_of_another_optimizer_is_rejected():
    optimizer, _ = optimizer_and_scheduler("none")
    _, scheduler = optimizer_and_scheduler("StepLR")
    with pytest.raises(ValueError, match=r"`scheduler` was built on another optimizer than `optimizer`"):
        preview_lr(optimizer, scheduler, total_steps=5)


def test_plot_lr_writes_a_png(tmp_path):
    pytest.importorskip("matplotlib")
    path = tmp_path / "plots" / "schedule.png"
    plot_lr(preview("CosineAnnealingLR", "step", Warmup(steps=3)), path)
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_plot_lr_on_a_log_axis_labels_every_decade_and_leaves_out_an_lr_of_zero(tmp_path):
    pytest.importorskip("matplotlib")
    lrs = [0.0] + [1e-3] * 30 + [1e-4] * 30 + [1e-5] * 30 + [1e-6] * 9  # a plateau's levels after a warmup from 0
    axes = plot_lr(lrs, tmp_path / "schedule.png", log_scale=True).axes[0]
    assert axes.get_yscale() == "log"
    low, high = axes.get_ylim()
    assert [tick for tick in axes.get_yticks() if low <= tick <= high] == pytest.approx([1e-6, 1e-5, 1e-4, 1e-3])
    assert list(axes.lines[0].get_ydata()) == lrs
    assert low > 0 and (tmp_path / "schedule.png").is_file()


def test_plot_lr_shades_the_warmup_and_writes_the_note(tmp_path):
    pytest.importorskip("matplotlib")
    lrs = preview("CosineAnnealingLR", "step", Warmup(steps=3))
    axes = plot_lr(lrs, tmp_path / "schedule.png", title="cosine", warmup_steps=3, note="an assumption").axes[0]
    (shade,) = axes.patches
    assert (shade.get_x(), shade.get_width(), shade.get_label()) == (0, 3, "warmup (3 steps)")
    assert [text.get_text() for text in axes.texts] == ["an assumption"]
    assert axes.get_title() == "cosine" and axes.get_yscale() == "linear"
    assert not plot_lr(lrs, tmp_path / "plain.png").axes[0].patches


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"log_scale": "yes"}, TypeError, r"`log_scale` must be a bool, got 'yes'"),
        ({"warmup_steps": -1}, ValueError, r"`warmup_steps` must be an int >= 0, got -1"),
    ],
)
def test_plot_lr_rejects_bad_arguments(kwargs, error, match, tmp_path):
    with pytest.raises(error, match=match):
        plot_lr([1e-3], tmp_path / "schedule.png", **kwargs)
