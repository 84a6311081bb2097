"""What exact resumption needs beyond Lightning's own checkpoint: RNG states, and finding the checkpoint."""

import random
from pathlib import Path
from typing import Any

import lightning.pytorch as L
import numpy as np
import torch
from lightning.pytorch.callbacks import Callback


class RngState(Callback):
    """Saves the torch, numpy and python RNG states in every checkpoint, and restores them on resume.

    Lightning checkpoints the model, optimizers, schedulers, loops and callbacks,
    but not the random generators, so dropout masks (and anything else drawing
    from them) after a resume differ from the uninterrupted run. The states are
    restored when training restarts, after the checkpoint restore itself.
    """

    def __init__(self) -> None:
        self._to_restore: dict[str, Any] | None = None

    def state_dict(self) -> dict[str, Any]:
        # numpy's key array travels as a tensor: checkpoints must load with torch.load(weights_only=True).
        name, keys, position, has_gauss, cached = np.random.get_state()
        numpy_state = (name, torch.from_numpy(keys.astype(np.int64)), position, has_gauss, cached)
        state = {"torch": torch.get_rng_state(), "numpy": numpy_state, "python": random.getstate()}
        if torch.cuda.is_available() and torch.cuda.is_initialized():
            state["cuda"] = torch.cuda.get_rng_state_all()
        return state

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self._to_restore = state_dict

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if self._to_restore is None:
            return
        state, self._to_restore = self._to_restore, None
        torch.set_rng_state(state["torch"])
        name, keys, position, has_gauss, cached = state["numpy"]
        np.random.set_state((name, keys.numpy().astype(np.uint32), position, has_gauss, cached))
        random.setstate(state["python"])
        if "cuda" in state and torch.cuda.is_available():
            torch.cuda.set_rng_state_all(state["cuda"])


def _global_step(path: Path) -> int | None:
    """The checkpoint's global step, or ``None`` if the file does not load (truncated, not a checkpoint)."""
    try:
        checkpoint = torch.load(path, map_location="cpu", weights_only=False, mmap=True)
        return int(checkpoint["global_step"])
    except Exception:  # any unreadable file is simply not a resume candidate
        return None


def find_resume_checkpoint(run_dir: Path) -> tuple[Path, int] | None:
    """The newest valid checkpoint under ``run_dir/checkpoints``: highest global step, then latest write.

    Returns:
        ``(path, global_step)``, or ``None`` if there is none that loads.
    """
    candidates = sorted((run_dir / "checkpoints").glob("*.ckpt"), key=lambda p: p.stat().st_mtime, reverse=True)
    best: tuple[Path, int] | None = None
    for path in candidates:
        step = _global_step(path)
        if step is not None and (best is None or step > best[1]):
            best = (path, step)
    return best
