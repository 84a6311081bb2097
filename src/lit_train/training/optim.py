"""Optimizer and LR-scheduler wiring for any LightningModule.

The config layer turns the ``optimizer`` and ``scheduler`` groups into an
:class:`Optimization`; :func:`attach_optimizers` gives a module that has no
``configure_optimizers`` of its own one that builds them.
"""

import functools
import inspect
import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import lightning.pytorch as L
from lightning.pytorch.plugins.precision import MixedPrecision
from lightning.pytorch.utilities import rank_zero_info
from lightning.pytorch.utilities.model_helpers import is_overridden
from torch import nn
from torch.optim import Optimizer

from lit_train._compat import fused_or_foreach

_NORM_LAYERS = (
    nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d, nn.LazyBatchNorm1d, nn.LazyBatchNorm2d, nn.LazyBatchNorm3d,
    nn.SyncBatchNorm, nn.InstanceNorm1d, nn.InstanceNorm2d, nn.InstanceNorm3d, nn.LazyInstanceNorm1d,
    nn.LazyInstanceNorm2d, nn.LazyInstanceNorm3d, nn.LayerNorm, nn.GroupNorm, nn.LocalResponseNorm, nn.RMSNorm,
)


def param_groups(module: nn.Module, weight_decay: float, decay_norm_and_bias: bool = False) -> list[dict[str, Any]]:
    """Splits trainable parameters into a decayed and an undecayed group.

    Biases, normalization weights and other parameters with fewer than two
    dimensions get no weight decay unless ``decay_norm_and_bias``: decaying them
    only pulls scales and offsets toward zero without regularizing anything.

    Example::

        >>> groups = param_groups(nn.Sequential(nn.Linear(2, 2), nn.LayerNorm(2)), weight_decay=0.1)
        >>> [(len(g["params"]), g["weight_decay"]) for g in groups]
        [(1, 0.1), (3, 0.0)]
    """
    decay, no_decay, seen = [], [], set()
    for layer in module.modules():
        for param in layer.parameters(recurse=False):
            # Tied weights (e.g. a GPT's embedding and output head) belong to one group once.
            if not param.requires_grad or id(param) in seen:
                continue
            seen.add(id(param))
            exempt = isinstance(layer, _NORM_LAYERS) or param.ndim < 2
            (no_decay if exempt and not decay_norm_and_bias else decay).append(param)
    groups = [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
    return [group for group in groups if group["params"]]


#: The values of :attr:`Optimization.kernel`.
KERNELS = ("auto", "default")


def kernel_arguments(factory: Callable[..., Optimizer], groups: list[dict[str, Any]],
                     fused: bool = True) -> dict[str, bool]:
    """The ``fused`` or ``foreach`` argument that runs ``factory``'s optimizer fastest over ``groups``' parameters.

    ``{"fused": True}`` when ``fused`` is allowed, the optimizer takes ``fused`` and every parameter
    is a floating-point tensor on a device with fused kernels; else ``{"foreach": True}`` when it
    takes ``foreach`` and every parameter's device has foreach kernels; else nothing. Nothing
    either when ``factory`` already sets one of them: the config's explicit choice stands.

    Example::

        >>> import torch
        >>> kernel_arguments(functools.partial(torch.optim.AdamW, lr=0.1), [{"params": [torch.zeros(2)]}])
        {'fused': True}
    """
    keywords = getattr(factory, "keywords", {})
    if keywords.get("fused") is not None or keywords.get("foreach") is not None:
        return {}
    try:
        accepted = inspect.signature(getattr(factory, "func", factory)).parameters
    except (TypeError, ValueError):  # a callable without a readable signature: leave its kernels alone
        return {}
    params = [param for group in groups for param in group["params"]]
    use_fused = fused and "fused" in accepted
    fused, foreach = fused_or_foreach(params, bool(keywords.get("differentiable")), use_fused=use_fused)
    if fused:
        return {"fused": True}
    return {"foreach": True} if foreach and "foreach" in accepted else {}


@dataclass(frozen=True)
class Optimization:
    """How to build a module's optimizer and LR scheduler.

    Attributes:
        optimizer: ``params -> Optimizer``, e.g. ``functools.partial(torch.optim.AdamW, lr=1e-3)``.
        scheduler: ``optimizer -> LRScheduler`` (or ``None``); its length argument is filled in.
        interval: ``step`` or ``epoch``: when Lightning steps the scheduler.
        frequency: Step the scheduler every this many intervals.
        monitor: Metric a plateau scheduler steps on.
        length_arg: The scheduler argument that receives the run's length, if any.
        decay_norm_and_bias: Apply weight decay to biases and normalization weights too.
        scale_lr: ``none``, ``linear`` or ``sqrt``: scale the LR with the effective batch
            (``batch_size`` x devices x nodes x accumulation) relative to ``base_batch_size``.
        base_batch_size: The batch size the configured LR is meant for.
        batch_size: The per-device batch size.
        kernel: ``auto``: the fused or foreach kernel where the parameters' devices have it
            (:func:`kernel_arguments`); ``default``: PyTorch's own choice.
    """

    optimizer: Callable[..., Optimizer]
    scheduler: Callable[..., Any] | None = None
    interval: str = "epoch"
    frequency: int = 1
    monitor: str | None = None
    length_arg: str | None = None
    decay_norm_and_bias: bool = False
    scale_lr: str = "none"
    base_batch_size: int | None = None
    batch_size: int | None = None
    kernel: str = "default"

    def lr_factor(self, trainer: "L.Trainer") -> float:
        """What the configured LRs are multiplied by, for the run's effective batch size."""
        if self.scale_lr == "none" or not self.batch_size or not self.base_batch_size:
            return 1.0
        ratio = self.batch_size * trainer.world_size * trainer.accumulate_grad_batches / self.base_batch_size
        return ratio if self.scale_lr == "linear" else math.sqrt(ratio)

    def build(self, module: nn.Module, run_length: int, lr_factor: float = 1.0,
              fused: bool = True) -> tuple[Optimizer, Any]:
        """The optimizer over ``module``'s parameter groups, and the scheduler (or ``None``).

        Args:
            module: Whose parameters to optimize.
            run_length: The run's length in scheduler intervals, for the scheduler's length argument.
            lr_factor: Multiplies the optimizer's LR and a scheduler's absolute LRs (``max_lr``, ``base_lr``).
            fused: Whether ``kernel=auto`` may pick a fused kernel.
        """
        keywords = getattr(self.optimizer, "keywords", {})
        factory = self.optimizer
        if lr_factor != 1.0:
            factory = functools.partial(self.optimizer, lr=keywords["lr"] * lr_factor)
        groups = param_groups(module, keywords.get("weight_decay", 0.0), self.decay_norm_and_bias)
        optimizer = factory(groups, **(kernel_arguments(factory, groups, fused) if self.kernel == "auto" else {}))
        return optimizer, self.build_scheduler(optimizer, run_length, lr_factor)

    def build_scheduler(self, optimizer: Optimizer, run_length: int, lr_factor: float = 1.0) -> Any:
        """The scheduler over ``optimizer`` (or ``None``), its length argument set to ``run_length``."""
        if self.scheduler is None:
            return None
        scheduler_keywords = getattr(self.scheduler, "keywords", {})
        kwargs = {key: scheduler_keywords[key] * lr_factor for key in ("max_lr", "base_lr") if key in scheduler_keywords}
        if self.length_arg and self.length_arg not in scheduler_keywords:
            kwargs[self.length_arg] = run_length
        return self.scheduler(optimizer, **kwargs)

    def run_length(self, trainer: "L.Trainer") -> int:
        """The run's length in scheduler intervals."""
        return int(trainer.estimated_stepping_batches) if self.interval == "step" else int(trainer.max_epochs)

    def lr_scheduler_config(self, scheduler: Any) -> dict[str, Any]:
        """``scheduler`` as Lightning's ``lr_scheduler`` entry: when to step it, and on what metric."""
        config = {"scheduler": scheduler, "interval": self.interval, "frequency": self.frequency}
        if self.monitor is not None:
            config["monitor"] = self.monitor
        return config

    def configure(self, module: L.LightningModule) -> Any:
        """Builds the optimizer (and scheduler) for ``module``, in Lightning's return format."""
        trainer = module.trainer
        factor = self.lr_factor(trainer)
        if factor != 1.0:
            effective = self.batch_size * trainer.world_size * trainer.accumulate_grad_batches
            rank_zero_info(
                f"lit_train: LR x{factor:.4g} by the {self.scale_lr} rule "
                f"(effective batch {effective} / base batch {self.base_batch_size})"
            )
        # Lightning's mixed precision refuses to clip the gradients of a fused optimizer, which unscales them itself.
        clipped_amp = isinstance(trainer.precision_plugin, MixedPrecision) and bool(trainer.gradient_clip_val)
        optimizer, scheduler = self.build(module, self.run_length(trainer), factor, fused=not clipped_amp)
        if scheduler is None:
            return optimizer
        return {"optimizer": optimizer, "lr_scheduler": self.lr_scheduler_config(scheduler)}


@dataclass(eq=False)
class GroupSchedule:
    """The scheduler group, for a module that builds its own optimizer and takes a ``scheduler`` argument.

    ``scheduler(optimizer)`` is Lightning's ``lr_scheduler`` entry for ``optimizer``:
    the group's scheduler with its length set to the run's, and when to step it::

        def configure_optimizers(self):
            optimizer = self.optimizer(self.head.parameters())
            return {"optimizer": optimizer, "lr_scheduler": self.scheduler(optimizer)}

    Attributes:
        optimization: The groups as the run applies them.
        module: The module it belongs to, whose trainer knows the run's length; set once the module exists.
    """

    optimization: Optimization
    module: L.LightningModule | None = None

    def __call__(self, optimizer: Optimizer) -> dict[str, Any]:
        length = self.optimization.run_length(self.module.trainer)
        return self.optimization.lr_scheduler_config(self.optimization.build_scheduler(optimizer, length))


def attach_optimizers(module: L.LightningModule, optimization: Optimization) -> bool:
    """Gives ``module`` a ``configure_optimizers`` built from ``optimization``, unless it has its own.

    Returns:
        Whether it was attached (``False`` when the module defines ``configure_optimizers``).

    Example::

        >>> from lit_train.modules import Regressor
        >>> import torch
        >>> module = Regressor(nn.Linear(1, 1))
        >>> attach_optimizers(module, Optimization(functools.partial(torch.optim.SGD, lr=0.1)))
        True
    """
    if is_overridden("configure_optimizers", module, L.LightningModule):
        return False
    # A partial (not a lambda) keeps the module picklable for spawn-based strategies.
    module.configure_optimizers = functools.partial(optimization.configure, module)
    return True
