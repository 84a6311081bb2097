"""A single run that fails before it wrote a checkpoint takes back the directory it created.

Some bad input shows only once the run is under way: an empty dataset, NaN
features, a checkpoint of another model. By then Hydra has created the run
directory and written the config and the log into it; left there, it would
look like a run to ``resume=auto``, to a report, or to a person going through
``outputs/``. So a failed run removes what it created, and only that:

* a directory the run created goes entirely, with the parents it created for it;
* in a directory that existed before (``resume=auto``, a directory the user
  named), only the entries the run added go: the earlier checkpoints,
  ``summary.json`` and everything else stay;
* a run that wrote a checkpoint keeps everything, and its ``summary.json`` says
  where it stopped: nothing the user trained is lost on a crash.

Whether the directory existed must be known before Hydra creates it, which only
a Hydra callback sees (:class:`NoteRunDir`, in the root config). Sweeps keep
their failed jobs' directories: a sweep's report and the Optuna study list them.

Nothing here imports torch: Hydra instantiates the callback before any job runs.
"""

import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from hydra.core.hydra_config import HydraConfig
from hydra.experimental.callback import Callback
from omegaconf import DictConfig, OmegaConf

from lit_train.training.atomic import is_temporary


@dataclass
class _Before:
    """A directory as it was before the run touched it."""

    existed: bool
    #: Its entries then (none if it did not exist).
    entries: frozenset[str]
    #: The missing ancestors that creating it creates too, deepest first.
    new_parents: tuple[Path, ...]
    taken_back: bool = False


_noted: dict[Path, _Before] = {}


def _key(path: str | os.PathLike) -> Path:
    return Path(os.path.abspath(path))


def note(path: str | os.PathLike) -> None:
    """Records what ``path`` holds now, before the run creates or fills it; the first record of a path stays."""
    path = _key(path)
    if path in _noted:
        return
    if path.is_dir():
        _noted[path] = _Before(existed=True, entries=frozenset(os.listdir(path)), new_parents=())
        return
    parents, parent = [], path.parent
    while not parent.exists():
        parents.append(parent)
        parent = parent.parent
    _noted[path] = _Before(existed=False, entries=frozenset(), new_parents=tuple(parents))


def taken_back(path: str | os.PathLike) -> bool:
    """Whether a failed run removed ``path`` (or, if it existed before, what the run added to it)."""
    before = _noted.get(_key(path))
    return before is not None and before.taken_back


#: The override records a resumed run's Hydra rewrites, each with the copy of what it held before.
_kept_records: list[tuple[Path, Path]] = []


def keep_recorded_overrides(directory: Path) -> None:
    """Keeps the overrides an earlier run recorded as ``.hydra/overrides.resume-N.yaml``, as Hydra is about to
    rewrite ``.hydra/overrides.yaml``; a run taken back puts them back."""
    record = directory / ".hydra" / "overrides.yaml"
    if record.is_file():
        number = 1
        while (kept := record.with_name(f"overrides.resume-{number}.yaml")).exists():
            number += 1
        shutil.copy2(record, kept)
        _kept_records.append((record, kept))


class NoteRunDir(Callback):
    """Hydra callback: notes the run directory before Hydra creates it.

    ``on_run_start`` comes before Hydra makes the directory, and only for single
    runs (a sweep calls ``on_multirun_start``), so sweeps are never taken back.
    The directory resolves as Hydra's does next: ``${now:...}`` is cached in the
    same config.
    """

    def on_run_start(self, config: DictConfig, **kwargs: Any) -> None:
        note(str(OmegaConf.select(config, "hydra.run.dir")))


def _signatures(folders: list[Path]) -> set[tuple[str, int, int, int]]:
    """Every file under ``folders`` (sharded checkpoints are folders) as (path, inode, mtime, size)."""
    found = set()
    for folder in folders:
        for root, _, files in os.walk(folder):
            for name in files:
                if is_temporary(name):
                    continue
                path = os.path.join(root, name)
                try:
                    stat = os.stat(path)
                except OSError:  # removed meanwhile
                    continue
                found.add((path, stat.st_ino, stat.st_mtime_ns, stat.st_size))
    return found


class Footprint:
    """What one run created in its directories, and whether it wrote a checkpoint.

    Args:
        folders: The run's directories, each noted (:func:`note`) before the run touched it.
        checkpoint_folders: Where the run's checkpoints go; any file written there
            from now on counts as a checkpoint.
    """

    def __init__(self, folders: list[Path], checkpoint_folders: list[Path]) -> None:
        self.folders = list(dict.fromkeys(_key(folder) for folder in folders))
        self.checkpoint_folders = [_key(folder) for folder in checkpoint_folders]
        self._checkpoints_before = _signatures(self.checkpoint_folders)

    @classmethod
    def of_single_run(cls, run_dir: Path, checkpoint_folders: list[Path]) -> "Footprint | None":
        """The footprint of a single run started from the command line, else ``None`` (sweeps, a direct call).

        ``run_dir`` is noted now unless it is Hydra's directory (noted before
        Hydra created it): nothing but the run itself creates another one.
        """
        if not HydraConfig.initialized():
            return None
        job_dir = _key(HydraConfig.get().runtime.output_dir)
        if job_dir not in _noted:
            return None
        note(run_dir)
        return cls([job_dir, _key(run_dir)], checkpoint_folders)

    def wrote_checkpoint(self) -> bool:
        """Whether a checkpoint file was written (or rewritten) since this footprint was taken."""
        return bool(_signatures(self.checkpoint_folders) - self._checkpoints_before)

    def take_back(self) -> list[Path]:
        """Removes what the run created: directories it created, entirely; in the others, the entries it added.

        Returns:
            The removed paths.
        """
        removed = []
        for record, kept in _kept_records:
            os.replace(kept, record)
        _kept_records.clear()
        for folder in self.folders:
            before = _noted[folder]
            before.taken_back = True
            if not before.existed:
                if folder.exists():
                    shutil.rmtree(folder, ignore_errors=True)
                    removed.append(folder)
                for parent in before.new_parents:
                    try:
                        parent.rmdir()  # only if empty: another run may have started in the same day's folder
                    except OSError:
                        break
                continue
            for name in sorted(set(os.listdir(folder)) - before.entries) if folder.is_dir() else []:
                path = folder / name
                if path.is_dir() and not path.is_symlink():
                    shutil.rmtree(path, ignore_errors=True)
                else:
                    path.unlink(missing_ok=True)
                removed.append(path)
        return removed
