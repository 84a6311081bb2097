"""Initialize chosen layers at the start of a fresh fit."""

from __future__ import annotations

import math
from collections.abc import Callable
from functools import cached_property
from typing import Any

import lightning.pytorch as L
import torch
from lightning.pytorch.callbacks import Callback
from lightning.pytorch.utilities import rank_zero_info, rank_zero_warn
from torch import Tensor, nn
from typing_extensions import override

from ._compat import generate_state_key
from ._modules import ModuleSpec, describe_spec, normalize_module_spec, select_modules
from ._validation import check_choice, check_int, check_number


class WeightInit(Callback):
    r"""Initialize the weights and biases of chosen layers when a fresh fit starts.

    Runs in ``on_fit_start`` and never when the fit resumes from a checkpoint
    (``trainer.fit(..., ckpt_path=...)``, detected by ``trainer.ckpt_path`` or by this
    callback's state being restored), so resumed weights are never overwritten. Put it
    before an LR finder in ``callbacks`` so the range test sees the initialized weights.

    All values are drawn from a private generator seeded with ``seed`` (or with a seed
    drawn from torch's global RNG on rank 0 and broadcast), so every DDP rank gets the
    same weights and ``seed_everything`` makes the result reproducible.

    Schemes, for a weight with fans ``fan_in``/``fan_out`` (``fan = fan_in`` or
    ``fan_out`` as chosen by ``mode``) and ``gain``:

    * ``"he"`` (Kaiming): ``std = gain / sqrt(fan)``; ``gain`` defaults to
      ``torch.nn.init.calculate_gain(nonlinearity)`` (``sqrt(2)`` for ReLU).
    * ``"xavier"`` (Glorot): ``std = gain * sqrt(2 / (fan_in + fan_out))``; ``gain``
      defaults to ``1.0``.
    * ``"orthogonal"``: a (semi-)orthogonal matrix scaled by ``gain`` (default ``1.0``).
    * ``"normal"``: a fixed ``std`` (default ``0.02``, as in GPT-2).
    * ``"zeros"``: all zeros (e.g. for a residual branch's output layer).

    ``distribution="uniform"`` draws from ``U(-sqrt(3) std, sqrt(3) std)`` instead of
    ``N(0, std^2)``, matching PyTorch's ``*_uniform_`` initializers. Biases are filled
    with ``bias``. Lazy layers that are not yet materialized are left out. The
    initializer logs nothing.

    Args:
        scheme: One of ``"he"``, ``"xavier"``, ``"orthogonal"``, ``"normal"``,
            ``"zeros"``. Default ``"he"``.
        distribution: ``"normal"`` or ``"uniform"`` (used by ``"he"``, ``"xavier"``,
            ``"normal"``). Default ``"normal"``.
        bias: Value every bias of a chosen layer is filled with; ``None`` leaves biases
            as they are. Default ``0.0``.
        modules: Layer types and/or ``fnmatch`` patterns over module names
            (``"head.*"``); a layer matching either is initialized. Default
            ``(nn.Linear, nn.Conv2d)``.
        nonlinearity: The activation after the layer, for the ``"he"`` gain; one of
            :attr:`NONLINEARITIES`. Default ``"relu"``.
        gain: Explicit gain overriding the defaults above. Default ``None``.
        mode: ``"fan_in"`` (preserves forward variance) or ``"fan_out"`` (backward) for
            ``"he"``. Default ``"fan_in"``.
        std: Standard deviation of the ``"normal"`` scheme. Default ``0.02``.
        seed: Seed of the initializer's generator; ``None`` draws one from torch's
            global RNG. Default ``None``.

    Attributes:
        initialized: Names of the layers initialized by the latest fit (empty when it
            resumed from a checkpoint).

    Raises:
        ValueError: If an argument is not one of the allowed values or out of range.
        TypeError: If an argument has the wrong type.

    Example::

        import lightning.pytorch as L
        from torch import nn
        from lit_callbacks import WeightInit

        trainer = L.Trainer(callbacks=[WeightInit("xavier", modules=(nn.Linear,), bias=0.0)])
    """

    SCHEMES = ("he", "xavier", "orthogonal", "normal", "zeros")
    DISTRIBUTIONS = ("normal", "uniform")
    MODES = ("fan_in", "fan_out")
    NONLINEARITIES = ("linear", "conv1d", "conv2d", "conv3d", "sigmoid", "tanh", "relu", "leaky_relu", "selu")

    def __init__(
        self,
        scheme: str = "he",
        distribution: str = "normal",
        bias: float | None = 0.0,
        modules: ModuleSpec | tuple[ModuleSpec, ...] = (nn.Linear, nn.Conv2d),
        nonlinearity: str = "relu",
        gain: float | None = None,
        mode: str = "fan_in",
        std: float = 0.02,
        seed: int | None = None,
    ) -> None:
        check_choice("scheme", scheme, self.SCHEMES)
        check_choice("distribution", distribution, self.DISTRIBUTIONS)
        check_choice("nonlinearity", nonlinearity, self.NONLINEARITIES)
        check_choice("mode", mode, self.MODES)
        if bias is not None:
            check_number("bias", bias)
        if gain is not None:
            check_number("gain", gain, minimum=0.0, strict=True)
        check_number("std", std, minimum=0.0)
        if seed is not None:
            check_int("seed", seed, minimum=0)
        self.scheme = scheme
        self.distribution = distribution
        self.bias = bias
        self.modules = normalize_module_spec("modules", modules)
        self.nonlinearity = nonlinearity
        self.gain = gain
        self.mode = mode
        self.std = std
        self.seed = seed
        self.initialized: list[str] = []
        self._restored = False

    # Cached: Lightning reads the key around every hook call, and it only names constructor arguments.
    @cached_property
    @override
    def state_key(self) -> str:
        return generate_state_key(self, scheme=self.scheme, modules=describe_spec(self.modules))

    @override
    def on_fit_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if trainer.ckpt_path is not None or self._restored:
            self.initialized = []
            self._restored = False
            rank_zero_info("WeightInit: resuming from a checkpoint, so the checkpoint's weights are kept.")
            return
        seed = self.seed if self.seed is not None else trainer.strategy.broadcast(int(torch.randint(2**62, ()).item()))
        self.initialized = self.initialize(pl_module, seed)

    def initialize(self, module: nn.Module, seed: int) -> list[str]:
        """Initialize the chosen layers of ``module`` in place and return their names.

        Usable without a Trainer, e.g. ``WeightInit("xavier").initialize(model, seed=0)``.
        """
        layers = [(name, layer) for name, layer in select_modules(module, self.modules) if _weight(layer) is not None]
        if not layers:
            rank_zero_warn(f"WeightInit: no layer with a `weight` matches modules=({describe_spec(self.modules)}).")
            return []
        generator = torch.Generator().manual_seed(seed)
        for name, layer in layers:
            weight = _weight(layer)
            if weight.ndim < 2 and self.scheme not in ("normal", "zeros"):
                raise ValueError(
                    f"WeightInit scheme {self.scheme!r} needs weights with at least 2 dimensions, but layer"
                    f" '{name}' has shape {tuple(weight.shape)}: narrow `modules` or use scheme 'normal'/'zeros'."
                )
            _fill(weight, lambda tensor: self._draw(tensor, generator))
            bias = getattr(layer, "bias", None)
            if self.bias is not None and isinstance(bias, Tensor):
                with torch.no_grad():
                    bias.fill_(self.bias)
        return [name for name, _ in layers]

    def _draw(self, tensor: Tensor, generator: torch.Generator) -> None:
        if self.scheme == "zeros":
            tensor.zero_()
        elif self.scheme == "orthogonal":
            nn.init.orthogonal_(tensor, gain=1.0 if self.gain is None else self.gain, generator=generator)
        elif self.distribution == "normal":
            tensor.normal_(0.0, self._std(tensor), generator=generator)
        else:
            bound = math.sqrt(3.0) * self._std(tensor)
            tensor.uniform_(-bound, bound, generator=generator)

    def _std(self, tensor: Tensor) -> float:
        if self.scheme == "normal":
            return self.std
        receptive = math.prod(tensor.shape[2:])
        fan_in, fan_out = tensor.shape[1] * receptive, tensor.shape[0] * receptive
        if self.scheme == "xavier":
            return (1.0 if self.gain is None else self.gain) * math.sqrt(2.0 / (fan_in + fan_out))
        gain = nn.init.calculate_gain(self.nonlinearity) if self.gain is None else self.gain
        return gain / math.sqrt(fan_in if self.mode == "fan_in" else fan_out)

    @override
    def state_dict(self) -> dict[str, Any]:
        return {"initialized": list(self.initialized)}

    @override
    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.initialized = list(state_dict.get("initialized", []))
        self._restored = True


def _weight(layer: nn.Module) -> Tensor | None:
    weight = getattr(layer, "weight", None)
    if isinstance(weight, nn.Parameter) and not isinstance(weight, nn.parameter.UninitializedParameter):
        return weight
    return None


def _fill(param: Tensor, draw: Callable[[Tensor], None]) -> None:
    """Draw into a float32 CPU buffer (the generator is a CPU one), then copy into ``param`` on its device."""
    buffer = torch.empty(param.shape, dtype=torch.float32)
    draw(buffer)
    with torch.no_grad():
        param.copy_(buffer)
