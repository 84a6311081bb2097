"""A CSV logger whose ``metrics.csv`` survives a resume: the rows from before the checkpoint stay, the run's follow.

Lightning's ``CSVLogger`` deletes an existing ``metrics.csv`` when it starts, so
a run resumed in its own directory (``resume=auto``, ``ckpt_path=``) would keep
only the metrics logged after the resume. :class:`ResumableCSVLogger` keeps the
rows logged before the checkpoint's step and drops those logged after it, which
the resumed run logs again: a killed and resumed run ends with the rows of the
uninterrupted run.
"""

import csv
import io
import os
from pathlib import Path
from typing import Any

from lightning.fabric.loggers.logger import rank_zero_experiment
from lightning.pytorch.loggers import CSVLogger
from lightning.pytorch.loggers.csv_logs import ExperimentWriter

from lit_train.training.atomic import atomic_write
from lit_train.training.checkpoint_io import read_checkpoint


def _step(row: dict[str, Any]) -> float | None:
    try:
        return float(row.get("step") or "")
    except ValueError:
        return None


def _before(row: dict[str | None, Any], step: int) -> bool:
    """Whether ``row`` of ``metrics.csv`` stays when the run resumes at ``step``."""
    if None in row or None in row.values():  # too many or too few fields: a kill cut the write short
        return False
    found = _step(row)
    return found is None or found < step


def _write_csv(path: Path, fieldnames: list[str], rows: list[dict[str, Any]]) -> None:
    """Writes ``rows`` under ``fieldnames`` as Lightning's writer does, replacing ``path`` atomically."""
    text = io.StringIO(newline="")
    writer = csv.DictWriter(text, fieldnames=fieldnames)
    writer.writeheader()
    writer.writerows(rows)
    atomic_write(path, lambda f: f.write(text.getvalue().encode()))


def keep_rows_before(path: str | os.PathLike, step: int) -> list[str]:
    """Drops the rows of the CSV logger's ``metrics.csv`` at ``path`` logged at ``step`` or later.

    Lightning logs a training batch's row at the number of batches that stepped
    before it, the rows of validation and epoch ends at the step of the batch
    they follow, and the LR monitor's row at the step of the batch about to run.
    A checkpoint saved after ``step`` optimizer steps (a batch's end, a validation
    end, an epoch end) holds the rows up to ``step - 1``, and the run resumed from
    it logs its first rows at ``step``; so the rows at ``step`` or later are the
    ones the resumed run logs again. Rows without a step (not Lightning's) are
    kept; a row with fewer fields than the header, a write a kill cut short, is
    dropped. The file is rewritten atomically, and only if something changes.

    Args:
        path: The ``metrics.csv`` to trim; nothing happens if there is none.
        step: The global step of the checkpoint the run resumes from.

    Returns:
        The file's columns, sorted as Lightning's writer keeps them (empty if
        there is no file).
    """
    path = Path(path)
    if not path.is_file():
        return []
    with path.open(newline="") as f:
        reader = csv.DictReader(f)
        header = list(reader.fieldnames or [])
        rows = list(reader)
    kept = [row for row in rows if _before(row, step)]
    # Lightning sorts its columns and appends rows in that order: the header must already be sorted.
    if len(kept) < len(rows) or header != sorted(header):
        _write_csv(path, sorted(header), kept)
    return sorted(header)


class _ContinuingWriter(ExperimentWriter):
    """Lightning's CSV experiment writer that continues an existing ``metrics.csv`` when told the resume step."""

    def __init__(self, log_dir: str, resume_step: int | None) -> None:
        self._resume_step = resume_step
        super().__init__(log_dir)

    def _check_log_dir_exists(self) -> None:
        # Lightning's hook, called by the writer's __init__: its version deletes metrics.csv whenever the
        # directory holds anything (Hydra's .hydra folder, always here) and warns.
        path = Path(self.metrics_file_path)
        if self._resume_step is not None:
            # Continue the file: the header logic then appends, or rewrites when a new column comes.
            self.metrics_keys = keep_rows_before(path, self._resume_step)
        elif path.is_file():
            # A run that starts over at step 0 replaces the rows of the one before it, as Lightning does.
            path.unlink()

    def _rewrite_with_new_header(self, fieldnames: list[str]) -> None:
        # Lightning truncates the file and writes it again when a column appears; a kill in between would lose
        # the whole history this logger keeps, so the rewrite is atomic here.
        with open(self.metrics_file_path, newline="") as f:
            rows = list(csv.DictReader(f))
        _write_csv(Path(self.metrics_file_path), fieldnames, rows)


class ResumableCSVLogger(CSVLogger):
    """Lightning's ``CSVLogger`` that keeps the history in ``metrics.csv`` when training resumes from a checkpoint.

    Call :meth:`continue_from` with the checkpoint before anything is logged (the
    writer reads the file when it is created). Without it the logger behaves as
    Lightning's, except that it never warns about a non-empty directory and
    deletes nothing but ``metrics.csv`` (a fresh run replaces the one before).
    The file is rewritten with local atomic renames: ``save_dir`` must be a local
    directory, as lit_train's run directory is.

    Args:
        save_dir: The directory the logs go under.
        name: The experiment's sub-directory (``""`` for none).
        version: The version's sub-directory (``""`` for none; ``None`` picks the next ``version_N``).
        prefix: A string put before every metric's name.
        flush_logs_every_n_steps: How often to write buffered rows (Lightning's trainer writes after every log).
    """

    def __init__(self, save_dir: str | os.PathLike, name: str | None = "lightning_logs",
                 version: int | str | None = None, prefix: str = "", flush_logs_every_n_steps: int = 100) -> None:
        super().__init__(save_dir, name=name, version=version, prefix=prefix,
                         flush_logs_every_n_steps=flush_logs_every_n_steps)
        self._resume_step: int | None = None

    def continue_from(self, checkpoint_path: str | os.PathLike) -> None:
        """Keeps the rows of ``metrics.csv`` logged before the global step of the checkpoint training resumes from.

        The global step counts the batches that stepped when each batch takes one
        optimizer step; a module stepping several optimizers by hand counts more,
        and keeps rows the resumed run logs again.
        """
        self._resume_step = int(read_checkpoint(checkpoint_path)["global_step"])

    def after_save_checkpoint(self, checkpoint_callback: Any) -> None:
        # Rows logged straight to the logger (the LR monitor's) wait in memory for the next write; on disk by
        # the time a checkpoint is, they survive a kill that comes before that write.
        self.save()

    @property
    @rank_zero_experiment
    def experiment(self) -> ExperimentWriter:
        """The writer of ``hparams.yaml`` and ``metrics.csv`` (created on first use, on rank 0 only)."""
        # Lightning's property with this module's writer: the writer's constructor is where the file is handled.
        if self._experiment is None:
            self._fs.makedirs(self.root_dir, exist_ok=True)
            self._experiment = _ContinuingWriter(self.log_dir, self._resume_step)
        return self._experiment
