"""Per-layer activation statistics from forward hooks that exist only on sampled steps."""

from __future__ import annotations

from functools import cached_property
from typing import Any

import lightning.pytorch as L
import torch
from lightning.pytorch.callbacks import Callback
from lightning.pytorch.utilities import rank_zero_warn
from torch import Tensor, nn
from torch.utils.hooks import RemovableHandle
from typing_extensions import override

from ._compat import generate_state_key
from ._modules import ModuleSpec, describe_spec, normalize_module_spec, select_modules
from ._validation import check_int


class ActivationMonitor(Callback):
    """Log the mean, std and dead fraction of chosen layers' outputs every ``log_every_n_steps`` optimizer steps.

    Forward hooks are registered in ``on_train_batch_start`` of a sampled step and
    removed as soon as the forward pass is over (``on_before_backward``, or at the
    latest ``on_train_batch_end``), so the other steps carry no hooks and no cost, and
    activation checkpointing does not record the recomputed forward. Sampled steps are
    the optimizer steps ``0, n, 2n, ...`` (``trainer.global_step`` before the update,
    ``n = log_every_n_steps``, by default the trainer's; none when that is 0); under
    gradient accumulation only the first micro-batch of a sampled step is measured.
    The statistics stay on the device until one transfer at the end of the batch (one
    host sync per sampled step). Each rank measures its own batch; rank zero's loggers
    record rank zero's values.

    Statistics of a layer output ``x`` (the first tensor if the layer returns a tuple),
    with the batch along dimension 0:

    * ``mean``: mean over all elements.
    * ``std``: population standard deviation over all elements (``correction=0``).
    * ``dead_fraction``: fraction of units that are ``<= 0`` for every sample of the
      batch, a unit being one element of ``x[i]`` (the output without the batch
      dimension). For ReLU this is the classic dead-ReLU fraction; ``<= 0`` also covers
      leaky or smooth activations (GELU, SiLU) that never turn positive.

    Logged keys, sent straight to the trainer's loggers at the sampled step's
    ``trainer.global_step`` (as counted before its update):

    * ``activations/<layer>/mean``
    * ``activations/<layer>/std``
    * ``activations/<layer>/dead_fraction``

    ``<layer>`` is the module's name in ``pl_module.named_modules()`` (``net.1``). A
    module called several times in one forward (one activation module reused across
    blocks) gets one entry per call: ``<layer>``, ``<layer>@1``, ``<layer>@2``, ...
    Activations applied with ``torch.nn.functional`` have no module and cannot be
    hooked. The latest values are also kept in :attr:`last_metrics`.

    Args:
        log_every_n_steps: Measure every this many optimizer steps; ``None`` follows the
            trainer's ``log_every_n_steps``. Default ``None``.
        modules: Layer types and/or ``fnmatch`` patterns over module names
            (``"blocks.*.act"``); a layer matching either is measured. Default
            :attr:`DEFAULT_MODULES` (the activation modules of ``torch.nn``).

    Attributes:
        last_metrics: The metrics of the latest sampled step, by key.

    Raises:
        ValueError: If ``log_every_n_steps`` is below 1 or ``modules`` is empty.
        TypeError: If an argument has the wrong type.

    Example::

        import lightning.pytorch as L
        from lit_callbacks import ActivationMonitor

        trainer = L.Trainer(callbacks=[ActivationMonitor(log_every_n_steps=100)])
    """

    DEFAULT_MODULES: tuple[type[nn.Module], ...] = (
        nn.ReLU,
        nn.ReLU6,
        nn.LeakyReLU,
        nn.PReLU,
        nn.RReLU,
        nn.ELU,
        nn.SELU,
        nn.CELU,
        nn.GELU,
        nn.SiLU,
        nn.Mish,
        nn.Softplus,
        nn.Hardswish,
        nn.Hardsigmoid,
        nn.Hardtanh,
        nn.Tanh,
        nn.Sigmoid,
    )

    def __init__(
        self,
        log_every_n_steps: int | None = None,
        modules: ModuleSpec | tuple[ModuleSpec, ...] = DEFAULT_MODULES,
    ) -> None:
        if log_every_n_steps is not None:
            check_int("log_every_n_steps", log_every_n_steps, minimum=1)
        self.log_every_n_steps = log_every_n_steps
        self._interval = log_every_n_steps  # resolved against the trainer in `setup`
        self.modules = normalize_module_spec("modules", modules)
        self.last_metrics: dict[str, float] = {}
        self._handles: list[RemovableHandle] = []
        self._stats: list[tuple[str, Tensor]] = []
        self._sampled_step: int | None = None
        self._warned_empty = False

    # Cached: Lightning reads the key around every hook call, and it only names constructor arguments.
    @cached_property
    @override
    def state_key(self) -> str:
        return generate_state_key(self, log_every_n_steps=self.log_every_n_steps, modules=describe_spec(self.modules))

    @override
    def setup(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        if self.log_every_n_steps is None:
            self._interval = trainer.log_every_n_steps

    @override
    def on_train_batch_start(
        self, trainer: L.Trainer, pl_module: L.LightningModule, batch: Any, batch_idx: int
    ) -> None:
        step = trainer.global_step
        if self._interval == 0 or step % self._interval != 0 or step == self._sampled_step:
            return
        self._sampled_step = step
        self._attach(pl_module)

    @override
    def on_before_backward(self, trainer: L.Trainer, pl_module: L.LightningModule, loss: Tensor) -> None:
        self._detach()

    @override
    def on_train_batch_end(
        self, trainer: L.Trainer, pl_module: L.LightningModule, outputs: Any, batch: Any, batch_idx: int
    ) -> None:
        self._detach()
        if self._stats:
            self._log(trainer)

    @override
    def on_exception(self, trainer: L.Trainer, pl_module: L.LightningModule, exception: BaseException) -> None:
        self._detach()
        self._stats = []

    @override
    def teardown(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        self._detach()
        self._stats = []

    def _attach(self, pl_module: L.LightningModule) -> None:
        layers = select_modules(pl_module, self.modules)
        if not layers and not self._warned_empty:
            self._warned_empty = True
            rank_zero_warn(
                f"ActivationMonitor: no module matches modules=({describe_spec(self.modules)}). Activations applied"
                " with torch.nn.functional cannot be hooked: use nn.ReLU-style modules or pass module-name patterns."
            )
        self._stats = []
        self._handles = [layer.register_forward_hook(self._make_hook(name)) for name, layer in layers]

    def _detach(self) -> None:
        for handle in self._handles:
            handle.remove()
        self._handles = []

    def _make_hook(self, name: str):
        calls = 0

        def hook(module: nn.Module, args: Any, output: Any) -> None:
            nonlocal calls
            x = output[0] if isinstance(output, (tuple, list)) and output else output
            if not isinstance(x, Tensor) or not x.is_floating_point():
                return
            key = name if calls == 0 else f"{name}@{calls}"
            calls += 1
            self._stats.append((key, _activation_stats(x.detach())))

        return hook

    def _log(self, trainer: L.Trainer) -> None:
        names = [name for name, _ in self._stats]
        values = torch.stack([stats for _, stats in self._stats]).tolist()  # the one host sync
        self._stats = []
        metrics = {}
        for name, (mean, std, dead) in zip(names, values):
            metrics[f"activations/{name}/mean"] = mean
            metrics[f"activations/{name}/std"] = std
            metrics[f"activations/{name}/dead_fraction"] = dead
        self.last_metrics = metrics
        for logger in trainer.loggers:
            logger.log_metrics(metrics, step=self._sampled_step)


def _activation_stats(x: Tensor) -> Tensor:
    """``[mean, std, dead_fraction]`` of a layer output as one float32 tensor on its device."""
    samples = x.reshape(x.shape[0], -1) if x.ndim >= 2 else x.reshape(1, -1)
    std, mean = torch.std_mean(samples.float(), correction=0)
    dead = (samples <= 0).all(dim=0).float().mean()
    return torch.stack([mean, std, dead])
