"""``action=doctor``: every check on the configured module and data, without a training run.

The checks run on copies of the module, so the module itself, and the optimizer a later
fit builds from it, are untouched; the LR range test restores what it changes; the torch,
numpy and Python RNG states come back as they were. ``action=doctor`` followed by a
training run therefore trains exactly as the run alone would.
"""

import copy
import dataclasses
import math
import random
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from itertools import islice
from pathlib import Path
from typing import Any

import lightning.pytorch as L
import numpy as np
import torch
from lightning.fabric.utilities import move_data_to_device
from lightning.pytorch.utilities.exceptions import MisconfigurationException
from lightning.pytorch.utilities.model_helpers import is_overridden
from torch.optim import Optimizer

from lit_train.training.doctor import data_checks, gradient_checks, init_checks, optimization_checks
from lit_train.training.doctor.findings import CheckSkipped, Finding, Report, Skipped
from lit_train.training.doctor.probe import ForwardTrace, outputs_of, split_batch, task_of, training_loss
from lit_train.training.doctor.report import format_report, write_report
from lit_train.training.doctor.settings import DoctorSettings
from lit_train.training.optim import Optimization
from lit_train.training.tune import range_test


#: The checks that need the module's training loss.
_NEED_A_LOSS = ("init_loss", "activation_saturation", "dead_units", "nonfinite_forward", "no_gradient",
                "nonfinite_gradient", "exploding_gradient", "vanishing_gradient", "cannot_overfit", "lr_too_high",
                "lr_too_low")


class _Checkup:
    """Runs checks into one report; a check that raises :class:`CheckSkipped` is listed as skipped."""

    def __init__(self) -> None:
        self.report = Report()

    def run(self, check: str, function: Callable[..., list[Finding]], *args: Any) -> list[Finding]:
        try:
            found = function(*args)
        except CheckSkipped as skipped:
            self.skip(check, str(skipped))
            return []
        self.report.findings += found
        return found

    def skip(self, *checks_and_reason: str) -> None:
        """Lists each check as skipped for the reason (the last argument), unless it already is."""
        *checks, reason = checks_and_reason
        listed = {skipped.check for skipped in self.report.skipped}
        self.report.skipped += [Skipped(check, reason) for check in checks if check not in listed]


@contextmanager
def _rng_kept() -> Iterator[None]:
    """Puts the torch (CPU and CUDA), numpy and Python RNG states back as they were."""
    states = torch.get_rng_state(), np.random.get_state(), random.getstate()
    cuda = torch.cuda.get_rng_state_all() if torch.cuda.is_initialized() else None
    try:
        yield
    finally:
        torch.set_rng_state(states[0])
        np.random.set_state(states[1])
        random.setstate(states[2])
        if cuda is not None:
            torch.cuda.set_rng_state_all(cuda)


def run_doctor(trainer: L.Trainer, module: L.LightningModule, datamodule: L.LightningDataModule, run_dir: Path,
               optimization: Optimization, settings: DoctorSettings | Mapping[str, Any] | None = None) -> Report:
    """Checks the data, the model at init, its gradients and its optimization; prints and writes the report.

    Args:
        trainer: The run's trainer (its device, and the LR range test's fit).
        module: The configured module; checked on copies, never changed.
        datamodule: The configured data.
        run_dir: Where ``doctor.json`` and ``doctor.png`` go.
        optimization: The optimizer and scheduler groups, for a module without its own ``configure_optimizers``.
        settings: Thresholds (the ``doctor`` config node); defaults of :class:`DoctorSettings` if ``None``.

    Returns:
        The report; its ``exit_code`` is 4 when a finding is an error.
    """
    if not isinstance(settings, DoctorSettings):
        settings = DoctorSettings(**(settings or {}))
    checkup = _Checkup()
    with _rng_kept():
        train, held_out = _read_data(datamodule, settings.data_batches, checkup)
        device = trainer.strategy.root_device
        _check_data(checkup, train, held_out, settings)
        pair, task = _check_model(checkup, module, [move_data_to_device(b, device) for b in train], settings, device)
        if not any(skipped.check == "cannot_overfit" for skipped in checkup.report.skipped):
            lr, use = _check_overfit(checkup, trainer, module, move_data_to_device(train[0], device), pair, task,
                                     optimization, settings, device)
            _check_lr(checkup, trainer, module, datamodule, lr, use, settings)
    report = checkup.report
    if trainer.is_global_zero:
        write_report(report, Path(run_dir))
        print(format_report(report, Path(run_dir)))
    return report


def _read_data(datamodule: L.LightningDataModule, limit: int, checkup: _Checkup) -> tuple[list[Any], dict[str, list]]:
    """Up to ``limit`` training batches, and as many of each held-out split the data module has."""
    datamodule.setup("fit")
    train = list(islice(datamodule.train_dataloader(), limit))
    if not train:
        raise ValueError(f"data: the training data is empty: {type(datamodule).__name__} gave no training batch")
    held_out = {}
    for split, hook, stage in (("validation", "val_dataloader", "fit"), ("test", "test_dataloader", "test")):
        if not is_overridden(hook, datamodule, L.LightningDataModule):
            continue
        if stage == "test":
            datamodule.setup("test")
        if batches := list(islice(getattr(datamodule, hook)(), limit)):
            held_out[split] = batches
    return train, held_out


def _check_data(checkup: _Checkup, train: list[Any], held_out: dict[str, list], settings: DoctorSettings) -> None:
    checkup.run("data_nonfinite", data_checks.data_nonfinite, train)
    checkup.run("data_scale", data_checks.data_scale, train, settings.scale_limit)
    checkup.run("label_imbalance", data_checks.label_imbalance, train, settings.imbalance_ratio)
    checkup.run("split_overlap", data_checks.split_overlap, train, held_out, settings.overlap_fraction)
    checkup.run("data_shapes", data_checks.data_shapes, train)


def _check_model(checkup: _Checkup, module: L.LightningModule, batches: list[Any], settings: DoctorSettings,
                 device: torch.device) -> tuple[Any, Any]:
    """Init, forward and gradient checks on a copy of ``module``; returns the first batch as a pair, and the task."""
    probe = copy.deepcopy(module).to(device).train()
    first = batches[0]
    pair = split_batch(first)
    outputs = task = None
    if pair is None:
        checkup.skip("label_range", "init_loss", data_checks.NOT_PAIRS)
    else:
        try:
            outputs = outputs_of(probe, pair[0])
            task = task_of(outputs, pair[1])
        except CheckSkipped as skipped:
            checkup.skip("label_range", "init_loss", str(skipped))
        else:
            if task is not None and task.kind == "classification":
                checkup.run("label_range", data_checks.label_range, batches, task.num_classes)
            else:
                checkup.skip("label_range", "the model's outputs and the targets are not class scores and labels")
    try:
        with ForwardTrace(probe) as trace:
            loss = training_loss(probe, first)
    except CheckSkipped as skipped:
        checkup.skip(*_NEED_A_LOSS, str(skipped))
        return pair, task
    except Exception as error:  # the user's training_step fails on this data: the data checks above say why
        checkup.skip(*_NEED_A_LOSS, f"training_step fails on the first batch: {type(error).__name__}: "
                     f"{str(error).splitlines()[0]}")
        return pair, task
    value = float(loss.detach())
    if outputs is not None:
        checkup.run("init_loss", init_checks.init_loss, value, task, outputs, pair[1], settings.init_loss_tolerance,
                    settings.init_mse_ratio)
    checkup.run("activation_saturation", init_checks.activation_saturation, trace.layers, settings.saturation_fraction)
    checkup.run("dead_units", init_checks.dead_units, trace.layers, settings.dead_fraction)
    checkup.report.curves["activations"] = init_checks.layer_statistics(trace.layers)
    checkup.run("nonfinite_forward", init_checks.nonfinite_forward, *_failing(probe, batches, trace, value))
    _check_gradients(checkup, probe, loss, settings)
    return pair, task


def _failing(probe: L.LightningModule, batches: list[Any], trace: ForwardTrace, loss: float) -> tuple[ForwardTrace, float]:
    """The trace and loss of the first batch whose forward pass is not finite (the first batch's if none is)."""
    if trace.first_nonfinite is not None or not math.isfinite(loss):
        return trace, loss
    with torch.no_grad():
        for batch in batches[1:]:
            with ForwardTrace(probe) as other:
                value = float(training_loss(probe, batch).detach())
            if other.first_nonfinite is not None or not math.isfinite(value):
                return other, value
    return trace, loss


def _check_gradients(checkup: _Checkup, probe: L.LightningModule, loss: torch.Tensor, settings: DoctorSettings) -> None:
    if loss.requires_grad:
        loss.backward()
    checkup.run("no_gradient", gradient_checks.no_gradient, probe)
    checkup.run("nonfinite_gradient", gradient_checks.nonfinite_gradient, probe)
    norms = gradient_checks.gradient_norms(probe)
    checkup.report.curves["grad_norms"] = norms
    checkup.run("exploding_gradient", gradient_checks.exploding_gradient, norms, settings.exploding_norm)
    checkup.run("vanishing_gradient", gradient_checks.vanishing_gradient, norms, settings.vanishing_ratio)


def _own_optimizers(module: L.LightningModule) -> bool:
    """Whether the module's class defines ``configure_optimizers`` (lit_train attaches one to the others)."""
    return is_overridden("configure_optimizers", type(module), L.LightningModule)


def _optimizer(learner: L.LightningModule, optimization: Optimization, trainer: L.Trainer
               ) -> tuple[Optimizer, Callable[[float], str]]:
    """The run's optimizer over ``learner``'s parameters, and how to set the run's LR (for the fix)."""
    name = type(learner).__name__
    if _own_optimizers(learner):
        try:
            configured = learner.configure_optimizers()
        except RuntimeError as error:
            raise CheckSkipped(f"{name}.configure_optimizers needs a running Trainer ({error})") from error
        return (optimization_checks.single_optimizer(configured, name),
                lambda lr: f"set the LR in {name}.configure_optimizers to {lr:.3g} (through model.<its argument>=...)")
    factor = optimization.lr_factor(trainer)
    optimizer, _ = optimization.build(learner, 1, factor)
    # optimizer.lr is the LR before scale_lr multiplies it.
    return optimizer, lambda lr: f"optimizer.lr={lr / factor:.3g}"


def _check_overfit(checkup: _Checkup, trainer: L.Trainer, module: L.LightningModule, batch: Any, pair: Any, task: Any,
                   optimization: Optimization, settings: DoctorSettings, device: torch.device
                   ) -> tuple[float | None, Callable[[float], str] | None]:
    """The one-batch overfit test on a copy of ``module``; returns the run's LR and how to set it."""
    learner = copy.deepcopy(module).to(device)
    try:
        optimizer, use = _optimizer(learner, optimization, trainer)
    except CheckSkipped as skipped:
        checkup.skip("cannot_overfit", str(skipped))
        return None, None
    lr = optimization_checks.initial_lr(optimizer)
    inputs, targets = pair if pair is not None and task is not None else (None, None)
    curve = optimization_checks.overfit_one_batch(learner, optimizer, batch, settings.overfit_steps, task, inputs,
                                                  targets, settings.overfit_loss_ratio)
    checkup.report.curves["overfit"] = curve
    checkup.run("cannot_overfit", optimization_checks.cannot_overfit, curve, settings.overfit_steps)
    return lr, use


def _check_lr(checkup: _Checkup, trainer: L.Trainer, module: L.LightningModule, datamodule: L.LightningDataModule,
              lr: float | None, use: Callable[[float], str] | None, settings: DoctorSettings) -> None:
    if lr is None:
        checkup.skip("lr_too_high", "lr_too_low", "the run's optimizer and its LR could not be read "
                     "(see cannot_overfit's reason)")
        return
    if trainer.fast_dev_run:
        checkup.skip("lr_too_high", "lr_too_low", "the LR range test does not run under trainer.fast_dev_run")
        return
    try:
        finder = range_test(trainer, module, datamodule, plot=False)
    except MisconfigurationException as error:
        checkup.skip("lr_too_high", "lr_too_low", f"the LR range test cannot run: {error}")
        return
    checkup.report.curves["lr_range"] = {"lrs": finder.lrs, "losses": finder.losses, "suggestion": finder.suggestion,
                                         "lr": lr}
    before = len(checkup.report.skipped)
    checkup.run("lr_too_high", optimization_checks.lr_checks, lr, finder.lrs, finder.losses, finder.suggestion,
                settings.lr_low_factor, use)
    if len(checkup.report.skipped) > before:  # one reason for both
        checkup.skip("lr_too_low", checkup.report.skipped[-1].reason)
    _explain_overfit_by_lr(checkup.report)


def _explain_overfit_by_lr(report: Report) -> None:
    """A one-batch overfit that failed at an LR the range test calls too low is the LR's doing, not a bug's."""
    low = next((f for f in report.findings if f.check == "lr_too_low"), None)
    for index, finding in enumerate(report.findings):
        if low is not None and finding.check == "cannot_overfit" and finding.severity == "error":
            report.findings[index] = dataclasses.replace(
                finding, severity="warning", message=f"{finding.message}, at an LR the range test calls too low",
                fix=f"{low.fix}; then run the doctor again")
