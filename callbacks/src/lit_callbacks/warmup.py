"""LR warmup in front of any scheduler, including ReduceLROnPlateau, or none."""

from __future__ import annotations

import math
from functools import cached_property, partial
from typing import Any

import lightning.pytorch as L
from lightning.pytorch.callbacks import Callback, LearningRateMonitor
from lightning.pytorch.utilities import rank_zero_warn
from torch import Tensor
from torch.optim import Optimizer
from torch.utils.hooks import RemovableHandle
from typing_extensions import override

from ._compat import generate_state_key
from ._validation import check_choice, check_int, check_number


class Warmup(Callback):
    """Scale the LR up over the first optimizer steps, in front of whatever scheduler runs.

    At optimizer step ``k`` (0-based, ``k = trainer.global_step``, so gradient
    accumulation counts optimizer steps, not batches) every param group trains with
    ``lr_k * factor(k)``, where ``lr_k`` is the LR the configured scheduler (or none) has
    set. With ``n`` warmup steps, ``s = start_factor`` and ``t = k / n``:

    * ``"linear"``: ``factor(k) = s + (1 - s) * k / n``
    * ``"cosine"``: ``factor(k) = s + (1 - s) * (1 - cos(pi * t)) / 2``
    * ``"exponential"``: ``factor(k) = s ** (1 - t)`` (needs ``s > 0``)

    and ``factor(k) = 1`` for ``k >= n``. Step 0 uses ``start_factor``; from step ``n`` on
    the callback leaves the LR alone, so it is exactly (bitwise) what the scheduler alone
    produces.

    The scheduler never sees the warmed LR: the factor is put on the param groups in
    ``on_train_batch_start`` (so ``LearningRateMonitor`` listed *after* ``Warmup`` logs
    the effective LR) and again right before the update, and the scheduler's own LR is
    written back right after ``optimizer.step()`` (or before it when the step is skipped,
    e.g. by the AMP grad scaler). Schedulers that compute the next LR from the current
    one (StepLR, ExponentialLR, MultiStepLR, LinearLR, ReduceLROnPlateau, ...) therefore
    follow their own curve, whether they step per step or per epoch. This works with
    every ``torch.optim`` scheduler, with none, and with manual optimization (the factor
    is then applied inside each ``optimizer.step()``).

    ``n`` is ``steps``, or ``round(ratio * trainer.estimated_stepping_batches)`` (at least
    1) when ``ratio`` is given; it must be below ``trainer.estimated_stepping_batches``.
    The resolved ``n`` is saved in checkpoints, so a resumed run keeps the warmup it
    started with, and continues mid-warmup exactly where it stopped. Nothing is logged.
    :meth:`factor` and :meth:`resolve_steps` are public so schedules can be previewed
    without training (:func:`lit_callbacks.preview_lr`).

    Args:
        steps: Warmup length in optimizer steps. Default ``None``.
        ratio: Warmup length as a fraction of the run's optimizer steps, in ``(0, 1)``.
            Default ``None``. Give exactly one of ``steps`` and ``ratio``.
        start_factor: Factor at step 0, in ``[0, 1]``. Default ``0.0``.
        mode: ``"linear"``, ``"cosine"`` or ``"exponential"``. Default ``"linear"``.

    Raises:
        ValueError: If both or neither of ``steps``/``ratio`` are given, an argument is out
            of range or not one of the allowed values; in ``on_fit_start`` if the warmup is
            not shorter than the run.
        TypeError: If an argument has the wrong type.

    Example::

        import lightning.pytorch as L
        from lightning.pytorch.callbacks import LearningRateMonitor
        from lit_callbacks import Warmup

        trainer = L.Trainer(max_steps=1000, callbacks=[Warmup(ratio=0.05), LearningRateMonitor()])
    """

    MODES = ("cosine", "exponential", "linear")

    def __init__(
        self,
        steps: int | None = None,
        ratio: float | None = None,
        start_factor: float = 0.0,
        mode: str = "linear",
    ) -> None:
        if (steps is None) == (ratio is None):
            raise ValueError(f"Give exactly one of `steps` and `ratio`, got steps={steps!r}, ratio={ratio!r}")
        if steps is not None:
            check_int("steps", steps, minimum=1)
        if ratio is not None:
            check_number("ratio", ratio, minimum=0.0, strict=True)
            if not ratio < 1.0:
                raise ValueError(f"`ratio` must be < 1, got {ratio!r}")
        check_number("start_factor", start_factor, minimum=0.0)
        if start_factor > 1.0:
            raise ValueError(f"`start_factor` must be <= 1, got {start_factor!r}")
        check_choice("mode", mode, self.MODES)
        if mode == "exponential" and start_factor == 0.0:
            raise ValueError("`start_factor` must be > 0 with mode='exponential', got 0.0")
        self.steps = steps
        self.ratio = ratio
        self.start_factor = float(start_factor)
        self.mode = mode

        self.num_steps: int | None = steps
        self._armed = False
        self._own_lrs: dict[int, list[float]] = {}
        self._handles: list[RemovableHandle] = []

    # Cached: Lightning reads the key around every hook call, and it only names constructor arguments.
    @cached_property
    @override
    def state_key(self) -> str:
        return generate_state_key(
            self, steps=self.steps, ratio=self.ratio, mode=self.mode, start_factor=self.start_factor
        )

    @override
    def state_dict(self) -> dict[str, Any]:
        return {"num_steps": self.num_steps}

    @override
    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.num_steps = state_dict.get("num_steps", self.num_steps)

    def resolve_steps(self, total_steps: float) -> int:
        """The warmup length ``n`` for a run of ``total_steps`` optimizer steps.

        Args:
            total_steps: Optimizer steps of the whole run (``math.inf`` if unknown).

        Raises:
            ValueError: If ``ratio`` is set and ``total_steps`` is infinite, or if the
                warmup is not shorter than the run.
        """
        if self.steps is not None:
            steps = self.steps
        elif math.isinf(total_steps):
            raise ValueError(
                "Warmup(ratio=...) needs a run of known length, but trainer.estimated_stepping_batches is inf."
                " Set `max_steps` or `max_epochs` with a sized dataloader, or give `steps` instead."
            )
        else:
            steps = max(1, round(self.ratio * total_steps))
        self._check_shorter(steps, total_steps)
        return steps

    @staticmethod
    def _check_shorter(steps: int, total_steps: float) -> None:
        if not steps < total_steps:
            raise ValueError(
                f"Warmup of {steps} optimizer steps is not shorter than the run's {total_steps} optimizer steps"
                " (trainer.estimated_stepping_batches). Lower `steps`/`ratio`, or train longer"
                " (`max_steps`/`max_epochs`)."
            )

    def factor(self, step: int, num_steps: int) -> float:
        """The LR factor at optimizer step ``step`` (0-based) of a warmup of ``num_steps`` steps."""
        if step >= num_steps:
            return 1.0
        start = self.start_factor
        if self.mode == "linear":
            return start + (1.0 - start) * step / num_steps
        if self.mode == "cosine":
            return start + (1.0 - start) * (1.0 - math.cos(math.pi * step / num_steps)) / 2.0
        return start ** (1.0 - step / num_steps)

    @override
    def setup(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        monitors = [i for i, callback in enumerate(trainer.callbacks) if isinstance(callback, LearningRateMonitor)]
        if monitors and self in trainer.callbacks and monitors[0] < trainer.callbacks.index(self):
            rank_zero_warn(
                "LearningRateMonitor comes before Warmup in `callbacks`, so it logs the LR without the warmup"
                " factor. List Warmup first to log the effective LR."
            )

    @override
    def on_fit_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        total = trainer.estimated_stepping_batches
        if trainer.ckpt_path is None or self.num_steps is None:
            self.num_steps = self.resolve_steps(total)
        else:  # resumed: keep the length the run started with
            self._check_shorter(self.num_steps, total)

    @override
    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._remove_hooks()
        for optimizer in trainer.optimizers:
            self._handles.append(optimizer.register_step_pre_hook(partial(self._before_step, trainer)))
            self._handles.append(optimizer.register_step_post_hook(self._after_step))

    @override
    def on_train_batch_start(self, trainer: L.Trainer, pl_module: L.LightningModule, batch: Any, batch_idx: int) -> None:
        self._armed = True
        if pl_module.automatic_optimization:
            for optimizer in trainer.optimizers:
                self._warm(optimizer, trainer.global_step)

    @override
    def on_before_optimizer_step(self, trainer: L.Trainer, pl_module: L.LightningModule, optimizer: Optimizer) -> None:
        self._unwarm(optimizer)  # if the step is skipped, the scheduler must still see its own LR

    @override
    def on_train_batch_end(
        self, trainer: L.Trainer, pl_module: L.LightningModule, outputs: Any, batch: Any, batch_idx: int
    ) -> None:
        self._disarm(trainer)

    @override
    def on_train_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._disarm(trainer)
        self._remove_hooks()

    @override
    def on_exception(self, trainer: L.Trainer, pl_module: L.LightningModule, exception: BaseException) -> None:
        self._disarm(trainer)
        self._remove_hooks()

    def _before_step(self, trainer: L.Trainer, optimizer: Optimizer, args: tuple, kwargs: dict) -> tuple | None:
        """Optimizer pre-step hook: warm the LR for the update, after the closure (forward/backward) has run."""
        if not self._armed:
            return None  # a step outside the training batch (e.g. an LR range test): leave it alone
        step = trainer.global_step
        closure = kwargs["closure"] if "closure" in kwargs else args[1] if len(args) > 1 else None  # args[0] is self
        if closure is None:
            self._warm(optimizer, step)
            return None

        def warmed_closure() -> Any:
            loss = closure()
            self._warm(optimizer, step)  # after on_before_optimizer_step, which runs inside the closure
            return loss

        if "closure" in kwargs:
            return args, {**kwargs, "closure": warmed_closure}
        return (args[0], warmed_closure, *args[2:]), kwargs

    def _after_step(self, optimizer: Optimizer, args: tuple, kwargs: dict) -> None:
        self._unwarm(optimizer)

    def _warm(self, optimizer: Optimizer, step: int) -> None:
        factor = self.factor(step, self.num_steps)
        key = id(optimizer)
        if factor == 1.0 and key not in self._own_lrs:
            return
        own = self._own_lrs.setdefault(key, [float(group["lr"]) for group in optimizer.param_groups])
        for group, lr in zip(optimizer.param_groups, own):
            _set_lr(group, lr * factor)

    def _unwarm(self, optimizer: Optimizer) -> None:
        own = self._own_lrs.pop(id(optimizer), None)
        if own is not None:
            for group, lr in zip(optimizer.param_groups, own):
                _set_lr(group, lr)

    def _disarm(self, trainer: L.Trainer) -> None:
        self._armed = False
        for optimizer in trainer.optimizers:
            self._unwarm(optimizer)

    def _remove_hooks(self) -> None:
        for handle in self._handles:
            handle.remove()
        self._handles = []


def _set_lr(group: dict[str, Any], value: float) -> None:
    if isinstance(group["lr"], Tensor):
        group["lr"].fill_(value)
    else:
        group["lr"] = value
