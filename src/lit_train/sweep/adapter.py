"""lit_train's side of the lit_optuna sweeper: how its trials run and how the sweeper reads how they ended.

The sweeper (``hydra/sweeper=lit_optuna``) serves any Hydra app; for
lit_train's it uses :class:`LitTrainApp` (see
:func:`hydra_plugins.lit_train_optuna_sweeper.app.app_for`). A trial learns its
study from the ``trial`` node (read by :class:`~lit_train.sweep.pruning.TrialPruning`),
reports what it did in its ``summary.json``, and, in a process of its own, is
forked from a warm parent that imported torch and Lightning once
(:mod:`lit_train.sweep.warm_start`).
"""

import json
import logging
import os
import sys
from pathlib import Path
from typing import Any

from hydra_plugins.lit_train_optuna_sweeper.app import App, quote
from lit_train.config.compose import CONFIG_NAME
from lit_train.config.messages import describe
from lit_train.sweep.warm_start import WarmParent, WarmParentGone, can_start_warm

log = logging.getLogger(__name__)


def _summary(job_dir: Path) -> dict[str, Any]:
    """The ``summary.json`` the job wrote, or an empty dict."""
    path = job_dir / "summary.json"
    return json.loads(path.read_text()) if path.is_file() else {}


def _divergence(summary: dict[str, Any]) -> str | None:
    """Why a job's run failed numerically (``diverged (non_finite_gradient)``), or ``None`` if it did not."""
    if summary.get("status") != "diverged":
        return None
    reason = summary.get("stopped_reason")
    return "diverged" + (f" ({reason})" if reason != "diverged" else "")


class LitTrainApp(App):
    """The sweeper's view of lit_train: its monitored metric, its ``mode``, ``summary.json`` and warm trials.

    Args:
        config: The sweep's config.
        warm_start: Whether trials in processes of their own fork from a warm parent (Linux only).
    """

    name = "lit_train"
    step = "validation"
    reserved = ("trial",)
    mode_required = True
    # A failed trial (a diverged run, a configuration the model cannot take) is part of a search: the sweep goes on.
    max_failure_rate = 1.0

    def __init__(self, config: Any, warm_start: bool = True) -> None:
        super().__init__(config)
        self.warm_start = warm_start
        self._warm: WarmParent | None = None

    @property
    def study_name(self) -> str:
        return "lit_train"

    @property
    def metric(self) -> str:  # type: ignore[override]
        """The config's ``monitor``, which each job returns."""
        return str(self.config.monitor)

    def command(self) -> list[str]:
        return [sys.executable, "-m", "lit_train", *self.config_flags()]

    def config_flags(self) -> list[str]:
        # lit_train's own root config needs no flag.
        return [flag for flag in super().config_flags() if flag != f"--config-name={CONFIG_NAME}"]

    def trial_overrides(self, storage: str, study: str, number: int) -> list[str]:
        # The trial node, not the environment: lit_train validates it and its runner adds the pruning callback.
        return [f"+trial.storage={quote(storage)}", f"+trial.study={quote(study)}", f"+trial.number={number}"]

    def environment(self) -> dict[str, str]:
        # The trials share the machine's cores: torch's default of one thread per core in each of them would
        # oversubscribe the cores and slow every trial down, so each trial gets one thread.
        return {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}

    def open(self) -> None:
        if not (self.warm_start and can_start_warm()):
            return
        try:
            self._warm = WarmParent(self.environment())
        except OSError as error:
            log.warning(f"Trials start cold: their warm parent did not start ({error})")
            return
        log.info(f"Trials fork from a warm parent (pid {self._warm.pid}) that imports torch and Lightning once")

    def close(self) -> None:
        if self._warm is not None:
            self._warm.close()
            self._warm = None

    def start(self, number: int, args: list[str], env: dict[str, str]) -> Any:
        """Forks the trial from the warm parent if there is one; without one (or once it died) starts it cold."""
        if self._warm is not None:
            try:
                return self._warm.start([*self.config_flags(), *args], env)
            except WarmParentGone as gone:
                log.warning(f"Trials start cold from trial {number} on: {gone}")
                self._warm = None
        return super().start(number, args, env)

    def wait(self, timeout: float) -> None:
        if self._warm is None:
            super().wait(timeout)
        else:
            self._warm.wait(timeout)  # woken as soon as one of its trials ends

    def result(self, job_dir: Path, code: int | None) -> tuple[Any, str | None]:
        from lit_train.training.summary import monitored_value

        ended = _summary(job_dir)
        if diverged := _divergence(ended):  # exit code 3
            return None, diverged
        if code is None and ended.get("status") not in ("completed", "pruned"):
            return None, "its process ended after its warm parent, without a finished run's summary.json"
        if code is not None and code != 0:
            return None, f"the job exited with code {code}"
        return (monitored_value(ended) if ended else None), None

    def failure(self, job_dir: Path) -> str | None:
        return _divergence(_summary(job_dir))  # such a job returns: the sweep goes on

    def status(self, job_dir: Path) -> str | None:
        return _summary(job_dir).get("status")

    def describe(self, error: BaseException) -> str:
        return describe(error)
