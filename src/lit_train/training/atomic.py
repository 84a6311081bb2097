"""Writes that leave either the old file or the complete new one, never a partial file."""

import errno
import os
import re
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import IO

from lit_train.config.messages import Explained

#: The temporary file of ``atomic_write(path)``: ``.<name>.<8 random characters>.tmp`` beside ``path``
#: (``tempfile.mkstemp``'s random part), e.g. ``.last.ckpt.k3x_9q2a.tmp``.
_TEMPORARY = re.compile(r"\.(?P<target>.+)\.[a-z0-9_]{8}\.tmp")


def is_temporary(path: str | os.PathLike) -> bool:
    """Whether ``path`` is named like a temporary file of :func:`atomic_write`.

    Example::

        >>> is_temporary("checkpoints/.last.ckpt.k3x_9q2a.tmp"), is_temporary("checkpoints/last.ckpt")
        (True, False)
    """
    return _TEMPORARY.fullmatch(Path(path).name) is not None


def remove_stale_temporaries(directory: str | os.PathLike) -> list[Path]:
    """Deletes the temporary files :func:`atomic_write` left in ``directory`` when its process was killed.

    Only files named like ours go; anything else in ``directory`` stays. Call it
    only when no other process writes there (at the start of a run).

    Returns:
        The deleted files (none if ``directory`` does not exist).
    """
    directory = Path(directory)
    if not directory.is_dir():
        return []
    stale = [path for path in directory.iterdir() if is_temporary(path) and path.is_file()]
    for path in stale:
        path.unlink(missing_ok=True)
    return stale


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


#: Permissions of a file created the usual way (``open(path, "w")``); mkstemp would give 0600.
_FILE_MODE = 0o666 & ~_umask()


class DiskFullError(Explained, OSError):
    """A write that failed for lack of space; the message names the file and what is kept."""


def _disk_full(error: BaseException, directory: Path) -> bool:
    """Whether ``error`` came from a full disk: its errno says so, or (torch.save reports a failed write as a
    RuntimeError without one) the file system has no block left."""
    if isinstance(error, OSError) and error.errno in (errno.ENOSPC, errno.EDQUOT):
        return True
    if not isinstance(error, (OSError, RuntimeError)):
        return False
    try:
        stats = os.statvfs(directory)
    except OSError:
        return False
    return stats.f_bavail * stats.f_frsize < _NEARLY_FULL


#: Free bytes below which a failed write is put down to a full disk.
_NEARLY_FULL = 1 << 20


def atomic_write(path: str | os.PathLike, write: Callable[[IO[bytes]], None]) -> None:
    """Calls ``write`` on a temporary file beside ``path``, syncs it to disk, then renames it over ``path``.

    A crash or kill at any moment leaves ``path`` as it was or complete: the rename
    is atomic within a directory, and the data is on disk before the rename.

    Example::

        >>> import tempfile, pathlib
        >>> target = pathlib.Path(tempfile.mkdtemp()) / "note.txt"
        >>> atomic_write(target, lambda f: f.write(b"hello"))
        >>> target.read_text()
        'hello'
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    # Named as _TEMPORARY matches, so a run can tell the files a kill left behind.
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fchmod(f.fileno(), _FILE_MODE)
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException as error:
        Path(tmp).unlink(missing_ok=True)
        if _disk_full(error, path.parent):
            raise DiskFullError(f"the disk is full: writing {path} failed, and {path} is kept as it was; free "
                                f"space on {path.parent} (or write elsewhere) and resume=auto goes on") from error
        raise
    # The rename itself must reach the disk too.
    directory = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(directory)
    finally:
        os.close(directory)
