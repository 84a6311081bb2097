"""Checkpointing that keeps a resumable ``last.ckpt`` from the very first steps and never crowns a NaN,
and the check that a checkpoint fits the model before Lightning loads it."""

from pathlib import Path
from typing import Any

import lightning.pytorch as L
import torch
from lightning.pytorch.callbacks import ModelCheckpoint as LightningModelCheckpoint
from lightning.pytorch.trainer.states import TrainerFn
from torch.nn.parameter import UninitializedParameter

from lit_train._compat import (
    checkpoint_interval, monitor_candidates, save_last_checkpoint, save_topk_checkpoint, should_skip_saving_checkpoint,
)
from lit_train.training.checkpoint_io import CheckpointError, read_checkpoint

#: How many mismatched parameter names an error message lists before it says how many more there are.
SHOWN_KEYS = 3


class ModelCheckpoint(LightningModelCheckpoint):
    """Lightning's ``ModelCheckpoint`` that also writes ``last.ckpt`` every ``every_n_train_steps`` steps
    before the monitored metric first exists, and never saves a NaN or infinite score as the best.

    Lightning defers a step-interval save, ``last.ckpt`` included, until the
    monitored (validation) metric is logged, so a job killed during its first
    epoch has nothing to resume from. Here only the best-checkpoint choice waits
    for the metric; ``last.ckpt`` is written on schedule.

    Lightning also keeps the first score it sees even when it is NaN (stored as
    infinitely bad) and, with ``save_top_k=-1`` or while fewer than ``save_top_k``
    are kept, adds non-finite scores to the top k; a diverged run then has a
    "best" checkpoint full of NaN weights. Here a non-finite score is never a
    top-k candidate: the best stays the last finite one, or there is none.
    ``last.ckpt`` is still written, as it is the state to resume or inspect.

    A step-interval save between validations would rank the weights of this step
    by the score of the last validation, which measured other weights: the best
    checkpoint and its score would disagree. Here such a stale score is never a
    top-k candidate (a score logged by training at this step still is), and with
    ``every_n_train_steps`` the weights are also weighed at each validation's end,
    where their score was measured.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        # The step of the last validation and the monitored score it produced.
        self._validation: tuple[int, Any] | None = None

    def on_validation_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if trainer.sanity_checking:
            return super().on_validation_end(trainer, pl_module)
        self._validation = (trainer.global_step, trainer.callback_metrics.get(self.monitor))
        super().on_validation_end(trainer, pl_module)
        fitting = trainer.state.fn == TrainerFn.FITTING and not trainer.fast_dev_run
        if fitting and self.monitor is not None and checkpoint_interval(self) >= 1:
            save_topk_checkpoint(self, trainer, monitor_candidates(self, trainer))

    def on_train_batch_end(self, trainer: L.Trainer, pl_module: L.LightningModule, outputs: Any, batch: Any,
                           batch_idx: int) -> None:
        super().on_train_batch_end(trainer, pl_module, outputs, batch, batch_idx)
        interval = checkpoint_interval(self)
        if not (self.save_last and interval >= 1) or trainer.global_step % interval:
            return
        candidates = monitor_candidates(self, trainer)
        if self.monitor is not None and self.monitor not in candidates and not should_skip_saving_checkpoint(self, trainer):
            save_last_checkpoint(self, trainer, candidates)

    def check_monitor_top_k(self, trainer: L.Trainer, current: torch.Tensor | None = None) -> bool:
        if current is None or self._stale(trainer, current):
            return False
        finite = bool(torch.isfinite(torch.as_tensor(current)).all())
        # Every rank must take the same decision (the parent's reduce is collective too).
        if not trainer.strategy.reduce_boolean_decision(finite, all=True):
            return False
        return super().check_monitor_top_k(trainer, current)

    def _stale(self, trainer: L.Trainer, current: torch.Tensor) -> bool:
        """Whether ``current`` is the last validation's score, and the weights have stepped since."""
        if self._validation is None:
            return False
        step, score = self._validation
        return step != trainer.global_step and score is not None and bool(torch.equal(torch.as_tensor(current),
                                                                                       torch.as_tensor(score)))


def _names(keys: list[str]) -> str:
    shown = ", ".join(keys[:SHOWN_KEYS])
    return shown + (f" (+{len(keys) - SHOWN_KEYS} more)" if len(keys) > SHOWN_KEYS else "")


def _shape(value: Any) -> list[int] | None:
    return list(value.shape) if isinstance(value, torch.Tensor) else None


def _builds_or_renames_late(module: L.LightningModule) -> bool:
    """Whether ``module`` may create parameters after construction or rename the checkpoint's before loading."""
    if any(isinstance(param, UninitializedParameter) for param in module.parameters()):
        return True
    # lit_train's own modules compile in place in configure_model and restore extra state in
    # on_load_checkpoint, neither of which adds or renames a parameter; a user's hooks may.
    owners = (next(cls for cls in type(module).__mro__ if hook in vars(cls))
              for hook in ("configure_model", "setup", "on_load_checkpoint"))
    return any(not owner.__module__.startswith(("lit_train.", "lightning.")) for owner in owners)


def check_checkpoint_fits(path: str | Path, module: L.LightningModule, source: str = "ckpt_path") -> None:
    """Checks that the checkpoint at ``path`` has the parameters ``module`` has, with the same shapes.

    Lightning finds a mismatch only after building the trainer, and reports it as
    torch's list of every missing and unexpected key; here it is one line naming
    the first few, before anything runs. Modules that build or rename parameters
    late (``configure_model``, ``setup``, ``on_load_checkpoint``, lazy layers) are
    left to Lightning's own check.

    Args:
        path: The checkpoint to load.
        module: The LightningModule it will be loaded into.
        source: The config key that named the checkpoint, for the message.

    Raises:
        CheckpointError: If the checkpoint does not load safely, is not a Lightning
            checkpoint, or does not fit ``module``.
    """
    try:
        checkpoint = read_checkpoint(path)
    except CheckpointError as error:
        raise type(error)(f"{source}: {error}") from None
    state = checkpoint.get("state_dict")
    if not isinstance(state, dict):
        raise CheckpointError(f"{source}: {str(path)!r} is not a Lightning checkpoint (it has no state_dict)")
    if _builds_or_renames_late(module):
        return
    expected = module.state_dict()
    problems = []
    if module.strict_loading:
        missing = [key for key in expected if key not in state]
        unexpected = [key for key in state if key not in expected]
        if missing:
            problems.append(f"missing {_names(missing)}")
        if unexpected:
            problems.append(f"unexpected {_names(unexpected)}")
    resized = [f"{key} is {_shape(state[key])} there but {_shape(value)} here" for key, value in expected.items()
               if key in state and _shape(state[key]) != _shape(value)]
    if resized:
        problems.append(_names(resized))
    if problems:
        raise CheckpointError(f"{source}: {str(path)!r} does not fit this config's model ({type(module).__name__}), "
                              f"it was saved by another one: {'; '.join(problems)}")
