"""The Optuna study behind ``hydra/sweeper=lit_optuna``: search space, ask / launch / tell, resume, best trial.

Serves any Hydra app: this module imports Hydra, OmegaConf and Optuna only.
What is particular to an app (its command, how a trial's process tells what it
returned) is its :class:`~hydra_plugins.lit_train_optuna_sweeper.app.App`.

Each trial is one Hydra job. The sweeper asks Optuna for a trial, turns its
parameters into overrides, adds the app's trial overrides so that the job can
report to the trial and be pruned (see :mod:`.trial`), launches it, and tells
the study how it ended: complete (the job's returned value), pruned, or failed
(an exception, a non-zero exit, no value, NaN or divergence). Failed trials end
the sweep once they are more than ``max_failure_rate`` of a batch of
``n_jobs`` trials.

With ``n_jobs`` above 1 and Hydra's basic launcher, the sweeper runs up to
``n_jobs`` trials at once, each as a process of its own started with the app's
command, and asks for the next trial as soon as any of them ends. Other
launchers get ``n_jobs`` trials at a time and return them together.

The study lives in a SQLite file in the sweep directory (or in the storage
``hydra.sweeper.storage`` names), so running the same command with the same
``hydra.sweep.dir`` continues it: ``n_trials`` is the study's total, and job
directories are numbered by trial number.

Several workers (the same command started on several machines, or several
times on one) with the same storage, study name and sweep directory run one
study together:

- A worker asks for a trial only while holding a lock file beside the storage
  (in the sweep directory for a database server), and under it counts the
  study's trials first: asking stops when the study holds ``n_trials``, so the
  workers together never ask for more. Optuna numbers trials uniquely per
  study, and job directories are numbered by trial, so they never collide.
- Every ``heartbeat_interval`` seconds a worker records the time in each trial
  it runs (a trial system attribute). Under the same lock, before asking, any
  worker records a running trial whose last heartbeat is older than
  ``grace_period`` as failed: its worker died. With ``max_retries`` it is run
  again with the same parameters as a new trial (Optuna's ``failed_trial`` /
  ``retry_history`` system attributes), which takes its place in ``n_trials``.
- A worker with nothing left to ask waits for the trials other workers run
  (and runs any retry that appears), so that every worker ends with the whole
  study: its ``best.yaml``, written under the lock, and the sweep's report.
"""

import difflib
import functools
import itertools
import logging
import math
import os
import shlex
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import optuna
from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.core.override_parser.types import Override, Transformer
from hydra.core.plugins import Plugins
from hydra.core.utils import JobReturn, JobStatus, configure_log
from hydra.errors import CompactHydraException, HydraException, InstantiationException
from hydra.plugins.launcher import Launcher
from hydra.types import HydraContext, TaskFunction
from hydra.utils import get_method, instantiate
from omegaconf import DictConfig, OmegaConf, open_dict
from optuna.distributions import BaseDistribution, CategoricalDistribution, FloatDistribution, IntDistribution
from optuna.exceptions import UpdateFinishedTrialError
from optuna.storages.journal import JournalFileOpenLock
from optuna.trial import FrozenTrial, Trial, TrialState
from sqlalchemy.engine import make_url
from sqlalchemy.exc import SQLAlchemyError

from hydra_plugins.lit_train_optuna_sweeper._compat import is_basic_launcher, job_error
from hydra_plugins.lit_train_optuna_sweeper.app import SWEEP_ONLY, App, app_for, quote, root_cause
from hydra_plugins.lit_train_optuna_sweeper.storage import (
    DIVERGED_ATTR, ERROR_ATTR, PRUNED_ATTR, PRUNER_ATTR, is_journal, open_storage, storage_problem,
)

log = logging.getLogger(__name__)

#: Tags that ``tag(...)`` may put on a range or an interval.
TAGS = ("log",)
#: The study's SQLite file and the best trial's file, in the sweep directory.
STORAGE_FILE = "optuna.db"
BEST_FILE = "best.yaml"
#: Trial user attributes the sweeper keeps: the job's overrides, its directory, and why it failed.
OVERRIDES_ATTR = "lit_train.overrides"
RUN_DIR_ATTR = "lit_train.run_dir"
FAILURE_ATTR = "lit_train.failure"
#: Trial system attribute: when the worker running the trial last recorded that it is alive (seconds since the epoch).
HEARTBEAT_ATTR = "lit_train:heartbeat"
#: Trial system attributes of a retry, as Optuna's RetryHeartbeatStaleTrialCallback names them: the first failed
#: trial, and every failed trial of the series (the last one is the trial this retry takes the place of).
RETRIED_ATTR, RETRY_HISTORY_ATTR = "failed_trial", "retry_history"
FINISHED = (TrialState.COMPLETE, TrialState.PRUNED, TrialState.FAIL)
STATE_NAMES = {TrialState.COMPLETE: "complete", TrialState.PRUNED: "pruned", TrialState.FAIL: "failed"}
DIRECTIONS = {"min": "minimize", "max": "maximize"}
#: ``hydra.sweep.subdir`` values that name a job by its number (lit_train's and Hydra's default).
NUMBERED_SUBDIRS = ("${hydra.job.num}", "${hydra.job.id}")
#: Seconds between looks at the trials running in their own processes, and at those other workers run.
POLL_S = 0.2
WAIT_S = 1.0


class SweeperConfigError(CompactHydraException):
    """Bad sweeper settings or search space: printed one line per problem, without a traceback; exit code 2.

    Args:
        problems: One line each.
        name: Who reports them: the app's name.
    """

    def __init__(self, problems: list[str], name: str = App.name) -> None:
        lines = [f"error: {problem}" for problem in problems]
        super().__init__("\n".join([*lines, f"{name}: {len(problems)} sweeper problem(s); nothing was run."]))


class TooManyFailures(CompactHydraException):
    """More of a batch of trials failed than ``hydra.sweeper.max_failure_rate`` allows: the sweep ends."""


def did_you_mean(word: str, options: Any) -> str:
    """``"; did you mean 'x'?"`` for the closest option, or ``""`` if none is close."""
    close = difflib.get_close_matches(str(word), [str(o) for o in options], n=1, cutoff=0.6)
    return f"; did you mean {close[0]!r}?" if close else ""


@dataclass(frozen=True)
class Param:
    """One searched key: its override key, Optuna distribution, and for choices the override text of each choice."""

    key: str
    distribution: BaseDistribution
    texts: dict[Any, str] | None = None

    def override(self, value: Any) -> str:
        if self.texts is not None:
            return f"{self.key}={self.texts[value]}"
        return f"{self.key}={value!r}"


def _value_text(override: Override) -> str:
    return str(override.input_line).partition("=")[2]


def _param(override: Override, path: str, problems: list[str]) -> Param | None:
    """The :class:`Param` of a sweep override (``None`` after reporting a problem)."""
    key = override.get_key_element()
    value = override.value()
    tags = set(getattr(value, "tags", None) or ())
    for tag in sorted(tags - set(TAGS)):
        problems.append(f"{path}: unknown tag {tag!r}{did_you_mean(tag, TAGS)} (tags: {', '.join(TAGS)})")
    log_scale = "log" in tags
    if override.is_interval_sweep():
        low, high = value.start, value.end
        if not low < high:
            problems.append(f"{path}: interval({low:g}, {high:g}) must have start < end")
        elif log_scale and low <= 0:
            problems.append(f"{path}: a log interval must be above 0, got interval({low:g}, {high:g})")
        else:
            return Param(key, FloatDistribution(low, high, log=log_scale))
        return None
    if override.is_choice_sweep() or override.is_range_sweep():
        values = list(override.sweep_iterator(transformer=Transformer.identity))
        if not values:
            problems.append(f"{path}: {_value_text(override)} has no values")
            return None
        is_int_range = (override.is_range_sweep() and not value.shuffle
                        and all(isinstance(v, int) and not isinstance(v, bool) for v in values))
        if is_int_range:
            step = abs(int(value.step))
            if log_scale and (step != 1 or min(values) <= 0):
                problems.append(f"{path}: a log range needs step 1 and values above 0, got "
                                f"{_value_text(override)}")
                return None
            return Param(key, IntDistribution(min(values), max(values), log=log_scale, step=step))
        if log_scale:
            problems.append(f"{path}: tag(log, ...) applies to interval() and integer range(), "
                            f"not to {_value_text(override)}")
            return None
        texts = {Transformer.encode(v): Transformer.str(v) for v in values}
        return Param(key, CategoricalDistribution(list(texts)), texts)
    problems.append(f"{path}: {_value_text(override)} is not a search space; use interval(), "
                    "tag(log,interval()), choice() or range()")
    return None


def parse_search_space(params: dict[str, Any], arguments: list[str],
                       reserved: tuple[str, ...] = ()) -> tuple[list[Param], list[str], list[str]]:
    """Splits ``hydra.sweeper.params`` and the command line into searched keys and overrides shared by every trial.

    A key on the command line replaces the same key in ``params``.

    Args:
        params: ``hydra.sweeper.params``.
        arguments: The command line's overrides.
        reserved: The app's keys that the sweeper sets for each trial (lit_train's ``trial``), refused here.

    Returns:
        The searched params, the fixed overrides, and the problems found (one line each).
    """
    parser = OverridesParser.create()
    problems: list[str] = []
    chosen: dict[str, tuple[str, Override]] = {}
    lines = [(f"hydra.sweeper.params.{key}", f"{key}={value}") for key, value in (params or {}).items()]
    lines += [(f"command line: {line}", line) for line in arguments]
    for path, line in lines:
        try:
            (override,) = parser.parse_overrides([line])
        except HydraException as e:
            problems.append(f"{path}: {str(e).splitlines()[0]}")
            continue
        if (key := override.key_or_group.partition(".")[0]) in reserved:
            problems.append(f"{path}: the {key}.* keys are set by the sweeper for each trial")
            continue
        chosen[override.key_or_group] = (path, override)
    space, fixed = [], []
    for path, override in chosen.values():
        if override.is_sweep_override():
            param = _param(override, path, problems)
            if param is not None:
                space.append(param)
        else:
            fixed.append(override.input_line)
    return space, fixed, problems


def _build(kind: str, node: Any, problems: list[str], seed_offset: int = 0) -> tuple[Any, dict[str, Any]]:
    """The sampler / pruner that ``hydra.sweeper.<kind>`` describes, and its ``{"target", "args"}``.

    Returns ``(None, {})`` after reporting a problem.
    """
    spec = OmegaConf.to_container(node, resolve=True) if isinstance(node, DictConfig) else node
    target = spec.pop("_target_", None) if isinstance(spec, dict) else None
    if not isinstance(target, str):
        problems.append(f"hydra.sweeper.{kind}: must be a config with a _target_ (choose hydra/sweeper/{kind}="
                        f"{'tpe' if kind == 'sampler' else 'median'}, ...), got {node!r}")
        return None, {}
    if isinstance(spec.get("seed"), int) and not isinstance(spec["seed"], bool):
        spec["seed"] += seed_offset
    try:
        return instantiate({"_target_": target, **spec}), {"target": target, "args": spec}
    except InstantiationException as e:
        problems.append(f"hydra.sweeper.{kind}: cannot build {target} with {spec}: {root_cause(e)}")
        return None, {}


def _counted(trials: list[FrozenTrial]) -> int:
    """The trials that count towards ``n_trials``: all but those a retry took the place of."""
    replaced = {t.system_attrs[RETRY_HISTORY_ATTR][-1] for t in trials if t.system_attrs.get(RETRY_HISTORY_ATTR)}
    return len(trials) - len(replaced)


class _Heartbeat:
    """Records the time in each trial this worker runs, now and then every ``interval`` seconds, from a thread."""

    def __init__(self, storage: Any, interval: int | None) -> None:
        self._storage, self._interval = storage, interval
        self._trial_ids: set[int] = set()
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def add(self, trial_id: int) -> None:
        if self._interval is None:
            return
        self._beat(trial_id)
        with self._lock:
            self._trial_ids.add(trial_id)
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="lit_train-heartbeat", daemon=True)
            self._thread.start()

    def discard(self, trial_id: int) -> None:
        with self._lock:
            self._trial_ids.discard(trial_id)

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()

    def _run(self) -> None:
        while not self._stop.wait(self._interval):
            with self._lock:
                trial_ids = list(self._trial_ids)
            for trial_id in trial_ids:
                # A missed beat is made up by the next; a thread that ended here would get live trials failed.
                try:
                    self._beat(trial_id)
                except Exception as error:  # noqa: BLE001  (the storage's own errors: network, locks)
                    log.warning(f"heartbeat of trial id {trial_id} not recorded: {error}")

    def _beat(self, trial_id: int) -> None:
        try:
            self._storage.set_trial_system_attr(trial_id, HEARTBEAT_ATTR, time.time())
        except UpdateFinishedTrialError:  # told meanwhile
            self.discard(trial_id)


@dataclass
class _Outcome:
    state: TrialState
    value: float | None = None
    note: str = ""


class LitOptunaSweeperImpl:
    """See :class:`hydra_plugins.lit_train_optuna_sweeper.config.LitOptunaSweeperConf` for the arguments."""

    def __init__(
        self,
        sampler: DictConfig,
        pruner: DictConfig,
        n_trials: int,
        n_jobs: int,
        study_name: str | None,
        storage: str | None,
        params: dict[str, Any] | None,
        heartbeat_interval: int | None = 60,
        grace_period: int = 180,
        max_retries: int = 0,
        warm_start: bool = True,
        direction: str | None = None,
        max_failure_rate: float | None = None,
        custom_search_space: str | None = None,
    ) -> None:
        self.sampler, self.pruner = sampler, pruner
        self.n_trials, self.n_jobs, self.warm_start = n_trials, n_jobs, warm_start
        self.study_name, self.storage = study_name, storage
        self.heartbeat_interval, self.grace_period, self.max_retries = heartbeat_interval, grace_period, max_retries
        self.direction, self.max_failure_rate = direction, max_failure_rate
        self.custom_search_space = custom_search_space
        self.params = dict(params or {})
        self.config: DictConfig | None = None
        self.hydra_context: HydraContext | None = None
        self.launcher: Launcher | None = None
        self.app = App(OmegaConf.create())
        self._storage: Any = None
        self._study_id = -1
        self._lock: JournalFileOpenLock | None = None
        self._heartbeat = _Heartbeat(None, None)
        self._seed_offset: int | None = None
        self._extend: Any = None
        self._space: list[Param] = []
        self._batch: list[bool] = []

    def setup(self, *, hydra_context: HydraContext, task_function: TaskFunction, config: DictConfig) -> None:
        self.config, self.hydra_context = config, hydra_context
        self.app = app_for(task_function, config, warm_start=self.warm_start)
        if self.study_name is None:  # a name of the app's, not Optuna's random one: the same command resumes it
            self.study_name = self.app.study_name
        self.launcher = Plugins.instance().instantiate_launcher(
            hydra_context=hydra_context, task_function=task_function, config=config
        )

    # -- settings ---------------------------------------------------------------------------------------------

    def _check(self, arguments: list[str]) -> tuple[list[Param], list[str], str]:
        problems = []
        for name in ("n_trials", "n_jobs"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                problems.append(f"hydra.sweeper.{name}: must be an integer >= 1, got {value!r}")
        if not self.study_name:
            problems.append("hydra.sweeper.study_name: must be a non-empty name")
        if (problem := storage_problem(self.storage)) is not None:
            problems.append(problem)
        interval = self.heartbeat_interval
        least_grace = max(3, (interval or 0) + 1)  # JournalFileOpenLock warns below 3 s
        if interval is not None and (isinstance(interval, bool) or not isinstance(interval, int) or interval < 1):
            problems.append(f"hydra.sweeper.heartbeat_interval: must be an integer >= 1 (seconds) or null, got "
                            f"{interval!r}")
        elif (isinstance(self.grace_period, bool) or not isinstance(self.grace_period, int)
              or self.grace_period < least_grace):
            above = f", above heartbeat_interval={interval}" if interval is not None else ""
            problems.append(f"hydra.sweeper.grace_period: must be an integer >= {least_grace} "
                            f"(seconds{above}), got {self.grace_period!r}")
        if isinstance(self.max_retries, bool) or not isinstance(self.max_retries, int) or self.max_retries < 0:
            problems.append(f"hydra.sweeper.max_retries: must be an integer >= 0, got {self.max_retries!r}")
        rate = self.max_failure_rate
        if rate is not None and (isinstance(rate, bool) or not isinstance(rate, (int, float)) or not 0 <= rate <= 1):
            problems.append(f"hydra.sweeper.max_failure_rate: must be a number from 0 to 1 or null, got {rate!r}")
        if self.custom_search_space is not None:
            try:
                self._extend = get_method(self.custom_search_space)
            except (ImportError, ValueError) as e:
                problems.append(f"hydra.sweeper.custom_search_space: {root_cause(e)}")
        direction = self._direction(problems)
        space, fixed, more = parse_search_space(self.params, arguments, self.app.reserved)
        problems += more
        if not space and not more and self._extend is None:
            problems.append("hydra.sweeper.params: nothing to search; give a range, e.g. "
                            "optimizer.lr=tag(log,interval(1e-4,1e-1))")
        if problems:
            raise SweeperConfigError(problems, self.app.name)
        return space, fixed, direction

    def _direction(self, problems: list[str]) -> str:
        """``hydra.sweeper.direction``, else the app's top-level ``mode`` (``min`` or ``max``), else minimize."""
        mode = OmegaConf.select(self.config, "mode")
        if self.direction is not None:
            if self.direction not in DIRECTIONS.values():
                problems.append(f"hydra.sweeper.direction: must be one of {tuple(DIRECTIONS.values())} (one "
                                f"objective) or null for the app's mode, got {self.direction!r}")
            elif self.app.mode_required and DIRECTIONS.get(mode) != self.direction:
                problems.append(f"hydra.sweeper.direction: {self.direction} disagrees with mode={mode}; leave it "
                                "null, and the sweep's direction follows mode")
            return str(self.direction)
        if mode in DIRECTIONS:
            return DIRECTIONS[mode]
        if self.app.mode_required:
            problems.append(f"mode: the sweep's direction comes from mode, which must be 'max' or 'min', got {mode!r}")
        return "minimize"

    def _sampler_and_pruner(self, seed_offset: int) -> tuple[Any, Any, dict[str, Any]]:
        """The sampler (its seed moved on by ``seed_offset``), the pruner, and the pruner's spec for the jobs."""
        problems: list[str] = []
        sampler, _ = _build("sampler", self.sampler, problems, seed_offset)
        if isinstance(sampler, functools.partial):  # the grid sampler, whose grid is the search space
            sampler = self._grid_sampler(sampler, problems)
        pruner, pruner_spec = _build("pruner", self.pruner, problems)
        if problems:
            raise SweeperConfigError(problems, self.app.name)
        return sampler, pruner, pruner_spec

    def _grid_sampler(self, partial: functools.partial, problems: list[str]) -> Any:
        """``partial`` given the grid of the search space; ``n_trials`` is at most the grid's size."""
        grid: dict[str, list[Any]] = {}
        for param in self._space:
            distribution = param.distribution
            if isinstance(distribution, CategoricalDistribution):
                grid[param.key] = list(distribution.choices)
            elif isinstance(distribution, IntDistribution) and not distribution.log:
                grid[param.key] = list(range(distribution.low, distribution.high + 1, distribution.step))
            else:
                problems.append(f"{param.key}: the grid sampler takes choice() and range(), not an interval")
        self.n_trials = min(self.n_trials, math.prod(len(values) for values in grid.values()))
        return partial(search_space=grid)

    # -- the sweep ----------------------------------------------------------------------------------------------

    def sweep(self, arguments: list[str]) -> list[JobReturn]:
        assert self.config is not None and self.launcher is not None
        space, fixed, direction = self._check(arguments)
        self._space = space
        processes = is_basic_launcher(self.launcher) and self.n_jobs > 1
        if processes:
            self.app.open()  # first: what it starts (lit_train's warm parent) gets ready while the study opens
        try:
            return self._sweep(space, fixed, direction)
        finally:
            if processes:
                self.app.close()

    def _sweep(self, space: list[Param], fixed: list[str], direction: str) -> list[JobReturn]:
        sweep_dir = Path(str(self.config.hydra.sweep.dir)).resolve()
        sweep_dir.mkdir(parents=True, exist_ok=True)
        OmegaConf.save(self.config, sweep_dir / "multirun.yaml")
        url = self.storage or f"sqlite:///{sweep_dir / STORAGE_FILE}"
        if is_journal(url):  # the trials get its absolute path: they may run elsewhere
            url = str(Path(url).resolve())
            Path(url).parent.mkdir(parents=True, exist_ok=True)
        try:
            storage = open_storage(url)
            existing = self._existing_trials(storage)
        except (OSError, SQLAlchemyError) as e:
            shown = url if is_journal(url) else make_url(url).render_as_string(hide_password=True)
            raise SweeperConfigError([f"hydra.sweeper.storage: cannot open {shown}: {str(e).splitlines()[0]}"],
                                     self.app.name) from e
        # A resumed study moves the sampler's seed on by the trials it holds: reproducible, and a seeded
        # sampler does not propose the first trials' parameters again (see _next_trial for workers).
        self._seed_offset = existing
        sampler, pruner, pruner_spec = self._sampler_and_pruner(existing)
        study = optuna.create_study(storage=storage, sampler=sampler, pruner=pruner, study_name=self.study_name,
                                    direction=direction, load_if_exists=True)
        # Read trials through the storage itself: the study caches them, but the jobs write reports and attributes.
        self._storage, self._study_id = storage, storage.get_study_id_from_name(self.study_name)
        if study.direction.name.lower() != direction:
            asked = f"mode={self.config.mode}" if self.direction is None else f"hydra.sweeper.direction={direction}"
            key = "mode" if self.direction is None else "hydra.sweeper.direction"
            raise SweeperConfigError([f"{key}: study {self.study_name!r} in {url} is to "
                                      f"{study.direction.name.lower()}, but {asked} asks to {direction}; use another "
                                      "hydra.sweep.dir or hydra.sweeper.study_name"], self.app.name)
        study.set_user_attr(PRUNER_ATTR, pruner_spec)
        self._lock = self._ask_lock(url, sweep_dir)
        with self._locked():
            self._fail_stale(study)
            trials = self._storage.get_all_trials(self._study_id, deepcopy=False)
        done = sum(t.state in FINISHED for t in trials)
        running = sum(t.state == TrialState.RUNNING for t in trials)
        todo = max(0, self.n_trials - _counted(trials))
        log.info(f"Study {self.study_name!r} in {url}: {done} trial(s) done, {todo} to run"
                 + (f", {running} running in other workers" if running else "")
                 + f" ({type(sampler).__name__}, {type(pruner).__name__}, {direction} {self.app.metric})")
        self._heartbeat = _Heartbeat(storage, self.heartbeat_interval)
        returns: list[JobReturn] = []
        try:
            while True:
                asks = self._asks(study, space, fixed, url)
                if is_basic_launcher(self.launcher) and self.n_jobs > 1:
                    returns += self._run_processes(study, asks)
                else:
                    returns += self._run_batches(study, asks)
                if not self._wait_for_others(study):
                    break
        finally:
            self._heartbeat.stop()
        self._check_failures()
        self._finish(study, sweep_dir)
        return returns

    # -- workers: the lock, the heartbeat, the count ---------------------------------------------------------------

    def _ask_lock(self, url: str, sweep_dir: Path) -> JournalFileOpenLock:
        """The lock every worker of the study takes to ask: beside the storage's file, else in the sweep directory.

        A lock not released for ``grace_period`` seconds (its worker died while asking) is broken.
        """
        if is_journal(url):
            base = url
        elif make_url(url).get_backend_name() == "sqlite":
            base = str(Path(make_url(url).database).resolve())
        else:
            base = str(sweep_dir / "optuna")
        return JournalFileOpenLock(f"{base}.ask", grace_period=self.grace_period)

    @contextmanager
    def _locked(self) -> Iterator[None]:
        assert self._lock is not None
        self._lock.acquire()
        try:
            yield
        finally:
            self._lock.release()

    def _next_trial(self, study: optuna.Study, space: list[Param]) -> Trial | None:
        """A new trial, or a waiting one (a retry), or ``None`` when the study holds ``n_trials``.

        The count and the ask happen under the lock, so that workers asking at once cannot overshoot.
        """
        with self._locked():
            self._fail_stale(study)
            trials = self._storage.get_all_trials(self._study_id, deepcopy=False)
            waiting = any(t.state == TrialState.WAITING for t in trials)
            if _counted(trials) >= self.n_trials and not waiting:
                return None
            if self._seed_offset is not None and self._seed_offset != len(trials):
                # Other workers asked since this one started: a seeded sampler starting where they did would
                # propose their parameters again, so its seed moves on by the trials the study holds now.
                study.sampler = self._sampler_and_pruner(len(trials))[0]
            self._seed_offset = None
            trial = study.ask({param.key: param.distribution for param in space})
            self._heartbeat.add(self._trial_id(trial.number))
            return trial

    def _trial_id(self, number: int) -> int:
        return self._storage.get_trial_id_from_study_id_trial_number(self._study_id, number)

    def _fail_stale(self, study: optuna.Study) -> None:
        """Running trials whose worker has not recorded a heartbeat for ``grace_period`` seconds are failed.

        Called under the lock. Trials without a heartbeat (run with ``heartbeat_interval: null``) are left alone.
        """
        if self.heartbeat_interval is None:
            return
        now = time.time()
        for stale in self._storage.get_all_trials(self._study_id, deepcopy=False, states=(TrialState.RUNNING,)):
            beat = stale.system_attrs.get(HEARTBEAT_ATTR)
            if beat is None or now - beat <= self.grace_period:
                continue
            trial_id = self._trial_id(stale.number)
            try:
                self._storage.set_trial_user_attr(trial_id, FAILURE_ATTR,
                                                  f"its worker stopped: no heartbeat for {now - beat:.0f} s")
                if not self._storage.set_trial_state_values(trial_id, TrialState.FAIL):
                    continue
            except UpdateFinishedTrialError:  # its worker told it meanwhile
                continue
            log.info(f"Trial {stale.number}: failed, its worker stopped (no heartbeat for {now - beat:.0f} s)")
            self._retry(study, stale)

    def _retry(self, study: optuna.Study, failed: FrozenTrial) -> None:
        """Queues ``failed`` to run again with the same parameters, up to ``max_retries`` times per series."""
        history = [*failed.system_attrs.get(RETRY_HISTORY_ATTR, []), failed.number]
        if len(history) > self.max_retries:
            return
        study.add_trial(optuna.trial.create_trial(
            state=TrialState.WAITING, params=failed.params, distributions=failed.distributions,
            system_attrs={RETRIED_ATTR: history[0], RETRY_HISTORY_ATTR: history}))
        log.info(f"Trial {failed.number}: queued to run again (retry {len(history)} of {self.max_retries})")

    def _wait_for_others(self, study: optuna.Study) -> bool:
        """Waits while other workers run trials of the study; ``True`` as soon as there is a trial to ask for.

        Trials whose worker dies are failed meanwhile (and their retries asked for), so this ends.
        """
        if self.heartbeat_interval is None:
            return False
        said = False
        while True:
            with self._locked():
                self._fail_stale(study)
                trials = self._storage.get_all_trials(self._study_id, deepcopy=False)
            if any(t.state == TrialState.WAITING for t in trials) or _counted(trials) < self.n_trials:
                return True
            running = [t.number for t in trials if t.state == TrialState.RUNNING and HEARTBEAT_ATTR in t.system_attrs]
            if not running:
                return False
            if not said:
                log.info(f"Waiting for trial(s) {', '.join(map(str, running))} of other workers: this worker "
                         "ends with the whole study")
                said = True
            time.sleep(WAIT_S)

    def _existing_trials(self, storage: Any) -> int:
        try:
            study_id = storage.get_study_id_from_name(self.study_name)
        except KeyError:
            return 0
        return len(storage.get_all_trials(study_id, deepcopy=False))

    def _run_batches(self, study: optuna.Study, asks: Iterator[tuple[Trial, list[str]]]) -> list[JobReturn]:
        """Launches the trials through the launcher: one at a time with the basic one, else ``n_jobs`` together."""
        at_once = 1 if is_basic_launcher(self.launcher) else self.n_jobs
        returns: list[JobReturn] = []
        while batch := list(itertools.islice(asks, at_once)):
            returns += self._run(study, batch)
        return returns

    def _run_processes(self, study: optuna.Study, asks: Iterator[tuple[Trial, list[str]]]) -> list[JobReturn]:
        """Runs up to ``n_jobs`` trials at once, one process each, and asks for the next as soon as any ends."""
        running: dict[Any, tuple[Trial, list[str], Path]] = {}
        returns: list[JobReturn] = []
        try:
            while True:
                while len(running) < self.n_jobs and (asked := next(asks, None)) is not None:
                    trial, overrides = asked
                    job_dir = self._job_dir(overrides, trial.number)
                    running[self._start(trial.number, overrides, job_dir)] = (trial, overrides, job_dir)
                if not running:
                    return returns
                ended = [process for process in running if process.ended()]
                if not ended:
                    self.app.wait(POLL_S)
                for process in ended:
                    trial, overrides, job_dir = running.pop(process)
                    returns.append(self._end(study, trial, overrides, job_dir, process.returncode))
        except BaseException:
            for process in running:
                process.terminate()
            for process in running:
                process.wait()
            self._fail_unfinished(study, [trial for trial, _, _ in running.values()])
            raise

    def _start(self, number: int, overrides: list[str], job_dir: Path) -> Any:
        """Starts trial ``number`` in a process of its own, writing to ``job_dir`` as a job of the sweep would."""
        sweep = [o for o in self.config.hydra.overrides.hydra if not o.startswith(SWEEP_ONLY)]
        args = [*overrides, *sweep, f"hydra.run.dir={quote(str(job_dir))}", f"hydra.job.num={number}"]
        return self.app.start(number, args, self.app.environment())

    def _end(self, study: optuna.Study, trial: Trial, overrides: list[str], job_dir: Path,
             code: int | None) -> JobReturn:
        """Tells the study how the process of ``trial`` ended, from storage and what the job left in ``job_dir``.

        Args:
            code: The process's exit code; ``None`` when it is unknown (lit_train: its warm parent died first).
        """
        value, failure = self.app.result(job_dir, code)
        outcome = self._judge(trial.number, value=value, failure=failure)
        ret = JobReturn(overrides=overrides, working_dir=str(job_dir), _return_value=value,
                        status=JobStatus.FAILED if failure else JobStatus.COMPLETED)
        self._tell(study, trial, outcome, job_dir)
        return ret

    def _frozen(self, number: int) -> optuna.trial.FrozenTrial:
        """Trial ``number`` as the storage has it now."""
        return self._storage.get_trial(self._storage.get_trial_id_from_study_id_trial_number(self._study_id, number))

    def _asks(self, study: optuna.Study, space: list[Param], fixed: list[str],
              url: str) -> Iterator[tuple[Trial, list[str]]]:
        """Each trial to run and its job's overrides, until the study holds ``n_trials``."""
        while (trial := self._next_trial(study, space)) is not None:
            overrides = [*fixed, *(param.override(trial.params[param.key]) for param in space)]
            if self._extend is not None:
                overrides += self._extended(trial, {param.key for param in space})
            trial.set_user_attr(OVERRIDES_ATTR, overrides)
            yield trial, [*overrides, *self.app.trial_overrides(url, study.study_name, trial.number)]

    def _extended(self, trial: Trial, searched: set[str]) -> list[str]:
        """The overrides that ``custom_search_space`` adds: the params it suggested, and those it returned."""
        returned = self._extend(self.config, trial)
        overrides = [f"{key}={value}" for key, value in trial.params.items() if key not in searched]
        if returned is not None:
            overrides += [f"{key}={value}" for key, value in dict(returned).items()]
        return overrides

    def _run(self, study: optuna.Study, batch: list[tuple[Trial, list[str]]]) -> list[JobReturn]:
        """Launches ``batch`` (trial numbers in order) and tells the study how each trial ended."""
        assert self.launcher is not None
        first = batch[0][0].number
        told: set[int] = set()
        try:
            try:
                returns = list(self.launcher.launch([overrides for _, overrides in batch], initial_job_idx=first))
            except SystemExit as stop:
                # lit_train's CLI exits after reporting a failed run: the trial failed, the sweep goes on.
                # The same exit after Ctrl+C (summary.json says "interrupted") ends the sweep.
                configure_log(self.config.hydra.hydra_logging, self.config.hydra.verbose)
                trial, overrides = batch[0]
                if len(batch) != 1 or self.app.status(self._job_dir(overrides, trial.number)) not in ("failed", None):
                    raise
                outcome = self._judge(trial.number, failure=f"the job exited with code {stop.code}")
                self._tell(study, trial, outcome, self._job_dir(overrides, trial.number))
                return []
            for (trial, _), ret in zip(batch, returns):
                self._tell(study, trial, self._outcome(trial, ret), ret.hydra_cfg.hydra.runtime.output_dir)
                told.add(trial.number)
            return returns
        except BaseException:
            self._fail_unfinished(study, [trial for trial, _ in batch if trial.number not in told])
            raise

    def _fail_unfinished(self, study: optuna.Study, trials: list[Trial]) -> None:
        """Trials still running when the sweep is interrupted are recorded as failed."""
        for trial in trials:
            self._heartbeat.discard(self._trial_id(trial.number))
            if self._frozen(trial.number).state == TrialState.RUNNING:
                trial.set_user_attr(FAILURE_ATTR, "interrupted")
                study.tell(trial, state=TrialState.FAIL)

    def _job_dir(self, overrides: list[str], number: int) -> Path:
        """Where the job of trial ``number`` writes: ``hydra.sweep.dir`` / ``hydra.sweep.subdir`` of its config."""
        assert self.hydra_context is not None and self.config is not None
        if OmegaConf.to_container(self.config.hydra.sweep)["subdir"] in NUMBERED_SUBDIRS:
            # The job's number alone names it: composing its whole config (a third of a second) would add nothing.
            return Path(str(self.config.hydra.sweep.dir)) / str(number)
        cfg = self.hydra_context.config_loader.load_sweep_config(self.config, list(overrides))
        with open_dict(cfg):
            cfg.hydra.job.num = cfg.hydra.job.id = number
        return Path(str(cfg.hydra.sweep.dir)) / str(cfg.hydra.sweep.subdir)

    def _outcome(self, trial: Trial, ret: JobReturn) -> _Outcome:
        """How ``trial`` ended, from the launcher's return of its job."""
        if ret.status == JobStatus.COMPLETED:
            job_dir = None if ret.hydra_cfg is None else Path(ret.hydra_cfg.hydra.runtime.output_dir)
            if job_dir is not None and (failure := self.app.failure(job_dir)):
                return self._judge(trial.number, failure=failure)
            return self._judge(trial.number, value=ret.return_value)
        return self._judge(trial.number, failure=self.app.describe(job_error(ret)))

    def _judge(self, number: int, value: Any = None, failure: str | None = None) -> _Outcome:
        """How trial ``number`` ended, from what its job left in storage and what the job gave back.

        Args:
            number: The trial's number.
            value: What the job returned (a job that did not fail).
            failure: Why the job failed, recorded unless the job stored a reason itself; ``None`` if it did not fail.
        """
        attrs = self._frozen(number).user_attrs
        if PRUNED_ATTR in attrs:
            return _Outcome(TrialState.PRUNED, note=f"pruned after {attrs[PRUNED_ATTR] + 1} {self.app.step}(s)")
        if failure is not None:
            return _Outcome(TrialState.FAIL, note=attrs.get(ERROR_ATTR) or failure)
        if DIVERGED_ATTR in attrs:
            return _Outcome(TrialState.FAIL, note=f"diverged: {self.app.metric} was not finite at {self.app.step} "
                                                  f"{attrs[DIVERGED_ATTR] + 1}")
        try:
            value = float(value)
        except (TypeError, ValueError):
            return _Outcome(TrialState.FAIL, note=f"the job returned {value!r}, not a number")
        if not math.isfinite(value):
            return _Outcome(TrialState.FAIL, note=f"the job returned {value}")
        return _Outcome(TrialState.COMPLETE, value)

    def _tell(self, study: optuna.Study, trial: Trial, outcome: _Outcome, run_dir: Any) -> None:
        self._heartbeat.discard(self._trial_id(trial.number))
        if (state := self._frozen(trial.number).state) != TrialState.RUNNING:
            # Its heartbeat was late by more than grace_period: another worker recorded it as failed.
            log.info(f"Trial {trial.number}: was recorded as {STATE_NAMES.get(state, state.name)} meanwhile "
                     f"(no heartbeat for {self.grace_period} s); its result is not kept")
            return
        trial.set_user_attr(RUN_DIR_ATTR, str(run_dir))
        if outcome.state == TrialState.FAIL:
            trial.set_user_attr(FAILURE_ATTR, outcome.note)
        try:
            study.tell(trial, outcome.value if outcome.state == TrialState.COMPLETE else None, state=outcome.state)
        except RuntimeError:
            # The grid sampler stops the study once the grid is done, which Optuna allows only inside optimize();
            # the trial was told all the same.
            if not isinstance(study.sampler, optuna.samplers.GridSampler):
                raise
        if outcome.state == TrialState.COMPLETE:
            log.info(f"Trial {trial.number}: {self.app.metric} = {outcome.value:.6g}")
        else:
            log.info(f"Trial {trial.number}: {STATE_NAMES[outcome.state]} ({outcome.note})")
        self._batch.append(f"trial {trial.number} ({outcome.note})" if outcome.state == TrialState.FAIL else "")
        if len(self._batch) == self.n_jobs:
            self._check_failures()

    def _check_failures(self) -> None:
        """Ends the sweep when more of the last batch of ``n_jobs`` trials failed than ``max_failure_rate`` allows.

        Raises:
            TooManyFailures: With the failed trials and why each failed.
        """
        batch, self._batch = self._batch, []
        rate = self.app.max_failure_rate if self.max_failure_rate is None else self.max_failure_rate
        failed = [note for note in batch if note]
        if batch and len(failed) / len(batch) > rate:
            raise TooManyFailures(f"{self.app.name}: {len(failed)} of {len(batch)} trial(s) failed, more than "
                                  f"hydra.sweeper.max_failure_rate={rate} allows: {'; '.join(failed)}")

    # -- the end ------------------------------------------------------------------------------------------------

    def _finish(self, study: optuna.Study, sweep_dir: Path) -> None:
        """Prints the best trial of the whole study and writes it to ``best.yaml``, under the lock: of workers
        ending together, the last one writes, from a study that holds the others' trials."""
        with self._locked():
            self._fail_stale(study)
            self._write_best(study, sweep_dir)

    def _write_best(self, study: optuna.Study, sweep_dir: Path) -> None:
        trials = study.get_trials(deepcopy=False)
        tally = {STATE_NAMES[state]: sum(t.state == state for t in trials) for state in FINISHED}
        counts = ", ".join(f"{n} {name}" for name, n in tally.items())
        if running := sum(t.state == TrialState.RUNNING for t in trials):
            counts += f", {running} running"
        complete = [t for t in trials if t.state == TrialState.COMPLETE]
        if not complete:
            print(f"{self.app.name}: no trial of study {study.study_name!r} completed ({counts}); "
                  f"no {BEST_FILE} written")
            return
        best = study.best_trial
        overrides = list(best.user_attrs.get(OVERRIDES_ATTR, [f"{k}={v!r}" for k, v in best.params.items()]))
        monitor = self.app.metric
        mode = next(mode for mode, direction in DIRECTIONS.items() if direction == study.direction.name.lower())
        command = self.app.command()
        if command[0] == sys.executable:
            command = ["python", *command[1:]]
        record = {
            "study": study.study_name,
            "trial": best.number,
            "monitor": monitor,
            "mode": mode,
            "value": best.value,
            "params": dict(best.params),
            "overrides": overrides,
            "command": " ".join(shlex.quote(part) for part in [*command, *overrides]),
            "run_dir": best.user_attrs.get(RUN_DIR_ATTR),
            "trials": tally,
        }
        path = sweep_dir / BEST_FILE
        header = f"# Best trial of study {study.study_name!r}; rerun it with the command below.\n"
        text = header + OmegaConf.to_yaml(OmegaConf.create(record))
        partial = path.with_name(f".{BEST_FILE}.{os.getpid()}")
        partial.write_text(text)
        partial.replace(path)  # whole: another worker may read or write it at the same time
        print(f"{self.app.name}: best of {len(trials)} trials ({counts}): trial {best.number}, "
              f"{monitor} {best.value:.6g} ({mode})")
        print(f"  {' '.join(overrides)}")
        print(f"  written to {path}")
