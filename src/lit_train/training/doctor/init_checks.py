"""Checks of the model at initialization, on one batch: the first loss and what each layer puts out."""

import math

from torch import Tensor

from lit_train.training.doctor.findings import CheckSkipped, Finding
from lit_train.training.doctor.probe import ForwardTrace, LayerTrace, Task


def init_loss(loss: float, task: Task | None, outputs: Tensor | None, targets: Tensor | None,
              tolerance: float, mse_ratio: float) -> list[Finding]:
    """The first loss against what an untrained model should score.

    Classification: within ``tolerance * ln C`` of ``ln C`` (uniform predictions over ``C``
    classes). Regression: a mean squared error of the outputs at most ``mse_ratio`` times that
    of predicting the targets' mean.
    """
    if not math.isfinite(loss):
        raise CheckSkipped("the first loss is not finite (see nonfinite_forward)")
    if task is None or outputs is None or targets is None:
        raise CheckSkipped("the model's outputs and the targets do not show the task (classification or regression)")
    if task.kind == "classification":
        expected = math.log(task.num_classes)
        if abs(loss - expected) <= tolerance * expected:
            return []
        confident = loss > expected
        return [Finding("init_loss", "warning",
                        f"the first loss is {loss:.4g}, far from ln({task.num_classes}) = {expected:.4g} that "
                        f"uniform predictions over {task.num_classes} classes give: the untrained model is "
                        + ("confidently wrong" if confident else "already sure of the labels (a leak?)"),
                        "scale down the last layer's initial weights (or zero its bias) so the first logits are "
                        "small; use model.net.init=he or xavier for the built-in networks" if confident else
                        "check that the targets are not among the inputs",
                        {"loss": loss, "expected": expected, "num_classes": task.num_classes,
                         "tolerance": tolerance})]
    outputs = outputs.reshape(targets.shape).double()
    targets = targets.double()
    mse = float(((outputs - targets) ** 2).mean())
    baseline = float(((targets - targets.mean()) ** 2).mean())
    if baseline <= 0 or mse <= mse_ratio * baseline:
        return []
    return [Finding("init_loss", "warning",
                    f"the first outputs are {mse / baseline:.3g}x worse (mean squared error {mse:.4g}) than "
                    f"predicting the targets' mean ({baseline:.4g})",
                    "standardize the targets (subtract their mean, divide by their std) or initialize the output "
                    "layer's bias to their mean and its weights small",
                    {"mse": mse, "mean_baseline": baseline, "loss": loss, "ratio": mse_ratio})]


def activation_saturation(layers: dict[str, LayerTrace], fraction: float) -> list[Finding]:
    """Tanh/sigmoid-like layers with most outputs pinned near their limits, where their gradient vanishes."""
    bounded = {name: trace for name, trace in layers.items() if trace.kind == "saturating"}
    if not bounded:
        raise CheckSkipped("the model has no tanh- or sigmoid-like activation modules")
    pinned = {name: trace.share for name, trace in bounded.items() if trace.share > fraction}
    if not pinned:
        return []
    described = ", ".join(f"{name} {share:.0%}" for name, share in pinned.items())
    return [Finding("activation_saturation", "warning",
                    f"saturated activations at init (share of outputs within 1% of their limits): {described}",
                    "standardize the inputs, use model.net.init=xavier for tanh/sigmoid, or switch to "
                    "model.net.activation=relu (or gelu)",
                    {"saturated": pinned, "limit": fraction})]


def dead_units(layers: dict[str, LayerTrace], fraction: float) -> list[Finding]:
    """ReLU-like layers whose units output 0 for every sample of the batch: they get no gradient."""
    rectifiers = {name: trace for name, trace in layers.items() if trace.kind == "relu"}
    if not rectifiers:
        raise CheckSkipped("the model has no ReLU-like activation modules")
    dead = {name: trace.share for name, trace in rectifiers.items() if trace.share > fraction}
    if not dead:
        return []
    described = ", ".join(f"{name} {share:.0%}" for name, share in dead.items())
    return [Finding("dead_units", "warning",
                    f"units that never fire on a batch at init: {described}",
                    "use model.net.init=he, start biases at 0 (not negative), lower optimizer.lr, or use "
                    "model.net.activation=gelu (or silu), which never go fully flat",
                    {"dead": dead, "limit": fraction})]


def nonfinite_forward(trace: ForwardTrace, loss: float) -> list[Finding]:
    """Names the first module whose output is NaN/Inf on the failing batch."""
    if trace.first_nonfinite is None:
        if math.isfinite(loss):
            return []
        return [Finding("nonfinite_forward", "error", f"the loss is {loss} although every module's output is finite",
                        "look at the loss computation in training_step (log of 0, division by 0)",
                        {"loss": loss, "module": None})]
    name, kind, finite_inputs = trace.first_nonfinite
    if not finite_inputs:
        message = f"the first module, {name} ({kind}), already gets NaN/Inf inputs: the batch itself is not finite"
        fix = "clean the data (see data_nonfinite)"
    else:
        message = f"{name} ({kind}) is the first module whose output is NaN/Inf, from finite inputs"
        fix = (f"look at {name}: a log/sqrt/division of a non-positive value, or weights that overflow; "
               "lower its initial scale or clamp its input")
    return [Finding("nonfinite_forward", "error", message, fix,
                    {"module": name, "type": kind, "finite_inputs": finite_inputs, "loss": loss})]


def layer_statistics(layers: dict[str, LayerTrace]) -> dict[str, dict[str, float]]:
    """Mean and std of each layer's output, for the picture."""
    return {name: {"mean": trace.mean, "std": trace.std} for name, trace in layers.items()}

