"""Checkpoint writes that a crash cannot corrupt."""

from pathlib import Path
from typing import Any

import torch
from fsspec.implementations.local import LocalFileSystem
from lightning.fabric.utilities.cloud_io import get_filesystem
from lightning.fabric.utilities.types import _PATH
from lightning.pytorch.plugins.io import TorchCheckpointIO

from lit_train.atomic import atomic_write


class AtomicCheckpointIO(TorchCheckpointIO):
    """Saves local checkpoints through a synced temporary file and a rename.

    Lightning writes ``last.ckpt`` and the best checkpoint in place, so a kill
    during the write leaves a truncated file that no longer loads. Here the old
    checkpoint stays intact until the new one is complete on disk. Remote paths
    (``s3://``, ...) go through Lightning's own writer.
    """

    def save_checkpoint(self, checkpoint: dict[str, Any], path: _PATH, storage_options: Any | None = None) -> None:
        if storage_options is not None or not isinstance(get_filesystem(path), LocalFileSystem):
            return super().save_checkpoint(checkpoint, path, storage_options)
        atomic_write(Path(path), lambda f: torch.save(checkpoint, f))
