"""Loggers that write into lit_train's run directory.

:class:`ResumableCSVLogger` writes ``metrics.csv`` as Lightning's ``CSVLogger``
does, except that a run resumed in its own directory (``resume=auto``,
``ckpt_path=``) keeps the rows logged before the checkpoint's step and drops
those logged after it, which the resumed run logs again: a killed and resumed
run ends with the rows of the uninterrupted run. Lightning's ``CSVLogger``
deletes an existing ``metrics.csv`` when it starts, so it would keep only the
metrics logged after the resume.

:class:`SingleFileTensorBoardLogger` writes all stages of a run (fit, test)
into one TensorBoard event file, where Lightning's ``TensorBoardLogger`` starts
a new file for each stage.
"""

import csv
import io
import os
import weakref
from argparse import Namespace
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from lightning.pytorch.core.saving import save_hparams_to_yaml
from lightning.pytorch.loggers import CSVLogger, Logger, TensorBoardLogger
from lightning.pytorch.loggers.logger import rank_zero_experiment
from lightning.pytorch.utilities.rank_zero import rank_zero_only
from torch import Tensor
from typing_extensions import override

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


def _read_rows(path: Path) -> list[dict[str, str]]:
    with path.open(newline="") as f:
        return list(csv.DictReader(f))


def _write_csv(path: Path, fieldnames: list[str], rows: list[dict[str, Any]]) -> None:
    """Writes ``rows`` under ``fieldnames`` as Lightning's CSV logger does, replacing ``path`` atomically."""
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
    # Rows are appended in the order of the sorted columns: the header must already be sorted.
    if len(kept) < len(rows) or header != sorted(header):
        _write_csv(path, sorted(header), kept)
    return sorted(header)


def _next_version(root: Path) -> int:
    """One more than the highest ``version_N`` folder in ``root`` (0 if there is none)."""
    numbers = [name.removeprefix("version_") for name in os.listdir(root)] if root.is_dir() else []
    return max((int(n) for n in numbers if n.isdigit() and (root / f"version_{n}").is_dir()), default=-1) + 1


class ResumableCSVLogger(Logger):
    """Metrics in ``metrics.csv`` and hyperparameters in ``hparams.yaml``, the files of Lightning's ``CSVLogger``.

    Fresh, it writes the bytes Lightning's ``CSVLogger`` writes (columns sorted,
    the file rewritten when a column appears), except that it never warns about
    a non-empty directory and deletes nothing but an old ``metrics.csv``. Call
    :meth:`continue_from` with the checkpoint training resumes from before
    anything is logged, and the rows logged before it stay. Each rewrite is an
    atomic rename, so a kill at any moment leaves the history intact:
    ``save_dir`` must be a local directory, as lit_train's run directory is.
    Only rank 0 writes.

    Args:
        save_dir: The directory the logs go under.
        name: The experiment's sub-directory (``""`` for none). Default: ``"lightning_logs"``.
        version: The version's sub-directory (``""`` for none; ``None``, the default, picks the next ``version_N``).
        prefix: A string put before every metric's name, joined with ``-``. Default: ``""``.
        flush_logs_every_n_steps: Writes the buffered rows whenever a row's ``step + 1`` is a multiple of this
            (Lightning's trainer also writes after every logging step). Default: 100.

    Example::

        logger = ResumableCSVLogger("runs/a", name="", version="")
        logger.continue_from("runs/a/checkpoints/last.ckpt")
        trainer = L.Trainer(logger=logger)
        trainer.fit(module, ckpt_path="runs/a/checkpoints/last.ckpt")
    """

    LOGGER_JOIN_CHAR = "-"
    NAME_METRICS_FILE = "metrics.csv"
    NAME_HPARAMS_FILE = "hparams.yaml"

    def __init__(self, save_dir: str | os.PathLike, name: str | None = "lightning_logs",
                 version: int | str | None = None, prefix: str = "", flush_logs_every_n_steps: int = 100) -> None:
        super().__init__()
        self._directory = os.fspath(save_dir)
        self._experiment_name = name or ""
        self._version_chosen = version
        self._metric_prefix = prefix
        self._flush_every = flush_logs_every_n_steps
        self._resume_step: int | None = None
        self._columns: list[str] | None = None  # those of metrics.csv, once the file is taken over
        self._rows: list[dict[str, Any]] = []  # logged, not yet written
        self._hparams: dict[str, Any] = {}

    @property
    @override
    def name(self) -> str:
        """The experiment's sub-directory of ``save_dir``."""
        return self._experiment_name

    @property
    @override
    def version(self) -> int | str:
        """The version's sub-directory (a number ``N`` means ``version_N``)."""
        if self._version_chosen is None:
            self._version_chosen = _next_version(Path(self.root_dir))
        return self._version_chosen

    @property
    @override
    def save_dir(self) -> str:
        """The directory the logs go under."""
        return self._directory

    @property
    @override
    def root_dir(self) -> str:
        """``save_dir/name``, which holds the versions."""
        return os.path.join(self.save_dir, self.name)

    @property
    @override
    def log_dir(self) -> str:
        """The directory of ``metrics.csv`` and ``hparams.yaml``: ``save_dir/name/version``."""
        version = self.version if isinstance(self.version, str) else f"version_{self.version}"
        return os.path.join(self.root_dir, version)

    def continue_from(self, checkpoint_path: str | os.PathLike) -> None:
        """Keeps the rows of ``metrics.csv`` logged before the global step of the checkpoint training resumes from.

        The global step counts the batches that stepped when each batch takes one
        optimizer step; a module stepping several optimizers by hand counts more,
        and keeps rows the resumed run logs again.

        Raises:
            RuntimeError: If the logger has already taken over ``metrics.csv`` (something was logged).
        """
        if self._columns is not None:
            raise RuntimeError("ResumableCSVLogger.continue_from must come before anything is logged: "
                               f"{self._metrics_path()} is already being written")
        self._resume_step = int(read_checkpoint(checkpoint_path)["global_step"])

    @override
    @rank_zero_only
    def log_hyperparams(self, params: dict[str, Any] | Namespace | None = None, *args: Any, **kwargs: Any) -> None:
        self._take_over_metrics_file()
        self._hparams.update(vars(params) if isinstance(params, Namespace) else params or {})
        save_hparams_to_yaml(os.path.join(self.log_dir, self.NAME_HPARAMS_FILE), self._hparams)

    @override
    @rank_zero_only
    def log_metrics(self, metrics: Mapping[str, float | Tensor], step: int | None = None) -> None:
        self._take_over_metrics_file()
        if step is None:
            step = len(self._rows)  # as Lightning's writer counts
        join = f"{self._metric_prefix}{self.LOGGER_JOIN_CHAR}" if self._metric_prefix else ""
        row = {f"{join}{key}": value.item() if isinstance(value, Tensor) else value for key, value in metrics.items()}
        row["step"] = step
        self._rows.append(row)
        if (step + 1) % self._flush_every == 0:
            self.save()

    @override
    @rank_zero_only
    def save(self) -> None:
        if not self._rows:
            return
        path = self._metrics_path()
        new_columns = set().union(*self._rows) - set(self._columns)
        if new_columns or not path.is_file():
            # A new column means a new header, so the whole file is written again: atomically, as a kill in the
            # middle of a rewrite in place would lose the history this logger keeps.
            kept = _read_rows(path) if path.is_file() else []
            # Another process of the run may have written columns this one never saw: ddp_spawn fits in one set
            # of processes and tests in another, each with a copy of the logger as it was before the fit.
            self._columns = sorted(set(self._columns).union(new_columns, *kept))
            _write_csv(path, self._columns, [*kept, *self._rows])
        else:
            with path.open("a", newline="") as f:
                csv.DictWriter(f, fieldnames=self._columns).writerows(self._rows)
        self._rows = []

    @override
    @rank_zero_only
    def finalize(self, status: str) -> None:
        if self._columns is not None:
            self.save()

    @override
    def after_save_checkpoint(self, checkpoint_callback: Any) -> None:
        # Rows logged straight to the logger (the LR monitor's) wait in memory for the next write; on disk by
        # the time a checkpoint is, they survive a kill that comes before that write.
        self.save()

    def _metrics_path(self) -> Path:
        return Path(self.log_dir) / self.NAME_METRICS_FILE

    def _take_over_metrics_file(self) -> None:
        """Trims ``metrics.csv`` to the rows before the resume step, or deletes it for a fresh run, once."""
        if self._columns is not None:
            return
        path = self._metrics_path()
        if self._resume_step is not None:
            self._columns = keep_rows_before(path, self._resume_step)
        else:
            # A run that starts over at step 0 replaces the rows of the one before it, as Lightning's does.
            path.unlink(missing_ok=True)
            self._columns = []
        path.parent.mkdir(parents=True, exist_ok=True)


class SingleFileTensorBoardLogger(TensorBoardLogger):
    """Lightning's ``TensorBoardLogger`` that writes every stage of a run (fit, then test) into one event file.

    Lightning's closes its ``SummaryWriter`` at the end of each stage, and the
    next stage's first write opens a new event file beside it. This one flushes
    at the end of a successful stage and keeps the writer open for the next;
    the writer closes when the logger is garbage collected or the interpreter
    exits, or at once when a stage fails. A run resumed in another process
    adds an event file of its own. The arguments are those of Lightning's
    ``TensorBoardLogger``.

    Example::

        logger = SingleFileTensorBoardLogger("runs/a", name="", version="", default_hp_metric=False)
        trainer = L.Trainer(logger=logger)
        trainer.fit(module)
        trainer.test(module)  # into the fit's event file
    """

    _writer_closer: weakref.finalize | None = None

    @property
    @override
    @rank_zero_experiment
    def experiment(self) -> Any:
        """Lightning's ``SummaryWriter``, created on first use on rank 0."""
        writer = super().experiment
        if self._writer_closer is None:
            # Bound to the logger's life, not to a stage's.
            self._writer_closer = weakref.finalize(self, writer.close)
        return writer

    @override
    @rank_zero_only
    def finalize(self, status: str) -> None:
        if status != "success":
            super().finalize(status)  # the run stops here (an error, a requeue): close the file
            return
        self.save()  # flushes the events and writes hparams.yaml; the writer stays open for the next stage

    def __getstate__(self) -> dict[str, Any]:
        # Lightning's leaves the writer behind when the logger is pickled (spawned processes); so does its closer.
        state = super().__getstate__()
        state.pop("_writer_closer", None)
        return state


def metrics_file(loggers: list[Logger]) -> Path | None:
    """The ``metrics.csv`` of the first CSV logger (lit_train's or Lightning's) among ``loggers``, else ``None``."""
    for logger in loggers:
        if isinstance(logger, (ResumableCSVLogger, CSVLogger)):
            return Path(logger.log_dir) / ResumableCSVLogger.NAME_METRICS_FILE
    return None
