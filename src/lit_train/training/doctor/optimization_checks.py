"""Checks of optimization: can the setup learn one batch by heart, and is the LR where the loss falls?"""

import math
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import torch
from torch import Tensor, nn
from torch.optim import Optimizer

from lit_train.training.doctor.findings import CheckSkipped, Finding
from lit_train.training.doctor.probe import Task, training_loss

#: How often (in steps) the overfit test reads the batch's accuracy.
CHECK_EVERY = 5


def single_optimizer(configured: Any, owner: str) -> Optimizer:
    """The one optimizer in what ``configure_optimizers`` returned, in any of Lightning's forms.

    Raises:
        CheckSkipped: If there is none or more than one.
    """
    if isinstance(configured, Optimizer):
        return configured
    if isinstance(configured, Mapping) and isinstance(configured.get("optimizer"), Optimizer):
        return configured["optimizer"]
    if isinstance(configured, Sequence) and configured:
        first = configured[0]
        optimizers = list(first) if isinstance(first, Sequence) and len(configured) == 2 else list(configured)
        optimizers = [o["optimizer"] if isinstance(o, Mapping) else o for o in optimizers]
        if len(optimizers) == 1 and isinstance(optimizers[0], Optimizer):
            return optimizers[0]
        raise CheckSkipped(f"{owner}.configure_optimizers returns {len(optimizers)} optimizers; the test steps one")
    raise CheckSkipped(f"{owner}.configure_optimizers returns {type(configured).__name__}, not an optimizer")


def initial_lr(optimizer: Optimizer) -> float:
    """The LR the first param group starts from (``initial_lr`` once a scheduler has taken it over)."""
    group = optimizer.param_groups[0]
    return float(group.get("initial_lr", group["lr"]))


def overfit_one_batch(module: nn.Module, optimizer: Optimizer, batch: Any, steps: int, task: Task | None,
                      inputs: Tensor | None, targets: Tensor | None, loss_ratio: float) -> dict[str, Any]:
    """Trains ``module`` on ``batch`` alone for up to ``steps`` steps, stopping once it is learnt.

    Learnt: classification at 100% accuracy on the batch; regression with a mean squared error
    below ``loss_ratio`` of predicting the targets' mean; a module whose outputs cannot be read,
    with a loss below ``loss_ratio`` of its first one.

    Returns:
        ``{"loss": [...], "accuracy": [[step, acc], ...], "target": ..., "learnt": bool, "measure": ...}``
    """
    module.train()
    losses: list[float] = []
    accuracy: list[list[float]] = []
    measure = task.kind if task is not None and inputs is not None else "loss"
    target = None
    if measure == "regression":
        target = loss_ratio * float(((targets.double() - targets.double().mean()) ** 2).mean())
    learnt = False
    for step in range(steps + 1):
        if step % CHECK_EVERY == 0 or step == steps:
            learnt = _learnt(module, measure, inputs, targets, target, accuracy, step)
            if learnt:
                break
        if step == steps:
            break
        loss = training_loss(module, batch)
        losses.append(float(loss.detach()))
        if not math.isfinite(losses[-1]):
            break
        if measure == "loss" and target is None:
            target = loss_ratio * losses[0]
        if measure == "loss" and losses[-1] <= target:
            learnt = True
            break
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
    return {"loss": losses, "accuracy": accuracy, "target": target, "learnt": learnt, "measure": measure}


def _learnt(module: nn.Module, measure: str, inputs: Tensor | None, targets: Tensor | None, target: float | None,
            accuracy: list[list[float]], step: int) -> bool:
    if measure == "loss":
        return False
    training = module.training
    module.eval()  # dropout off: can the weights hold the batch?
    with torch.no_grad():
        outputs = module(inputs)
    module.train(training)
    if measure == "classification":
        value = float((outputs.argmax(dim=-1) == targets).float().mean())
        accuracy.append([step, value])
        return value == 1.0
    error = float(((outputs.reshape(targets.shape).double() - targets.double()) ** 2).mean())
    accuracy.append([step, error])
    return error <= target


def cannot_overfit(curve: dict[str, Any], steps: int) -> list[Finding]:
    """A setup that cannot learn a single batch by heart has a bug, or too little capacity or LR."""
    losses = curve["loss"]
    if curve["learnt"]:
        return []
    if not losses:
        raise CheckSkipped("the overfit test took no step")
    first, last = losses[0], losses[-1]
    evidence = {"steps": len(losses), "first_loss": first, "last_loss": last, "measure": curve["measure"]}
    if curve["measure"] == "classification":
        reached = curve["accuracy"][-1][1]
        evidence["accuracy"] = reached
        shortfall = f"reached {reached:.0%} training accuracy on it, not 100%"
    elif curve["measure"] == "regression":
        shortfall = f"its mean squared error stayed at {curve['accuracy'][-1][1]:.3g}, above {curve['target']:.3g}"
    else:
        shortfall = f"its loss went from {first:.4g} to {last:.4g}, not below {curve['target']:.3g}"
    stuck = not math.isfinite(last) or last > 0.5 * first
    return [Finding("cannot_overfit", "error" if stuck else "warning",
                    f"{len(losses)} optimizer steps on one batch {shortfall} (loss {first:.4g} -> {last:.4g})",
                    "a model that cannot learn one batch has a bug: check that the loss uses the model's outputs and "
                    "the matching targets, that gradients reach every layer and that the optimizer gets the model's "
                    "parameters; then try a larger optimizer.lr or a bigger model (debug=overfit trains on one batch)"
                    if stuck else
                    f"it learns, slowly: raise optimizer.lr, or give it more steps (doctor.overfit_steps={2 * steps})",
                    evidence)]


def descent_region(lrs: Sequence[float], losses: Sequence[float]) -> tuple[float, float] | None:
    """The LRs from where the range test's loss starts to fall clearly (10% of its drop) to its minimum."""
    if len(losses) < 3:
        return None
    lowest = min(range(len(losses)), key=losses.__getitem__)
    drop = losses[0] - losses[lowest]
    if not drop > 0:
        return None
    begin = next(i for i in range(lowest + 1) if losses[i] <= losses[0] - 0.1 * drop)
    return float(lrs[begin]), float(lrs[lowest])


def lr_checks(lr: float, lrs: Sequence[float], losses: Sequence[float], suggestion: float | None, low_factor: float,
              use: Callable[[float], str]) -> list[Finding]:
    """The configured LR against the range test: above the loss minimum is too high, ``low_factor`` below the
    suggestion is too low.

    Args:
        use: How to set an LR of the run to a value: ``lambda lr: f"optimizer.lr={lr:.3g}"``.
    """
    region = descent_region(lrs, losses)
    if suggestion is None or region is None:
        raise CheckSkipped("the LR range test's loss never clearly fell, so it suggests no LR")
    evidence = {"lr": lr, "suggestion": suggestion, "descent_region": list(region), "tested": [lrs[0], lrs[-1]]}
    fix = f"{use(suggestion)} (the range test's suggestion, where the loss falls fastest)"
    if lr > region[1]:
        return [Finding("lr_too_high", "warning",
                        f"the LR {lr:.3g} is above {region[1]:.3g}, where the range test's loss stops falling and "
                        f"turns up; it suggests {suggestion:.3g}", fix, evidence)]
    if lr < suggestion / low_factor:
        return [Finding("lr_too_low", "warning",
                        f"the LR {lr:.3g} is {suggestion / lr:.0f}x below the range test's suggestion {suggestion:.3g} "
                        f"(the loss falls fastest at {region[0]:.3g} .. {region[1]:.3g}): training will crawl", fix,
                        evidence)]
    return []
