"""Checkpoint writes that a crash cannot corrupt, and reads that run no code from the file."""

import os
import pickle
import zipfile
from pathlib import Path
from typing import Any

import torch
from fsspec.implementations.local import LocalFileSystem
from lightning.fabric.utilities.cloud_io import get_filesystem
from lightning.pytorch.plugins.io import TorchCheckpointIO

from lit_train.config.messages import Explained, unsafe_to_load
from lit_train.training.atomic import atomic_write


class AtomicCheckpointIO(TorchCheckpointIO):
    """Saves local checkpoints through a synced temporary file and a rename.

    Lightning writes ``last.ckpt`` and the best checkpoint in place, so a kill
    during the write leaves a truncated file that no longer loads. Here the old
    checkpoint stays intact until the new one is complete on disk. Remote paths
    (``s3://``, ...) go through Lightning's own writer.
    """

    def save_checkpoint(self, checkpoint: dict[str, Any], path: str | os.PathLike, storage_options: Any | None = None) -> None:
        if storage_options is not None or not isinstance(get_filesystem(path), LocalFileSystem):
            return super().save_checkpoint(checkpoint, path, storage_options)
        atomic_write(Path(path), lambda f: torch.save(checkpoint, f))


class CheckpointError(Explained, ValueError):
    """A checkpoint that cannot be used: unreadable, unsafe to load, or not a Lightning checkpoint."""


class UnsafeCheckpointError(CheckpointError):
    """A checkpoint that loads only by running the code its pickled objects name."""


def _first_line(error: Exception) -> str:
    return next((line.strip() for line in str(error).splitlines() if line.strip()), type(error).__name__)


def verify_checksums(path: str | Path) -> None:
    """Checks every record of a checkpoint against the CRC-32 its zip archive stores.

    ``torch.load`` does not: a flipped bit in a tensor loads as a wrong weight,
    silently. Reading the whole file costs about what copying it does.

    Raises:
        CheckpointError: If a record fails its check, or the archive cannot be read.
    """
    try:
        with zipfile.ZipFile(path) as archive:
            bad = archive.testzip()
    except (OSError, zipfile.BadZipFile, EOFError) as error:
        raise CheckpointError(f"{str(path)!r} is not a readable checkpoint ({_first_line(error)})") from None
    if bad is not None:
        raise CheckpointError(f"{str(path)!r} is corrupt: its record {bad} fails its CRC-32 check")


def read_checkpoint(path: str | Path) -> dict[str, Any]:
    """Loads a checkpoint with ``torch.load(weights_only=True)``, memory-mapped, for a look before Lightning loads it.

    Memory-mapping reads only what is looked at, so checking a large checkpoint's
    step or parameter names costs little.

    Raises:
        UnsafeCheckpointError: If the file holds pickled objects that safe loading refuses.
        CheckpointError: If the file is unreadable (truncated, not a torch file) or
            not a dict; the message is one line saying why.
    """
    try:
        checkpoint = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
    except pickle.UnpicklingError as error:  # what safe loading refuses, whatever torch's wording
        raise UnsafeCheckpointError(f"{str(path)!r} {unsafe_to_load(error)}") from None
    except Exception as error:  # truncated, not a zip archive, not a torch archive, ...
        raise CheckpointError(f"{str(path)!r} is not a readable checkpoint ({_first_line(error)})") from None
    if not isinstance(checkpoint, dict):
        raise CheckpointError(f"{str(path)!r} is not a Lightning checkpoint (it holds a {type(checkpoint).__name__})")
    return checkpoint
