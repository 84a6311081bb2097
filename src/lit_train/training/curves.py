"""The curves a run logged to the CSV logger's ``metrics.csv``: what its health record and every report read.

``metrics.csv`` survives a resume with the rows of the uninterrupted run
(:class:`~lit_train.training.loggers.ResumableCSVLogger`), so whatever is read
from it after the run describes the whole run, however often it was resumed.
"""

import csv
import math
from dataclasses import dataclass, field
from pathlib import Path

#: ``(optimizer step, value)`` points of one metric, by step.
Curve = list[tuple[int, float]]
#: Training-loss columns of metrics.csv, in order of preference (per step first).
TRAIN_KEYS = ("train/loss_step", "train/loss", "train/loss_epoch")


@dataclass
class Curves:
    """Every metric of one run's ``metrics.csv``.

    Attributes:
        series: Each metric's points, by its key (``val/loss``, ``grad_norm/total``, ...).
        steps_per_epoch: Optimizer steps per epoch (from the last step logged in epoch 0), ``None`` if unknown.
        epochs: The epoch of each step logged with one.
    """

    series: dict[str, Curve] = field(default_factory=dict)
    steps_per_epoch: int | None = None
    epochs: dict[int, int] = field(default_factory=dict)

    def finite(self, key: str) -> Curve:
        """The points of ``key`` whose value is a finite number."""
        return [(step, value) for step, value in self.series.get(key, []) if math.isfinite(value)]


def read_curves(path: Path | str) -> Curves:
    """The metrics of a CSVLogger's ``metrics.csv`` at ``path``; empty if there is none.

    A value logged again at a step it already has (rows a resume without trimming
    left behind) replaces the earlier one, so that no point counts twice.
    """
    path = Path(path)
    if not path.is_file():
        return Curves()
    points: dict[str, dict[int, float]] = {}
    epochs: dict[int, int] = {}
    first_epoch_end = None
    with path.open(newline="") as f:
        for row in csv.DictReader(f):
            try:
                step = int(float(row.get("step") or ""))
            except ValueError:
                continue
            epoch = _integer(row.get("epoch"))
            if epoch is not None:
                epochs[step] = epoch
                if epoch == 0:
                    first_epoch_end = max(step, first_epoch_end or 0)
            for key, text in row.items():
                if key in ("step", "epoch") or not text:
                    continue
                try:
                    points.setdefault(key, {})[step] = float(text)
                except ValueError:
                    continue
    series = {key: sorted(values.items()) for key, values in points.items()}
    return Curves(series, None if first_epoch_end is None else first_epoch_end + 1, epochs)


def _integer(text: str | None) -> int | None:
    try:
        return int(float(text or ""))
    except ValueError:
        return None
