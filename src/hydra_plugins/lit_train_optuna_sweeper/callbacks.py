"""The Hydra callback that carries a trial's return value from its own process to the sweeper."""

import json
import math
from pathlib import Path
from typing import Any

from hydra.core.utils import JobReturn, JobStatus
from hydra.experimental.callback import Callback
from omegaconf import DictConfig

from hydra_plugins.lit_train_optuna_sweeper._compat import job_error
from hydra_plugins.lit_train_optuna_sweeper.app import RETURN_FILE, describe


def _plain(value: Any) -> Any:
    """``value`` as JSON can hold it: a number as a float (``"nan"`` and ``"inf"`` as text), else itself or its repr."""
    try:
        number = float(value)
    except (TypeError, ValueError):
        return value if value is None or isinstance(value, str) else repr(value)
    return number if math.isfinite(number) else str(number)


class ReturnValue(Callback):
    """Writes what a job returned, or what it raised, to ``return_value.json`` in its output directory.

    The sweeper adds it to the overrides of each trial it runs in a process of
    its own, and reads the file when the process ends: ``{"value": ...}``, or
    ``{"error": "<Type>: <message>"}``.
    """

    def on_job_end(self, config: DictConfig, job_return: JobReturn, **kwargs: Any) -> None:
        if job_return.status == JobStatus.COMPLETED:
            result = {"value": _plain(job_return.return_value)}
        else:
            result = {"error": describe(job_error(job_return))}
        (Path(config.hydra.runtime.output_dir) / RETURN_FILE).write_text(json.dumps(result))
