"""What exact resumption needs beyond Lightning's own checkpoint: RNG states, and finding the checkpoint."""

import random
from pathlib import Path
from typing import Any

import lightning.pytorch as L
import numpy as np
import torch
import torch.distributed as dist
from lightning.pytorch.callbacks import Callback
from lightning.pytorch.utilities import rank_zero_warn

from lit_train.training.atomic import is_temporary
from lit_train.training.checkpoint_io import (
    CheckpointError,
    UnsafeCheckpointError,
    read_checkpoint,
    verify_checksums,
)


def _capture() -> dict[str, Any]:
    """This process's torch, numpy, python (and CUDA) RNG states, as values ``torch.load(weights_only=True)`` accepts."""
    # numpy's key array travels as a tensor: checkpoints must load with torch.load(weights_only=True).
    name, keys, position, has_gauss, cached = np.random.get_state()
    numpy_state = (name, torch.from_numpy(keys.astype(np.int64)), position, has_gauss, cached)
    state = {"torch": torch.get_rng_state(), "numpy": numpy_state, "python": random.getstate()}
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def _restore(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    name, keys, position, has_gauss, cached = state["numpy"]
    np.random.set_state((name, keys.numpy().astype(np.uint32), position, has_gauss, cached))
    random.setstate(state["python"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def _world_size() -> int:
    return dist.get_world_size() if dist.is_available() and dist.is_initialized() else 1


class RngState(Callback):
    """Saves the torch, numpy and python RNG states of every rank in every checkpoint, and restores them on resume.

    Lightning checkpoints the model, optimizers, schedulers, loops and callbacks,
    but not the random generators, so dropout masks (and anything else drawing
    from them) after a resume differ from the uninterrupted run. The states are
    restored when training restarts, after the checkpoint restore itself.

    Only rank 0 writes the checkpoint, yet under DDP each rank draws from its own
    generators; so the states of all ranks are gathered into it (``states[rank]``)
    and each rank restores its own. Lightning calls ``state_dict`` on every rank
    when it saves (``Trainer.save_checkpoint`` must run on all ranks), which the
    gather, a collective, relies on. A run resumed on a different number of ranks
    restores the ranks the checkpoint has and warns.
    """

    def __init__(self) -> None:
        self._to_restore: dict[str, Any] | None = None

    def state_dict(self) -> dict[str, Any]:
        own = _capture()
        world = _world_size()
        if world == 1:
            return {"ranks": [own]}
        states: list[Any] = [None] * world
        dist.all_gather_object(states, own)
        return {"ranks": states}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self._to_restore = state_dict

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if self._to_restore is None:
            return
        saved, self._to_restore = self._to_restore, None
        # Checkpoints written before the states were gathered hold one state, rank 0's, at the top level.
        states = saved.get("ranks", [saved])
        if len(states) != trainer.world_size:
            rank_zero_warn(f"RngState: the checkpoint holds the random states of {len(states)} rank(s) and this run "
                           f"has {trainer.world_size}; ranks without a saved state keep their seeded state, so the "
                           "resumed run does not replay the interrupted one exactly.")
        if trainer.global_rank < len(states):
            _restore(states[trainer.global_rank])


def _global_step(path: Path) -> int:
    """The checkpoint's global step.

    Raises:
        UnsafeCheckpointError: If the file loads only by running pickled code:
            resuming silently from an older checkpoint (or from scratch) would
            overwrite it.
        CheckpointError: If the file does not load (truncated, not a checkpoint).
    """
    try:
        checkpoint = read_checkpoint(path)
    except UnsafeCheckpointError as error:
        raise UnsafeCheckpointError(f"resume=auto: {error}") from None
    try:
        return int(checkpoint["global_step"])
    except (KeyError, TypeError, ValueError):  # a dict, but not a Lightning checkpoint
        raise CheckpointError(f"{str(path)!r} is not a Lightning checkpoint (it has no global_step)") from None


def find_resume_checkpoint(run_dir: Path, skipped: list[str] | None = None) -> tuple[Path, int] | None:
    """The newest sound checkpoint under ``run_dir/checkpoints``: highest global step, then latest write.

    Temporary files of an interrupted atomic write (``.last.ckpt.<random>.tmp``) are
    never candidates, even if a kill left a complete checkpoint in one. The chosen
    file's checksums are verified, so a flipped bit is skipped rather than trained on.

    Args:
        run_dir: The run directory.
        skipped: Receives one line per checkpoint passed over, naming the file and why.

    Returns:
        ``(path, global_step)``, or ``None`` if there is none that loads.
    """
    skipped = [] if skipped is None else skipped
    found = [p for p in (run_dir / "checkpoints").glob("*.ckpt") if not is_temporary(p) and not p.name.startswith(".")]
    steps: list[tuple[int, float, Path]] = []
    for path in found:
        try:
            steps.append((_global_step(path), path.stat().st_mtime, path))
        except UnsafeCheckpointError:
            raise
        except CheckpointError as error:
            skipped.append(str(error))
    # Checksums last, and only until one passes: they read the whole file.
    for step, _, path in sorted(steps, key=lambda entry: entry[:2], reverse=True):
        try:
            verify_checksums(path)
        except CheckpointError as error:
            skipped.append(str(error))
            continue
        return path, step
    return None
