"""Checks of the gradients of one batch's loss at initialization, per layer.

A layer is a module that owns parameters directly (``net.layers.0`` for the weight and
bias of a Linear); its norm is the norm of all its parameters' gradients together.
"""

import math

import torch
from torch import nn

from lit_train.training.doctor.findings import Finding

#: What to try against each gradient problem, wherever it is found (here at init, or in a run's health record);
#: ``{lr}`` is the override of the learning rate to try.
NO_GRADIENT_FIX = ("make sure the loss depends on them: no .detach(), .item() or torch.no_grad() between them and the "
                   "loss, no layer left out of forward (set requires_grad=False on parts meant to stay frozen); an "
                   "exactly zero gradient also comes from dead ReLUs or zero-initialized weights")
NONFINITE_FIX = ("find where the backward pass breaks (debug=anomaly); a finite loss with non-finite gradients comes "
                 "from sqrt/log/pow at 0 or a division by a tiny value; clip with trainer.gradient_clip_val=1.0 or "
                 "lower the learning rate ({lr})")
EXPLODING_FIX = ("clip gradients with trainer.gradient_clip_val=1.0, lower the learning rate ({lr}), standardize the "
                 "inputs, or use model.net.init=he (relu) / xavier (tanh, sigmoid)")
VANISHING_FIX = ("use model.net.activation=relu (or gelu) instead of sigmoid/tanh in deep stacks, model.net.init=he, "
                 "normalization layers or residual connections; standardize the inputs")


def layer_of(parameter_name: str) -> str:
    return parameter_name.rpartition(".")[0] or parameter_name


def gradient_norms(module: nn.Module) -> dict[str, float]:
    """The gradient norm of each layer whose parameters got a gradient, in the module's order (one host sync)."""
    squares: dict[str, list[torch.Tensor]] = {}
    for name, parameter in module.named_parameters():
        if parameter.grad is not None:
            squares.setdefault(layer_of(name), []).append(parameter.grad.detach().double().pow(2).sum())
    if not squares:
        return {}
    norms = torch.stack([torch.stack(parts).sum().sqrt() for parts in squares.values()]).tolist()
    return dict(zip(squares, norms))


def no_gradient(module: nn.Module) -> list[Finding]:
    """Trainable parameters whose gradient is missing or exactly zero: a detached graph, an unused or dead layer."""
    trainable = [(name, p) for name, p in module.named_parameters() if p.requires_grad]
    missing = [name for name, p in trainable if p.grad is None]
    zero = [name for name, p in trainable if p.grad is not None and not bool(p.grad.any())]
    if not missing and not zero:
        return []
    everything = len(missing) + len(zero) == len(trainable)
    names = missing + zero
    shown = ", ".join(names[:8]) + (f" and {len(names) - 8} more" if len(names) > 8 else "")
    parts = [f"{len(missing)} get no gradient" if missing else "", f"{len(zero)} get an exactly zero one" if zero else ""]
    return [Finding("no_gradient", "error" if everything else "warning",
                    f"of {len(trainable)} trainable parameters, {' and '.join(p for p in parts if p)}: {shown}",
                    NO_GRADIENT_FIX,
                    {"missing": missing, "zero": zero, "trainable": len(trainable)})]


def nonfinite_gradient(module: nn.Module) -> list[Finding]:
    """Parameters whose gradient holds NaN or Inf."""
    bad = [name for name, p in module.named_parameters() if p.grad is not None and not bool(torch.isfinite(p.grad).all())]
    if not bad:
        return []
    return [Finding("nonfinite_gradient", "error",
                    f"NaN/Inf gradients in {len(bad)} parameters, first {bad[0]}",
                    NONFINITE_FIX.format(lr="optimizer.lr"),
                    {"parameters": bad})]


def exploding_gradient(norms: dict[str, float], limit: float) -> list[Finding]:
    """Layers whose gradient norm is above ``limit``."""
    big = {layer: norm for layer, norm in norms.items() if math.isfinite(norm) and norm > limit}
    if not big:
        return []
    described = ", ".join(f"{layer} {norm:.3g}" for layer, norm in big.items())
    return [Finding("exploding_gradient", "warning",
                    f"gradient norms above {limit:g} at init: {described}",
                    EXPLODING_FIX.format(lr="optimizer.lr"),
                    {"norms": big, "limit": limit})]


def vanishing_gradient(norms: dict[str, float], ratio: float) -> list[Finding]:
    """Layers whose gradient norm is ``ratio`` times below the largest layer's (zero norms are no_gradient's)."""
    finite = {layer: norm for layer, norm in norms.items() if math.isfinite(norm)}
    if len(finite) < 2:
        return []
    largest = max(finite.values())
    small = {layer: norm for layer, norm in finite.items() if 0 < norm < largest / ratio}
    if not small:
        return []
    top = max(finite, key=finite.get)
    described = ", ".join(f"{layer} {norm:.3g}" for layer, norm in small.items())
    return [Finding("vanishing_gradient", "warning",
                    f"gradient norms more than {ratio:g}x below the largest ({top} {largest:.3g}): {described}",
                    VANISHING_FIX,
                    {"norms": small, "largest": {top: largest}, "ratio": ratio})]
