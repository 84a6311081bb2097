"""The one module of lit_callbacks that touches Lightning's and torch's private names.

Either package may rename or drop a private name in any release. Every one that lit_callbacks
needs is looked up here, once, when the package is imported, so an upgrade that breaks one
fails at import, naming it and the installed versions, instead of mid-run or silently.
``pyproject.toml`` caps lightning below the next minor version these names were checked on.
Where a public API does the job, the callbacks use it instead.
"""

from __future__ import annotations

import copy
import inspect
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import lightning
import lightning.pytorch as L
import torch
from lightning.pytorch.callbacks import EarlyStopping
from lightning.pytorch.trainer.connectors import logger_connector
from lightning.pytorch.utilities import exceptions
from torch import Tensor
from torch.optim import SGD, Adam, Optimizer
from torch.optim.lr_scheduler import ChainedScheduler, LRScheduler, SequentialLR
from torch.utils.data import DataLoader
from typing_extensions import override

#: The lightning versions these names were checked on: the requirement in ``pyproject.toml``.
LIGHTNING_REQUIREMENT = "lightning>=2.6,<2.7"
#: Every private name lit_callbacks uses, as checked below.
PRIVATE_NAMES: list[str] = []


def _missing(name: str) -> ImportError:
    return ImportError(
        f"lit_callbacks uses the private name `{name}`, which the installed lightning {lightning.__version__}"
        f" (torch {torch.__version__}) does not have. Install the lightning version lit-callbacks supports"
        f" (`pip install '{LIGHTNING_REQUIREMENT}'`) or a lit-callbacks release made for your lightning."
    )


def _label(owner: Any, name: str) -> str:
    prefix = owner.__name__ if inspect.ismodule(owner) else f"{owner.__module__}.{owner.__qualname__}"
    return f"{prefix}.{name}"


def _attribute(owner: Any, name: str) -> Any:
    """``owner.name``: a private attribute of a module or class."""
    label = _label(owner, name)
    PRIVATE_NAMES.append(label)
    try:
        return getattr(owner, name)
    except AttributeError as error:
        raise _missing(label) from error


def _mentioned(function: Callable, name: str, owner: Any) -> None:
    """Check that ``function`` still sets or reads the private instance attribute ``name``.

    Instance attributes exist only on objects, so the code that creates (or reads) them is
    checked instead: a rename there removes ``name`` from its code object.
    """
    label = _label(owner, name)
    PRIVATE_NAMES.append(label)
    code = inspect.unwrap(function).__code__
    if name not in code.co_names and name not in code.co_consts:
        raise _missing(label)


# ---------------------------------------------------------------- Lightning

#: Raised in a hook, ends ``trainer.fit`` at once and cleanly (Lightning's tuner uses it the same way).
TunerExitException = _attribute(exceptions, "_TunerExitException")

# The documented way for a callback subclass to build its `state_key`.
_generate_state_key = _attribute(L.Callback, "_generate_state_key")

_on_before_batch_transfer = _attribute(L.LightningModule, "_on_before_batch_transfer")
_mentioned(L.LightningModule.__init__, "_current_fx_name", L.LightningModule)
_mentioned(L.Trainer.__init__, "_logger_connector", L.Trainer)
_LoggerConnector = _attribute(logger_connector, "_LoggerConnector")
_reset_results = _attribute(_LoggerConnector, "reset_results")
_reset_metrics = _attribute(_LoggerConnector, "reset_metrics")
_lightning_stopping_criteria = _attribute(EarlyStopping, "_evaluate_stopping_criteria")


def generate_state_key(callback: L.Callback, **identity: Any) -> str:
    """The checkpoint key of ``callback``: its class name and the arguments that tell instances apart."""
    return _generate_state_key(callback, **identity)


def on_before_batch_transfer(pl_module: L.LightningModule, batch: Any) -> Any:
    """Runs ``on_before_batch_transfer`` as Lightning's loops do: the datamodule's hook if it has one, else the module's."""
    return _on_before_batch_transfer(pl_module, batch, dataloader_idx=0)


@contextmanager
def running_hook(pl_module: L.LightningModule, name: str) -> Iterator[None]:
    """Lets ``self.log`` inside a hook called outside Lightning's loops know which hook it is in."""
    previous, pl_module._current_fx_name = pl_module._current_fx_name, name
    try:
        yield
    finally:
        pl_module._current_fx_name = previous


def drop_logged_results(trainer: L.Trainer) -> None:
    """Forgets every value ``self.log`` recorded in the running epoch, and the metrics derived from them."""
    _reset_results(trainer._logger_connector)
    _reset_metrics(trainer._logger_connector)


class ExtensibleEarlyStopping(EarlyStopping):
    """Lightning's ``EarlyStopping`` whose stop decision subclasses extend through :meth:`evaluate_stopping_criteria`.

    Lightning makes that decision in a private method and has no public hook for it.
    """

    @override
    def _evaluate_stopping_criteria(self, current: Tensor) -> tuple[bool, str | None]:
        return self.evaluate_stopping_criteria(current)

    def evaluate_stopping_criteria(self, current: Tensor) -> tuple[bool, str | None]:
        """Lightning's checks of the monitored value: ``(should_stop, message)``; override and call ``super()``."""
        return _lightning_stopping_criteria(self, current)


# ---------------------------------------------------------------- torch

#: Fused per-tensor kernels (one launch for a whole list), as torch.optim and clip_grad_norm_ use them.
foreach_norm = _attribute(torch, "_foreach_norm")
foreach_add_ = _attribute(torch, "_foreach_add_")
foreach_sign = _attribute(torch, "_foreach_sign")
#: A gradient scaler's overflow check: one fused pass that flags any NaN or Inf in a list of tensors and
#: multiplies them in place by an inverse scale (a scale of 1 writes every value back as it was).
non_finite_check_and_unscale_ = _attribute(torch, "_amp_foreach_non_finite_check_and_unscale_")

for _optimizer in (Adam, SGD):
    _mentioned(_optimizer.__init__, "_step_supports_amp_scaling", _optimizer)
_mentioned(Adam.step, "found_inf", Adam)
_mentioned(DataLoader.__init__, "_iterator", DataLoader)
_mentioned(SequentialLR.__init__, "_schedulers", SequentialLR)
_mentioned(ChainedScheduler.__init__, "_schedulers", ChainedScheduler)
_mentioned(LRScheduler.get_last_lr, "_last_lr", LRScheduler)


def skips_step_on_found_inf(optimizer: Optimizer) -> bool:
    """Whether ``optimizer.step`` drops its whole update on the device while ``optimizer.found_inf`` is nonzero.

    True for torch.optim's fused optimizers (Adam, AdamW, SGD with ``fused=True``): the
    protocol a gradient scaler uses, where a missing flag means "not supported".
    """
    return getattr(optimizer, "_step_supports_amp_scaling", False)


def set_found_inf(optimizer: Optimizer, flag: Tensor) -> None:
    """Makes the next fused ``optimizer.step`` a no-op on the device where ``flag`` (a 0-dim tensor) is nonzero."""
    optimizer.found_inf = flag


def clear_found_inf(optimizer: Optimizer) -> None:
    """Undoes :func:`set_found_inf` (if it was set)."""
    optimizer.__dict__.pop("found_inf", None)


def fresh_loader(loader: DataLoader) -> DataLoader:
    """A shallow copy of ``loader`` whose ``iter()`` starts iterators (and worker processes) of its own.

    ``iter()`` on a loader with persistent workers resets the one iterator the loader keeps,
    which may be the one the trainer is reading.
    """
    fresh = copy.copy(loader)
    fresh._iterator = None
    return fresh


def nested_schedulers(scheduler: Any) -> list[Any]:
    """The schedulers inside a ``SequentialLR`` or ``ChainedScheduler``; none for any other scheduler."""
    return list(scheduler._schedulers) if isinstance(scheduler, (SequentialLR, ChainedScheduler)) else []


def last_lrs(scheduler: Any) -> list[Any] | None:
    """The list ``scheduler.get_last_lr()`` returns, to edit in place; ``None`` for a non-torch scheduler."""
    return scheduler._last_lr if isinstance(scheduler, LRScheduler) else None
