"""Per-layer gradient norms, non-finite gradient handling and vanishing/exploding warnings."""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence
from functools import cached_property
from typing import Any

import lightning.pytorch as L
import torch
from lightning.pytorch.callbacks import Callback
from lightning.pytorch.strategies import DeepSpeedStrategy, FSDPStrategy, ModelParallelStrategy
from lightning.pytorch.utilities import rank_zero_warn
from torch import Tensor
from torch.optim import Optimizer
from torch.utils.hooks import RemovableHandle
from typing_extensions import override

from ._compat import (
    clear_found_inf,
    foreach_norm,
    generate_state_key,
    non_finite_check_and_unscale_,
    set_found_inf,
    skips_step_on_found_inf,
)
from ._norms import norm_dtype
from ._validation import check_bool, check_choice, check_int, check_number



class GradientMonitor(Callback):
    """Log per-layer gradient L2 norms and act on non-finite gradients.

    Norms are measured in ``on_before_optimizer_step``: after the gradients of all
    accumulated micro-batches are summed, after AMP unscaling and DDP's all-reduce,
    and before gradient clipping. That hook runs once per optimizer step, so gradient
    accumulation yields one measurement per step.

    Every optimizer step reads every gradient once and never syncs per parameter. A logged
    step (every ``log_every_n_steps``) and every step of the device skip take
    ``torch._foreach_norm`` of all gradients (L2): a NaN or Inf element makes its
    gradient's norm non-finite, and the same norms give the per-layer norms, copied to the
    host in a single transfer. A finite gradient whose L2 norm overflows float32 (elements
    around 1e19) reads as non-finite too; the host check then tells the two apart with an
    exact max-abs check, the device skip drops that step too. On the host check, a step
    that logs nothing takes no norms: the kernel a gradient scaler checks for overflow with
    (at a scale of 1, which writes every value back as it was) flags any NaN or Inf exactly.

    Where the check's result goes depends on the optimizer and device:

    * **Host check** (the default on CPU, and for optimizers without a fused
      implementation): the flag is read on the host every step (one transfer, which on
      a CPU costs no wait) and acted on at once.
    * **Device skip** (the default on accelerators when the optimizer can skip a step on
      the device: ``torch.optim`` Adam, AdamW and SGD with ``fused=True``): the flag is
      handed to the optimizer as its ``found_inf``, the same mechanism a gradient scaler
      uses, so the fused kernel drops the update (weights, moments and step count) on
      the device without the host waiting. The host reads the flag only on logged
      steps, in the same transfer as the norms: at most one host sync per logged step.
      Dropped steps are counted and reported then, and a ``"stop"`` takes effect at that
      logged step (every non-finite step before it was already dropped). When nothing
      is logged (an interval of 0), the host reads the flag every step instead.

    What ``on_nonfinite`` does when any gradient holds a NaN or Inf:

    * ``"stop"``: drops the update of that step (every gradient of the optimizer is set
      to ``None``, so the optimizer leaves the weights and its state alone), sets
      ``trainer.should_stop`` and warns. Training ends after the current batch, as for
      any ``should_stop`` (``min_epochs``/``min_steps`` still apply; each further
      non-finite step is dropped too).
    * ``"skip"``: drops the update of that step the same way and counts it in
      ``skipped_steps``; training goes on, unless more than ``max_skipped_fraction``
      of the optimizer steps so far were dropped (see below).
    * ``"warn"``: only warns; the optimizer applies the update.

    The warning counts the parameters whose gradient holds a NaN or Inf and names the
    first :attr:`NAMED_PARAMETERS` of them in ``named_parameters()`` order ("3
    parameters have non-finite gradients: net.0.weight, net.0.bias, net.2.weight"). It
    also says whether the step's loss was already non-finite (a forward problem: NaN or
    Inf in the data, or an overflow in the model) or finite (a backward problem: an
    overflow in the backward pass, a custom autograd function or a gradient hook). The
    losses are kept, unread, from ``on_before_backward``; the names and the loss are
    read only once a step is non-finite, on the host check in the one extra transfer of
    the exact check, on the device skip in the transfer that reports the step.

    A run that skips most of its steps can still look healthy: its loss is that of the
    few steps that went through. With ``"skip"``, once ``skipped_steps / n`` exceeds
    ``max_skipped_fraction``, where ``n`` is the number of optimizer steps run so far
    (the current one included, ``trainer.global_step + 1``), the monitor sets
    ``trainer.should_stop``, warns with the count and the fraction, and sets
    ``stopped_reason`` to ``"too_many_skipped_steps"``. A fraction of a few steps means
    little (one drop in the first step is 100%), so the cap is checked only once
    ``n >= ceil(1 / max_skipped_fraction)``: a single dropped step never stops training
    by itself, and an early burst of drops stops it at that step if it is still above
    the fraction then. On the host check the cap is checked every step; on the device
    skip, where the counts are read only on logged steps, it takes effect at the step
    that reads them (and at the end of training). ``skipped_steps`` and the trainer's
    step both come back on resume, so the fraction carries on where it was; both are
    the same on every rank, so all ranks stop on the same step.

    Under fp16 mixed precision with a gradient scaler, non-finite gradients are the
    scaler's normal overflow signal: the scaler already skips those steps, so the
    monitor does not act on them.

    Under DDP all ranks see the same all-reduced gradients, and the non-finite flag is
    additionally reduced across ranks, so every rank drops or stops on the same step.
    Each rank names its own non-finite parameters (or says they are on another rank);
    the loss counts as non-finite if it is on any rank.
    Sharded strategies (FSDP, DeepSpeed, model parallel) are supported for the
    non-finite check, but the logged norms are those of each rank's own shard.

    Logged keys, sent straight to the trainer's loggers at step ``trainer.global_step``
    on optimizer steps ``0, n, 2n, ...`` (``n = log_every_n_steps``, by default the
    trainer's; none when that is 0):

    * ``grad_norm/<layer>``: L2 norm of the layer's gradients. With
      ``per="module"`` the layer is the path of the module owning the parameter
      (``net.0`` for ``net.0.weight`` and ``net.0.bias``; a parameter registered
      directly on the LightningModule uses its own name). With ``per="parameter"``
      it is the full parameter name (``net.0.weight``).
    * ``grad_norm/total``: global L2 norm over all gradients of the optimizer.
    * ``grad_norm/skipped_steps``: number of optimizer steps dropped so far.

    Layers whose parameters are all frozen (``requires_grad=False``) are left out of the logs.
    A layer whose trainable parameters got no gradient in a step (detached from the loss) is
    logged as ``0.0``. A frozen parameter that still holds a gradient (set by hand, or left by
    ``zero_grad(set_to_none=False)``) is checked like any other: torch optimizers apply it.

    The latest logged values are also kept in :attr:`last_metrics`.

    A layer whose norm is below ``vanishing`` (or above ``exploding``) on ``patience``
    consecutive logged steps gets one rank-zero warning naming it.

    Args:
        log_every_n_steps: Log the norms every this many optimizer steps; ``None`` follows
            the trainer's ``log_every_n_steps``. Default ``None``.
        per: ``"module"`` or ``"parameter"``: how gradients are grouped into layers.
            Default ``"module"``.
        on_nonfinite: ``"stop"``, ``"skip"`` or ``"warn"``. Default ``"stop"``.
        vanishing: Norm below which a layer counts as vanishing; ``None`` disables the
            check. Default ``1e-7``.
        exploding: Norm above which a layer counts as exploding; ``None`` disables the
            check. Default ``1e3``.
        patience: Consecutive logged steps a layer must stay vanishing or exploding
            before the warning. Default ``3``.
        skip_on_device: ``True`` forces the device skip (the optimizer must support it),
            ``False`` the host check; ``None`` picks the device skip on accelerators where
            the optimizer supports it. Default ``None``.
        max_skipped_fraction: With ``on_nonfinite="skip"``, stop training once more than
            this fraction of the optimizer steps were dropped; in ``(0, 1]`` (``1.0`` never
            stops), ``None`` disables the cap. Default ``0.1``.

    Attributes:
        skipped_steps: Optimizer steps whose update was dropped (``"skip"``/``"stop"``).
        stop_message: The message of the stop, or ``None``.
        stopped_reason: One of :attr:`REASONS` once this monitor stopped training:
            ``"non_finite_gradient"`` after a non-finite stop, ``"too_many_skipped_steps"``
            after the skip cap; else ``None``.
        last_metrics: The metrics of the latest logged step, by key.

    Raises:
        ValueError: If an argument is out of range or not one of the allowed values.
        TypeError: If an argument has the wrong type.

    Example::

        import lightning.pytorch as L
        from lit_callbacks import GradientMonitor

        trainer = L.Trainer(callbacks=[GradientMonitor(log_every_n_steps=10, on_nonfinite="skip")])
    """

    PER = ("module", "parameter")
    ON_NONFINITE = ("stop", "skip", "warn")
    NAMED_PARAMETERS = 5  # a non-finite report names this many parameters, then counts the rest
    REASONS = ("non_finite_gradient", "too_many_skipped_steps")

    def __init__(
        self,
        log_every_n_steps: int | None = None,
        per: str = "module",
        on_nonfinite: str = "stop",
        vanishing: float | None = 1e-7,
        exploding: float | None = 1e3,
        patience: int = 3,
        skip_on_device: bool | None = None,
        max_skipped_fraction: float | None = 0.1,
    ) -> None:
        if log_every_n_steps is not None:
            check_int("log_every_n_steps", log_every_n_steps, minimum=1)
        check_choice("per", per, self.PER)
        check_choice("on_nonfinite", on_nonfinite, self.ON_NONFINITE)
        if vanishing is not None:
            check_number("vanishing", vanishing, minimum=0.0)
        if exploding is not None:
            check_number("exploding", exploding, minimum=0.0, strict=True)
        if vanishing is not None and exploding is not None and not vanishing < exploding:
            raise ValueError(
                f"`vanishing` must be below `exploding`, got vanishing={vanishing!r}, exploding={exploding!r}"
            )
        check_int("patience", patience, minimum=1)
        check_bool("skip_on_device", skip_on_device, allow_none=True)
        if max_skipped_fraction is not None:
            check_number("max_skipped_fraction", max_skipped_fraction, minimum=0.0, strict=True, maximum=1.0)
        self.skip_on_device = skip_on_device
        self.max_skipped_fraction = max_skipped_fraction
        self.log_every_n_steps = log_every_n_steps
        self._interval = log_every_n_steps  # resolved against the trainer in `setup`
        self.per = per
        self.on_nonfinite = on_nonfinite
        self.vanishing = vanishing
        self.exploding = exploding
        self.patience = patience

        self.skipped_steps = 0
        self.stop_message: str | None = None
        self.stopped_reason: str | None = None
        self.last_metrics: dict[str, float] = {}
        self._streaks: dict[str, dict[str, int]] = {"vanishing": {}, "exploding": {}}
        self._warned: set[tuple[str, str]] = set()
        self._layout_key: tuple[int, int] | None = None
        self._layout: list[tuple[torch.nn.Parameter, int]] = []
        self._device_skip = False  # decided with the layout: per optimizer, device and trainer, not per step
        self._sparse = False  # whether a gradient is sparse (nn.Embedding(sparse=True)): decided with the layout
        # The host check's (found, scale of 1) for the scaler's fused check; None where that kernel cannot run.
        self._finite_check: tuple[Tensor, Tensor] | None = None
        self._layers: list[str] = []
        self._names: list[str] = []  # parameter names, in layout order
        self._index_key: Sequence[int] | None = None
        self._index: Tensor | None = None
        self._losses: list[Tensor] = []  # this optimizer step's losses, read only once a gradient is non-finite
        # Device-skip bookkeeping, read on logged steps, since the last read: [non-finite steps, of which the loss
        # was seen, of which it was non-finite, then per parameter in layout order: non-finite steps].
        self._pending: Tensor | None = None
        self._unread_steps = 0  # steps recorded in _pending since the host last read it
        self._carried = _NonFinite()  # unreported steps restored from a checkpoint
        # Clears found_inf after each step of the device skip's optimizer: one left there would drop every later step
        # that this monitor does not check (a hook on the optimizer, as no callback hook follows its step directly).
        self._clear_after_step: RemovableHandle | None = None

    # Cached: Lightning reads the key around every hook call, and it only names constructor arguments.
    # Only the arguments that tell two monitors apart: a new argument here would orphan older checkpoints.
    @cached_property
    @override
    def state_key(self) -> str:
        return generate_state_key(
            self, per=self.per, on_nonfinite=self.on_nonfinite, log_every_n_steps=self.log_every_n_steps
        )

    @override
    def setup(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        if self.log_every_n_steps is None:
            self._interval = trainer.log_every_n_steps
        if isinstance(trainer.strategy, (FSDPStrategy, DeepSpeedStrategy, ModelParallelStrategy)):
            rank_zero_warn(
                f"GradientMonitor under {type(trainer.strategy).__name__}: logged gradient norms cover only each"
                " rank's parameter shard; the non-finite check still covers all ranks."
            )

    @override
    def teardown(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        self._stop_clearing()
        self._layout_key, self._layout, self._layers, self._names = None, [], [], []
        self._index_key, self._index, self._finite_check = None, None, None
        self._losses = []

    @override
    def on_before_backward(self, trainer: L.Trainer, pl_module: L.LightningModule, loss: Tensor) -> None:
        self._losses.append(loss.detach())  # kept, not read: no host sync

    @override
    def on_before_optimizer_step(self, trainer: L.Trainer, pl_module: L.LightningModule, optimizer: Optimizer) -> None:
        self._check_gradients(trainer, pl_module, optimizer)

    @override
    def on_train_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._report_pending(trainer, trainer.global_step - 1)

    def _uses_device_skip(self, trainer: L.Trainer, optimizer: Optimizer, device: torch.device) -> bool:
        if self._scaler_handles_nonfinite(trainer):
            return False  # the scaler owns found_inf and already skips overflowing steps
        supported = skips_step_on_found_inf(optimizer)
        if self.skip_on_device is None:
            return supported and device.type != "cpu"
        if self.skip_on_device and not supported:
            raise ValueError(
                f"GradientMonitor(skip_on_device=True) needs an optimizer that can skip a step on the device"
                f" (torch.optim.Adam, AdamW or SGD with fused=True), got {type(optimizer).__name__}"
            )
        return self.skip_on_device

    def _check_gradients(self, trainer: L.Trainer, pl_module: L.LightningModule, optimizer: Optimizer) -> None:
        losses, self._losses = self._losses, []
        step = trainer.global_step
        layout = self._param_layout(trainer, pl_module, optimizer)
        log_now = self._interval > 0 and step % self._interval == 0
        if not (log_now or self._device_skip):
            if not self._all_finite(trainer, layout):
                self._act_on_nonfinite(trainer, optimizer, step, *self._present_gradients(layout), losses)
            if self.skipped_steps:  # the cap can only be passed once a step was dropped
                self._check_skipped_fraction(trainer, step)
            return

        grads, present = self._present_gradients(layout)
        if not grads:
            return
        # Per-gradient L2 norms: one fused kernel, reused for logging. A NaN or Inf anywhere makes
        # its norm non-finite; so does a finite gradient above ~1e19, told apart below when it happens.
        # (An inf-norm would be exact, but on a CPU it is an order of magnitude slower.)
        norms = torch.stack(foreach_norm(grads, 2, dtype=norm_dtype(grads[0])))
        if self._device_skip:
            self._defer(trainer, optimizer, norms, self._present_index(present, norms.device), losses)
            if log_now:
                self._log_with_pending(trainer, step, norms, present)
            elif self._interval == 0:  # no logged step would ever report a drop, or let a stop take effect
                self._report_pending(trainer, step)
            return
        # The host check of a logged step: the sum of the norms is finite only if every gradient is, on every rank.
        total = self._any_rank(trainer, norms.sum(), op="sum")
        values = torch.cat([total.reshape(1), norms]).tolist()  # the one host sync
        if not math.isfinite(values[0]):
            self._act_on_nonfinite(trainer, optimizer, step, grads, present, losses)
        self._check_skipped_fraction(trainer, step)
        self._log(trainer, step, *self._layer_norms(values[1:], present))

    def _present_gradients(self, layout: list[tuple[torch.nn.Parameter, int]]) -> tuple[list[Tensor], Sequence[int]]:
        """The gradients the optimizer is about to apply, and their positions in the layout.

        Parameters without a gradient this step (frozen, or detached from the loss) are left
        out; a sparse gradient is replaced by its values (see :func:`_values`).
        """
        grads = [param.grad for param, _ in layout]
        if self._sparse:
            grads = [_values(grad) for grad in grads]
        present: Sequence[int] = range(len(layout))
        if any(grad is None for grad in grads):
            present = [i for i, grad in enumerate(grads) if grad is not None]
            grads = [grads[i] for i in present]
        return grads, present

    def _all_finite(self, trainer: L.Trainer, layout: list[tuple[torch.nn.Parameter, int]]) -> bool:
        """The host check of a step that logs nothing: whether every gradient element is finite on every rank.

        The gradient scaler's fused check reads every element once, in one kernel, and is exact.
        It is first given every parameter's gradient as it stands, the common case: a ``None``
        among them (frozen, or detached) makes it refuse the list at once, and the gradients of
        :meth:`_present_gradients` go in instead. Where the check cannot run (a device without
        the kernel, or gradients set by hand that overlap in memory) the sum of the per-gradient
        sums stands in: a NaN or Inf anywhere makes it non-finite, as does an overflow, which
        ``_find_nonfinite`` tells apart. Every path reduces one flag over ranks by a sum, so that
        every rank makes the same collective call whichever it took.
        """
        if self._sparse or not self._fused_check([param.grad for param, _ in layout]):
            grads = self._present_gradients(layout)[0]
            if not grads:
                return True
            if not self._fused_check(grads):
                dtype = norm_dtype(grads[0])
                total = self._any_rank(trainer, torch.stack([grad.sum(dtype=dtype) for grad in grads]).sum(), op="sum")
                return math.isfinite(total.item())  # the one host sync
        return not self._any_rank(trainer, self._finite_check[0], op="sum").item()  # the one host sync

    def _fused_check(self, grads: list[Tensor]) -> bool:
        """Runs the scaler's fused check of ``grads`` into ``found``; False where it cannot."""
        if self._finite_check is None:
            return False
        found, one = self._finite_check
        try:
            non_finite_check_and_unscale_(grads, found.zero_(), one)
        except TypeError:  # a None among the gradients
            return False
        except (RuntimeError, NotImplementedError):
            self._finite_check = None  # until the layout changes
            return False
        return True

    def _act_on_nonfinite(
        self,
        trainer: L.Trainer,
        optimizer: Optimizer,
        step: int,
        grads: list[Tensor],
        present: Sequence[int],
        losses: list[Tensor],
    ) -> None:
        """After a non-finite total on the host check: finds the non-finite gradients and acts on them."""
        if self._scaler_handles_nonfinite(trainer):
            return
        found = self._find_nonfinite(trainer, grads, present, losses)
        if found.steps > 0:
            self._handle_nonfinite(trainer, optimizer, step, found)

    def _find_nonfinite(
        self, trainer: L.Trainer, grads: list[Tensor], present: Sequence[int], losses: list[Tensor]
    ) -> _NonFinite:
        """After a non-finite sum of norms: which gradients hold a NaN or Inf, and was the loss finite (one sync)."""
        bad = ~torch.isfinite(torch.stack(foreach_norm(grads, math.inf)))
        loss_bad = self._loss_nonfinite(losses, bad.device) if losses else bad.new_zeros(())
        flags = self._any_rank(trainer, torch.stack([bad.any(), loss_bad]).float())  # any rank's gradients, loss
        values = torch.cat([flags, bad.float()]).tolist()
        names = tuple(self._names[present[i]] for i, value in enumerate(values[2:]) if value > 0)
        seen = int(bool(losses))
        return _NonFinite(int(values[0] > 0), seen, seen * int(values[1] > 0), names)

    @staticmethod
    def _loss_nonfinite(losses: list[Tensor], device: torch.device) -> Tensor:
        """Whether a loss of the step holds a NaN or Inf, as a 0-dim tensor on ``device`` (no host sync)."""
        return ~torch.cat([loss.reshape(-1) for loss in losses]).isfinite().all().to(device)

    def _layer_norms(self, norms: list[float], present: Sequence[int]) -> tuple[list[float], float]:
        """Each layer's L2 norm and the total, from the per-gradient norms read on the host.

        A few floats a parameter, summed in double precision: cheaper than the handful of
        small kernels the same sums take on the device.
        """
        squares = [0.0] * len(self._layers)
        for position, norm in zip(present, norms):
            squares[self._layout[position][1]] += norm * norm
        return [math.sqrt(square) for square in squares], math.sqrt(sum(squares))

    def _defer(
        self, trainer: L.Trainer, optimizer: Optimizer, norms: Tensor, index: Tensor, losses: list[Tensor]
    ) -> None:
        """Drops a non-finite step on the device and records it there, for the next logged step to report."""
        bad = ~torch.isfinite(norms)
        loss_bad = self._loss_nonfinite(losses, bad.device) if losses else bad.new_zeros(())
        flags = self._any_rank(trainer, torch.stack([bad.any(), loss_bad]).float())  # any rank's gradients, loss
        if self.on_nonfinite != "warn":
            set_found_inf(optimizer, flags[0])
        size = 3 + len(self._names)
        if self._pending is None or self._pending.numel() != size:
            self._pending = torch.zeros(size, device=norms.device)
        self._pending[0] += flags[0]
        if losses:
            self._pending[1] += flags[0]
            self._pending[2] += flags[0] * flags[1]
        self._pending[3:].index_add_(0, index, bad.float())
        self._unread_steps += 1

    def _log_with_pending(self, trainer: L.Trainer, step: int, norms: Tensor, present: Sequence[int]) -> None:
        size = self._pending.numel()
        values = torch.cat([self._pending, norms]).tolist()  # the one host sync
        self._pending.zero_()
        self._unread_steps = 0
        self._act_on_pending(trainer, step, self._read_pending(values[:size]))
        self._log(trainer, step, *self._layer_norms(values[size:], present))

    def _report_pending(self, trainer: L.Trainer, step: int) -> None:
        """Reports non-finite steps dropped on the device since the last logged step (one sync, if any)."""
        values = [0.0, 0.0, 0.0]
        if self._pending is not None and self._unread_steps:
            values = self._pending.tolist()
            self._pending.zero_()
            self._unread_steps = 0
        self._act_on_pending(trainer, step, self._read_pending(values))

    def _read_pending(self, values: list[float]) -> _NonFinite:
        """The device-skip record read on the host, plus what a checkpoint carried over (then forgotten)."""
        found = self._carried.plus(self._decode(values))
        self._carried = _NonFinite()
        return found

    def _decode(self, values: list[float]) -> _NonFinite:
        names = tuple(name for name, steps in zip(self._names, values[3:]) if steps > 0)
        return _NonFinite(*(int(value) for value in values[:3]), names)

    def _act_on_pending(self, trainer: L.Trainer, step: int, found: _NonFinite) -> None:
        if found.steps > 0:
            self._report_drops(trainer, step, found)
        self._check_skipped_fraction(trainer, step)  # the counts are current up to `step` only here

    def _report_drops(self, trainer: L.Trainer, step: int, found: _NonFinite) -> None:
        message = self._describe(f"{found.steps} non-finite gradient step(s) up to optimizer step {step};", found)
        if self.on_nonfinite == "warn":
            rank_zero_warn(message)
            return
        self.skipped_steps += found.steps
        if self.on_nonfinite == "skip":
            rank_zero_warn(f"{message} Skipped them on the device ({self.skipped_steps} skipped so far).")
            return
        self._stop(
            trainer,
            f"{message} Stopped training; their updates were dropped, so the weights stay finite.",
            "non_finite_gradient",
        )

    def _check_skipped_fraction(self, trainer: L.Trainer, step: int) -> None:
        """Stops training once the dropped steps exceed ``max_skipped_fraction`` of the ``step + 1`` steps so far.

        ``skipped_steps`` counts steps whose non-finite flag was reduced over all ranks, and
        ``step`` is the trainer's: every rank computes the same decision without a collective.
        """
        fraction = self.max_skipped_fraction
        if fraction is None or self.on_nonfinite != "skip" or self.stopped_reason is not None:
            return
        steps = step + 1
        # integer over integer: a fraction exactly at the cap (1 of 10 for 0.1) compares equal, not above
        if steps < math.ceil(1 / fraction) or not self.skipped_steps / steps > fraction:
            return
        self._stop(
            trainer,
            f"{self.skipped_steps} of the {steps} optimizer steps so far ({self.skipped_steps / steps:.0%}) were"
            f" skipped for non-finite gradients, more than max_skipped_fraction={fraction}. Stopped training.",
            "too_many_skipped_steps",
        )

    def _describe(self, when: str, found: _NonFinite) -> str:
        """``when``, which parameters have non-finite gradients, and whether the forward or backward pass made them."""
        count = len(found.parameters)
        if count == 0:
            which = "the non-finite gradients are on another rank."
        else:
            shown = ", ".join(found.parameters[: self.NAMED_PARAMETERS])
            more = f" and {count - self.NAMED_PARAMETERS} more" if count > self.NAMED_PARAMETERS else ""
            which = f"{count} parameter{'s have' if count > 1 else ' has'} non-finite gradients: {shown}{more}."
        if found.loss_seen == 0:
            return f"{when} {which}"
        if found.loss_nonfinite == found.loss_seen:
            cause = (
                "The loss was already non-finite: a forward problem (NaN/Inf in the data, or an overflow in the model)."
            )
        elif found.loss_nonfinite == 0:
            cause = (
                "The loss was finite: a backward problem (an overflow in the backward pass, a custom autograd function"
                " or a gradient hook)."
            )
        else:
            cause = (
                f"The loss was already non-finite in {found.loss_nonfinite} of these steps (a forward problem) and"
                " finite in the others (a backward problem)."
            )
        return f"{when} {which} {cause}"

    @staticmethod
    def _any_rank(trainer: L.Trainer, value: Tensor, op: str = "max") -> Tensor:
        """``value`` reduced over all ranks (``op``: ``"max"`` or ``"sum"``), without a host sync."""
        if trainer.world_size == 1:
            return value
        if torch.distributed.is_available() and torch.distributed.is_initialized():
            # a bare all_reduce: the strategy's reduce adds a barrier, which blocks the host under NCCL
            reduce_op = torch.distributed.ReduceOp.MAX if op == "max" else torch.distributed.ReduceOp.SUM
            torch.distributed.all_reduce(value, op=reduce_op)
            return value
        return trainer.strategy.reduce(value, reduce_op=op)

    def _param_layout(
        self, trainer: L.Trainer, pl_module: L.LightningModule, optimizer: Optimizer
    ) -> list[tuple[torch.nn.Parameter, int]]:
        """The optimizer's parameters in ``named_parameters()`` order, each with its layer index (cached).

        Frozen parameters are in it too, so that unfreezing one (fine-tuning) changes nothing here: each step
        reads the gradients there are, and each log leaves out the layers with none trainable.
        """
        groups = optimizer.param_groups
        key = (id(optimizer), sum(len(group["params"]) for group in groups))
        if key == self._layout_key:
            return self._layout
        if self._unread_steps > 0:  # the device-skip record is laid out by parameter: report it first (a rare sync)
            self._report_pending(trainer, trainer.global_step - 1)
        in_optimizer = {id(param) for group in groups for param in group["params"]}
        layers: dict[str, int] = {}
        layout, names = [], []
        for name, param in pl_module.named_parameters():
            if id(param) not in in_optimizer:
                continue
            layer = name if self.per == "parameter" else (name.rpartition(".")[0] or name)
            layout.append((param, layers.setdefault(layer, len(layers))))
            names.append(name)
        self._layout_key, self._layout, self._layers, self._names = key, layout, list(layers), names
        self._index_key = None
        self._stop_clearing()
        # Decided once per layout, as a per-step look at every gradient's layout would cost more than the check.
        self._sparse = any(getattr(module, "sparse", False) is True for module in pl_module.modules()) or any(
            param.grad is not None and param.grad.is_sparse for param, _ in layout
        )
        if layout:
            device = layout[0][0].device
            self._device_skip = self._uses_device_skip(trainer, optimizer, device)
            if self._device_skip:
                self._clear_after_step = optimizer.register_step_post_hook(_clear_found_inf)
            # float32, as the kernel requires, whatever the default dtype
            self._finite_check = (torch.zeros(1, dtype=torch.float32, device=device),
                                  torch.ones(1, dtype=torch.float32, device=device))
        return layout

    def _stop_clearing(self) -> None:
        if self._clear_after_step is not None:
            self._clear_after_step.remove()
            self._clear_after_step = None

    def _present_index(self, present: Sequence[int], device: torch.device) -> Tensor:
        """Device tensor of each present gradient's position in the layout, cached."""
        if present != self._index_key or self._index is None or self._index.device != device:
            self._index = torch.tensor(list(present), dtype=torch.long, device=device)
            self._index_key = present
        return self._index

    @staticmethod
    def _scaler_handles_nonfinite(trainer: L.Trainer) -> bool:
        return getattr(trainer.precision_plugin, "scaler", None) is not None

    def _handle_nonfinite(self, trainer: L.Trainer, optimizer: Optimizer, step: int, found: _NonFinite) -> None:
        message = self._describe(f"At optimizer step {step},", found)
        if self.on_nonfinite == "warn":
            rank_zero_warn(message)
            return
        self._drop_update(optimizer)
        self.skipped_steps += 1
        if self.on_nonfinite == "skip":
            rank_zero_warn(f"{message} Skipped this optimizer step ({self.skipped_steps} skipped so far).")
            return
        self._stop(
            trainer,
            f"{message} Stopped training; the update of this step was dropped, so the weights stay finite.",
            "non_finite_gradient",
        )

    def _stop(self, trainer: L.Trainer, message: str, reason: str) -> None:
        self.stop_message = (
            f"{message} Lower the learning rate, clip gradients (Trainer(gradient_clip_val=1.0)) or check the data for NaN."
        )
        self.stopped_reason = reason
        trainer.should_stop = True
        rank_zero_warn(self.stop_message)

    @staticmethod
    def _drop_update(optimizer: Optimizer) -> None:
        """Make the running ``optimizer.step`` a no-op: torch optimizers skip parameters whose ``grad`` is ``None``.

        Zeroed gradients would not do: Adam, momentum SGD and weight decay still move the
        weights and advance their state on a zero gradient.
        """
        for group in optimizer.param_groups:
            for param in group["params"]:
                param.grad = None

    def _log(self, trainer: L.Trainer, step: int, layer_norms: list[float], total: float) -> None:
        trainable = {layer for param, layer in self._layout if param.requires_grad}
        norms = {layer: norm for index, (layer, norm) in enumerate(zip(self._layers, layer_norms)) if index in trainable}
        metrics = {f"grad_norm/{layer}": norm for layer, norm in norms.items()}
        metrics["grad_norm/total"] = total
        metrics["grad_norm/skipped_steps"] = float(self.skipped_steps)
        self.last_metrics = metrics
        for logger in trainer.loggers:
            logger.log_metrics(metrics, step=step)
        self._track_health(norms)

    def _track_health(self, layer_norms: dict[str, float]) -> None:
        for layer, norm in layer_norms.items():
            self._update_streak("vanishing", layer, self.vanishing is not None and norm < self.vanishing, norm)
            self._update_streak("exploding", layer, self.exploding is not None and norm > self.exploding, norm)

    def _update_streak(self, kind: str, layer: str, hit: bool, norm: float) -> None:
        streaks = self._streaks[kind]
        streaks[layer] = streaks.get(layer, 0) + 1 if hit else 0
        if streaks[layer] < self.patience or (kind, layer) in self._warned:
            return
        self._warned.add((kind, layer))
        if kind == "vanishing":
            where, hint = f"below vanishing={self.vanishing}", "the layer may be dead or detached from the loss"
        else:
            where, hint = f"above exploding={self.exploding}", "lower the learning rate or clip gradients"
        rank_zero_warn(
            f"Gradient norm of layer '{layer}' stayed {where} for {self.patience} logged steps"
            f" (latest {norm:.3g}): {hint}."
        )

    @override
    def state_dict(self) -> dict[str, Any]:
        pending = self._carried
        if self._pending is not None and self._unread_steps:  # a host read, as saving is rare
            pending = pending.plus(self._decode(self._pending.tolist()))
        return {
            # non-finite steps the device skip recorded but has not reported yet
            "pending": dataclasses.asdict(pending),
            "skipped_steps": self.skipped_steps,
            "stop_message": self.stop_message,
            "stopped_reason": self.stopped_reason,
            "streaks": {kind: dict(streaks) for kind, streaks in self._streaks.items()},
            "warned": sorted(self._warned),
        }

    @override
    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.skipped_steps = state_dict.get("skipped_steps", 0)
        self.stop_message = state_dict.get("stop_message")
        # before the skip cap, a stop message could only come from a non-finite stop
        default_reason = "non_finite_gradient" if self.stop_message is not None else None
        self.stopped_reason = state_dict.get("stopped_reason", default_reason)
        pending = state_dict.get("pending", {})
        if isinstance(pending, list):  # before parameters were named: [steps, first bad layer + 1]
            pending = {"steps": int(pending[0])}
        self._carried = _NonFinite(**{**pending, "parameters": tuple(pending.get("parameters", ()))})
        self._pending, self._unread_steps = None, 0
        streaks = state_dict.get("streaks", {})
        self._streaks = {kind: dict(streaks.get(kind, {})) for kind in ("vanishing", "exploding")}
        self._warned = {tuple(entry) for entry in state_dict.get("warned", [])}


def _clear_found_inf(optimizer: Optimizer, args: Any, kwargs: Any) -> None:
    """An optimizer step post-hook: the step is done, so the flag that could drop it goes."""
    clear_found_inf(optimizer)


def _values(grad: Tensor | None) -> Tensor | None:
    """A gradient as a strided tensor with the same norm and the same NaN/Inf, for the fused kernels.

    A sparse gradient (``nn.Embedding(sparse=True)``) becomes its coalesced values: summing
    duplicate indices first keeps the norm exact, and the kernels run on strided tensors only.
    """
    return grad.coalesce().values() if grad is not None and grad.is_sparse else grad


@dataclasses.dataclass(frozen=True)
class _NonFinite:
    """Optimizer steps with non-finite gradients, to report in one message.

    ``steps`` counts them; ``loss_seen`` and ``loss_nonfinite`` count those whose loss
    ``on_before_backward`` saw, and of these those whose loss was non-finite;
    ``parameters`` names the parameters whose gradient was non-finite.
    """

    steps: int = 0
    loss_seen: int = 0
    loss_nonfinite: int = 0
    parameters: tuple[str, ...] = ()

    def plus(self, other: _NonFinite) -> _NonFinite:
        """Both records in one, each parameter named once."""
        return _NonFinite(
            self.steps + other.steps,
            self.loss_seen + other.loss_seen,
            self.loss_nonfinite + other.loss_nonfinite,
            tuple(dict.fromkeys(self.parameters + other.parameters)),
        )
