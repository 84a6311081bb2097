"""What the sweeper needs to know about the Hydra app it sweeps, for any app; lit_train brings its own.

The search itself (``_impl``) is the same for every app. How a trial runs in a
process of its own, and how the sweeper learns what it returned, is the app's:
any app is started again with its own command (``sys.argv[0]``, or ``python -m
<module>``), and a Hydra callback that the sweeper adds to each trial's overrides
writes the job's return value into its job directory. An app may bring an
:class:`App` of its own (lit_train's reads the trial's ``summary.json`` and
starts trials from a warm parent); :func:`app_for` picks it.

Imports only Hydra, OmegaConf and the standard library.
"""

import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from hydra.types import TaskFunction
from hydra.utils import get_object
from omegaconf import DictConfig

#: Hydra overrides that belong to a sweep, not to one of its jobs: a job started in a process of its own
#: (a trial, a DDP rank) gets its own run directory and runs as a single run.
SWEEP_ONLY = ("hydra.mode=", "hydra/sweeper", "hydra.sweeper.", "hydra.run.", "hydra.job.num=")
#: The file in a trial's job directory where :class:`~.callbacks.ReturnValue` leaves what the job returned.
RETURN_FILE = "return_value.json"
#: The Hydra callback that writes a trial's return value, added to each trial's overrides under this key.
RETURN_CALLBACK = "lit_optuna_return={_target_:hydra_plugins.lit_train_optuna_sweeper.callbacks.ReturnValue}"
#: Environment variables that tell a trial's code which trial it is (see :mod:`.trial`).
STORAGE_ENV, STUDY_ENV, NUMBER_ENV = "LIT_OPTUNA_STORAGE", "LIT_OPTUNA_STUDY", "LIT_OPTUNA_TRIAL"
#: The apps that bring their own :class:`App`: the top-level package of the task function, and the class.
APPS = {"lit_train": "lit_train.sweep.adapter.LitTrainApp"}


def quote(text: str) -> str:
    """``text`` as a quoted Hydra override value (paths may hold ``=``, ``,`` or spaces)."""
    return "'" + text.replace("\\", "\\\\").replace("'", "\\'") + "'"


def root_cause(error: BaseException) -> BaseException:
    """The innermost cause of ``error``: Hydra wraps what a task function or a constructor raised."""
    while error.__cause__ is not None:
        error = error.__cause__
    return error


def describe(error: BaseException) -> str:
    """``"<Type>: <message>"`` of the root cause of ``error``, on one line."""
    cause = root_cause(error)
    return f"{type(cause).__name__}: {' '.join(str(cause).split())}"


def main_command() -> list[str]:
    """The command that started this process's app: ``python -m <module>`` or ``python <script>``."""
    spec = getattr(sys.modules["__main__"], "__spec__", None)
    if spec is not None:
        module = spec.name.removesuffix(".__main__")
        return [sys.executable, "-m", module]
    return [sys.executable, str(Path(sys.argv[0]).resolve())]


class ColdTrial:
    """A trial running in a process of its own, started from its app's command."""

    def __init__(self, process: subprocess.Popen) -> None:
        self._process = process

    @property
    def returncode(self) -> int | None:
        """The process's exit code, ``None`` while it runs."""
        return self._process.returncode

    def ended(self) -> bool:
        """Whether the process ended."""
        return self._process.poll() is not None

    def terminate(self) -> None:
        """Asks the process to end (SIGTERM)."""
        self._process.terminate()

    def wait(self) -> None:
        """Waits for the process to end."""
        self._process.wait()


class App:
    """How the sweeper runs the trials of a Hydra app and learns how they ended; serves any app.

    Args:
        config: The sweep's config: the app's primary config and its ``hydra`` node.
        warm_start: ``hydra.sweeper.warm_start``; any app's trials start cold, as the app's command starts them.
    """

    #: Who prints the sweep's problems and its best trial.
    name = "lit_optuna"
    #: What the trials' jobs return, as the sweeper's log and ``best.yaml`` name it.
    metric = "value"
    #: What a trial reports at (see :mod:`.trial`), as the sweeper's notes name it.
    step = "report"
    #: Top-level keys of the app's config that the sweeper sets for each trial, which the search may not set.
    reserved: tuple[str, ...] = ()
    #: Whether the app's top-level ``mode`` must give the direction when ``hydra.sweeper.direction`` does not.
    mode_required = False
    #: ``hydra.sweeper.max_failure_rate`` when it is null: hydra-optuna-sweeper's default.
    max_failure_rate = 0.0

    def __init__(self, config: DictConfig, warm_start: bool = True) -> None:
        self.config = config

    @property
    def study_name(self) -> str:
        """The study's name when ``hydra.sweeper.study_name`` is null: the app's job name."""
        return str(self.config.hydra.job.name)

    def command(self) -> list[str]:
        """The command line that runs one job of the app, before its overrides (:meth:`config_flags` included)."""
        return [*main_command(), *self.config_flags()]

    def config_flags(self) -> list[str]:
        """The sweep's ``--config-name`` and ``--config-dir``: not overrides, so each job's command carries them."""
        hydra = self.config.hydra
        flags = [f"--config-name={hydra.job.config_name}"] if hydra.job.get("config_name") else []
        return flags + [f"--config-dir={source.path}" for source in hydra.runtime.get("config_sources") or []
                        if source.provider == "command-line" and source.schema == "file"]

    def trial_overrides(self, storage: str, study: str, number: int) -> list[str]:
        """What each trial's job gets beside its parameters: which trial it is, and a callback that keeps its result."""
        return [
            f"+hydra.job.env_set.{STORAGE_ENV}={quote(storage)}",
            f"+hydra.job.env_set.{STUDY_ENV}={quote(study)}",
            f"+hydra.job.env_set.{NUMBER_ENV}={number}",
            f"+hydra.callbacks.{RETURN_CALLBACK}",
        ]

    def start(self, number: int, args: list[str], env: dict[str, str]) -> Any:
        """Starts the job of trial ``number`` in a process of its own, with the overrides ``args``.

        Returns:
            The running trial: ``ended()``, ``returncode``, ``terminate()`` and ``wait()``.
        """
        return ColdTrial(subprocess.Popen([*self.command(), *args], env=env))

    def wait(self, timeout: float) -> None:
        """Waits up to ``timeout`` seconds for one of the trials :meth:`start` started to end."""
        time.sleep(timeout)

    def open(self) -> None:
        """Called before a sweep whose trials run in processes of their own."""

    def close(self) -> None:
        """Called when that sweep ends."""

    def result(self, job_dir: Path, code: int | None) -> tuple[Any, str | None]:
        """What the job of a trial that ran in its own process returned, and why it failed (``None`` if it did not).

        Args:
            job_dir: The job's directory.
            code: The process's exit code; ``None`` when it is unknown.
        """
        path = job_dir / RETURN_FILE
        result = json.loads(path.read_text()) if path.is_file() else {}
        if "error" in result:
            return None, result["error"]
        if code is not None and code != 0:
            return None, f"the job exited with code {code}"
        if "value" not in result:
            return None, f"the job left no {RETURN_FILE} in {job_dir}"
        return result["value"], None

    def failure(self, job_dir: Path) -> str | None:
        """Why a job that returned failed all the same (``None`` if it did not)."""
        return None

    def status(self, job_dir: Path) -> str | None:
        """How the job in ``job_dir`` says it ended (``"failed"``, ``"interrupted"``, ...), if it says so."""
        return None

    def describe(self, error: BaseException) -> str:
        """``"<Type>: <message>"`` of what a failed job raised, on one line."""
        return describe(error)

    def environment(self) -> dict[str, str]:
        """The environment of the trials that run in processes of their own."""
        return dict(os.environ)


def app_for(task_function: TaskFunction | None, config: DictConfig, warm_start: bool = True) -> App:
    """The :class:`App` of the app whose task function is ``task_function``: its own if it brings one (see
    :data:`APPS`), else the one for any app.

    Args:
        task_function: The app's task function.
        config: The sweep's config.
        warm_start: ``hydra.sweeper.warm_start``, for an app that can start trials warm.
    """
    package = (getattr(task_function, "__module__", None) or "").partition(".")[0]
    kind = get_object(APPS[package]) if package in APPS else App
    return kind(config, warm_start=warm_start)
