"""L1 and L2 weight penalties applied directly to the gradients."""

from __future__ import annotations

from functools import cached_property

import lightning.pytorch as L
import torch
from lightning.pytorch.callbacks import Callback
from torch import nn
from torch.optim import Optimizer
from typing_extensions import override

from ._compat import foreach_add_, foreach_norm, foreach_sign, generate_state_key
from ._norms import norm_dtype
from ._validation import check_bool, check_number


class WeightPenalty(Callback):
    r"""Add the gradient of an L1 and an L2 weight penalty to the gradients before each optimizer step.

    The penalty is :math:`\lambda_1 \sum |w| + \lambda_2 \sum w^2` (note: no factor
    :math:`\tfrac12`), so each selected weight's gradient gets
    ``l1 * sign(w) + 2 * l2 * w`` added in ``on_before_optimizer_step``, with two fused
    ``torch._foreach_add_`` calls. The resulting update is the one you would get by
    adding the penalty to the loss, for any module and without touching
    ``training_step``: it is applied once per optimizer step (after gradient
    accumulation, AMP unscaling and DDP's all-reduce, before clipping), to the weights
    as they are before the step. ``sign(0) = 0``, as autograd's gradient of ``|w|`` at 0.

    Unlike an optimizer's ``weight_decay`` this is a true loss term: inside Adam it is
    rescaled by the adaptive step like any other gradient (prefer AdamW's decoupled decay
    when that is what you want). Parameters without a gradient in a step (unused,
    frozen, or a step dropped by :class:`~lit_callbacks.GradientMonitor`) are left alone,
    so put ``WeightPenalty`` after ``GradientMonitor`` in ``callbacks`` if the logged
    norms should exclude the penalty, before it if they should include it.

    Logged keys, through ``pl_module.log`` on the steps where Lightning's
    ``log_every_n_steps`` logs (``(global_step + 1) % log_every_n_steps == 0``), only for
    a non-zero coefficient:

    * ``penalty/l1``: ``l1 * sum(|w|)`` over the penalized weights, before the update.
    * ``penalty/l2``: ``l2 * sum(w ** 2)`` over the penalized weights, before the update.

    Args:
        l1: Coefficient :math:`\lambda_1` of the L1 penalty. Default ``0.0``.
        l2: Coefficient :math:`\lambda_2` of the L2 penalty. Default ``0.0``.
        exclude_bias_and_norm: Leave out parameters with ``ndim <= 1`` (biases, norm
            scales) and every parameter of a normalization layer (batch, group, layer,
            instance, RMS and local-response norm). Default ``True``.

    Raises:
        ValueError: If ``l1`` or ``l2`` is negative or not finite.
        TypeError: If ``l1`` or ``l2`` is not a number.

    Example::

        import lightning.pytorch as L
        from lit_callbacks import WeightPenalty

        trainer = L.Trainer(callbacks=[WeightPenalty(l2=1e-4)])
    """

    NORM_LAYERS = (
        nn.BatchNorm1d,
        nn.BatchNorm2d,
        nn.BatchNorm3d,
        nn.LazyBatchNorm1d,
        nn.LazyBatchNorm2d,
        nn.LazyBatchNorm3d,
        nn.SyncBatchNorm,
        nn.InstanceNorm1d,
        nn.InstanceNorm2d,
        nn.InstanceNorm3d,
        nn.LazyInstanceNorm1d,
        nn.LazyInstanceNorm2d,
        nn.LazyInstanceNorm3d,
        nn.GroupNorm,
        nn.LayerNorm,
        nn.LocalResponseNorm,
        nn.RMSNorm,
    )

    def __init__(self, l1: float = 0.0, l2: float = 0.0, exclude_bias_and_norm: bool = True) -> None:
        check_number("l1", l1, minimum=0.0)
        check_number("l2", l2, minimum=0.0)
        check_bool("exclude_bias_and_norm", exclude_bias_and_norm)
        self.l1 = float(l1)
        self.l2 = float(l2)
        self.exclude_bias_and_norm = exclude_bias_and_norm
        self._params: list[nn.Parameter] | None = None

    # Cached: Lightning reads the key around every hook call, and it only names constructor arguments.
    @cached_property
    @override
    def state_key(self) -> str:
        return generate_state_key(self, l1=self.l1, l2=self.l2, exclude_bias_and_norm=self.exclude_bias_and_norm)

    @override
    def setup(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        self._params = None  # chosen at the first step, after `configure_model` and the strategy's setup

    @override
    def teardown(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        self._params = None

    def penalized_parameters(self, module: nn.Module) -> list[nn.Parameter]:
        """The trainable parameters of ``module`` this callback penalizes, in registration order."""
        selected, seen = [], set()
        for submodule in module.modules():
            is_norm = isinstance(submodule, self.NORM_LAYERS)
            for param in submodule.parameters(recurse=False):
                if id(param) in seen or not param.requires_grad:
                    continue
                seen.add(id(param))
                if self.exclude_bias_and_norm and (is_norm or param.ndim <= 1):
                    continue
                selected.append(param)
        return selected

    @override
    def on_before_optimizer_step(self, trainer: L.Trainer, pl_module: L.LightningModule, optimizer: Optimizer) -> None:
        if self.l1 == 0.0 and self.l2 == 0.0:
            return
        self._apply(trainer, pl_module)

    def _apply(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if self._params is None:
            self._params = self.penalized_parameters(pl_module)
        params = [param for param in self._params if param.grad is not None]
        if not params:
            return
        every = trainer.log_every_n_steps
        if every > 0 and (trainer.global_step + 1) % every == 0:
            self._log_penalty(pl_module, params)
        self._add_penalty_gradient(params)

    @torch.no_grad()
    def _add_penalty_gradient(self, params: list[nn.Parameter]) -> None:
        grads = [param.grad for param in params]
        if self.l1 != 0.0:
            foreach_add_(grads, foreach_sign(params), alpha=self.l1)
        if self.l2 != 0.0:
            foreach_add_(grads, params, alpha=2.0 * self.l2)

    @torch.no_grad()
    def _log_penalty(self, pl_module: L.LightningModule, params: list[nn.Parameter]) -> None:
        values = {}
        if self.l1 != 0.0:
            values["penalty/l1"] = self.l1 * torch.stack(foreach_norm(params, 1, dtype=norm_dtype(params[0]))).sum()
        if self.l2 != 0.0:
            norms = torch.stack(foreach_norm(params, 2, dtype=norm_dtype(params[0])))
            values["penalty/l2"] = self.l2 * norms.square().sum()
        pl_module.log_dict(values, on_step=True, on_epoch=False, batch_size=1)
