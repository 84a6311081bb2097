"""How the doctor runs a module outside a fit: its training loss, its outputs, and what each layer gives.

Everything here works on a copy of the user's module (the caller makes it), called as
Lightning allows ``*_step`` methods to be called without a Trainer: ``self.log`` then
only warns, and the warning is silenced here.
"""

import warnings
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor, nn

from lit_train.training.doctor.findings import CheckSkipped

#: Activations whose units can stop firing for good (output exactly 0 on every input).
RELU_LIKE = (nn.ReLU, nn.ReLU6)
#: Bounded activations and their (low, high) limits.
SATURATING = {nn.Tanh: (-1.0, 1.0), nn.Hardtanh: (-1.0, 1.0), nn.Softsign: (-1.0, 1.0), nn.Sigmoid: (0.0, 1.0),
              nn.Hardsigmoid: (0.0, 1.0)}
#: Within this share of the range from a limit counts as pinned to it.
NEAR_LIMIT = 0.01


def split_batch(batch: Any) -> tuple[Tensor, Tensor] | None:
    """``(inputs, targets)`` when the batch is a pair of tensors, else ``None``."""
    if isinstance(batch, (tuple, list)) and len(batch) == 2 and all(isinstance(part, Tensor) for part in batch):
        return batch[0], batch[1]
    return None


def training_loss(module: nn.Module, batch: Any) -> Tensor:
    """The loss ``training_step`` returns for ``batch`` (a tensor, or a dict's ``"loss"``).

    Raises:
        CheckSkipped: If ``training_step`` returns no loss tensor or cannot run outside a Trainer.
    """
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*self.log.*")
        try:
            output = module.training_step(batch, 0)
        except RuntimeError as error:
            if "not attached to a `Trainer`" in str(error):
                raise CheckSkipped(f"{type(module).__name__}.training_step needs a running Trainer ({error})") from error
            raise
    loss = output.get("loss") if isinstance(output, Mapping) else output
    if not isinstance(loss, Tensor) or loss.numel() != 1:
        raise CheckSkipped(f"{type(module).__name__}.training_step returns {type(output).__name__}, not the loss "
                           "(a tensor or a dict with 'loss')")
    return loss.reshape(())


def outputs_of(module: nn.Module, inputs: Tensor) -> Tensor:
    """``module(inputs)``, without gradients.

    Raises:
        CheckSkipped: If the module has no ``forward(inputs)`` that returns a tensor.
    """
    try:
        with torch.no_grad():
            outputs = module(inputs)
    except (NotImplementedError, TypeError) as error:
        raise CheckSkipped(f"{type(module).__name__} has no forward(inputs) to read its outputs from ({error})") from error
    if not isinstance(outputs, Tensor):
        raise CheckSkipped(f"{type(module).__name__}.forward returns {type(outputs).__name__}, not a tensor of outputs")
    return outputs


@dataclass
class Task:
    """What the outputs and targets say the model learns: ``classification`` over ``num_classes``, or ``regression``."""

    kind: str
    num_classes: int | None = None


def task_of(outputs: Tensor, targets: Tensor) -> Task | None:
    """Classification when integer targets index the last dimension of the outputs; regression when float
    targets have one output each; else ``None``."""
    if not targets.is_floating_point() and outputs.dim() == targets.dim() + 1 and outputs.shape[:-1] == targets.shape:
        return Task("classification", int(outputs.shape[-1]))
    if targets.is_floating_point() and outputs.numel() == targets.numel():
        return Task("regression")
    return None


@dataclass
class LayerTrace:
    """What one module's output looked like on a batch."""

    kind: str  # "relu", "saturating" or "other"
    mean: float
    std: float
    #: ReLU-like: share of units at 0 for every sample; saturating: share of outputs pinned to a limit.
    share: float | None = None


@dataclass
class ForwardTrace:
    """Forward hooks on every submodule of ``module`` for the duration of a ``with`` block.

    Attributes:
        layers: Per leaf module with a float output, in the order they ran.
        first_nonfinite: The first module (in the order outputs were produced) whose output is NaN or
            infinite, with whether its inputs were finite, or ``None``.
    """

    module: nn.Module
    layers: dict[str, LayerTrace] = field(default_factory=dict)
    first_nonfinite: tuple[str, str, bool] | None = None
    _handles: list[Any] = field(default_factory=list)

    def __enter__(self) -> "ForwardTrace":
        for name, child in self.module.named_modules():
            if child is not self.module:
                self._handles.append(child.register_forward_hook(self._hook(name)))
        return self

    def __exit__(self, *exc: Any) -> None:
        for handle in self._handles:
            handle.remove()
        self._handles.clear()

    def _hook(self, name: str) -> Any:
        def hook(layer: nn.Module, inputs: Any, output: Any) -> None:
            if not isinstance(output, Tensor) or not output.is_floating_point():
                return
            output = output.detach()
            if self.first_nonfinite is None and not bool(torch.isfinite(output).all()):
                finite_in = all(bool(torch.isfinite(i).all()) for i in inputs if isinstance(i, Tensor) and i.is_floating_point())
                self.first_nonfinite = (name, type(layer).__name__, finite_in)
            if next(layer.children(), None) is None and name not in self.layers:
                self.layers[name] = _describe(layer, output)
        return hook


def _describe(layer: nn.Module, output: Tensor) -> LayerTrace:
    finite = output[torch.isfinite(output)].float()
    mean = float(finite.mean()) if finite.numel() else float("nan")
    std = float(finite.std()) if finite.numel() > 1 else 0.0
    if isinstance(layer, RELU_LIKE) and output.dim() >= 2:
        unit_dim = output.dim() - 1 if output.dim() == 3 else 1  # (N, T, F): features last; (N, C, ...): channels
        fired = (output != 0).transpose(0, unit_dim).reshape(output.shape[unit_dim], -1).any(dim=1)
        return LayerTrace("relu", mean, std, float((~fired).float().mean()))
    limits = next((limits for kind, limits in SATURATING.items() if isinstance(layer, kind)), None)
    if limits is not None:
        low, high = limits
        margin = NEAR_LIMIT * (high - low)
        pinned = (output <= low + margin) | (output >= high - margin)
        return LayerTrace("saturating", mean, std, float(pinned.float().mean()))
    return LayerTrace("other", mean, std)
