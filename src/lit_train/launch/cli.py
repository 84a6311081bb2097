"""``python -m lit_train``: Hydra composes the config, lit_train checks it, then trains.

The checks run inside Hydra, on the config it composed (the ``check`` callback
of the root config, :mod:`lit_train.config.checks`): one composition and one
validation for a single run. Torch and Lightning are imported only once the
config has passed, so a bad command line fails fast.
"""

import os
import sys
from pathlib import Path

import hydra
from hydra.core.hydra_config import HydraConfig
from hydra.errors import (
    CompactHydraException, ConfigCompositionException, MissingConfigException, OverrideParseException,
)
from hydra.types import RunMode
from omegaconf import DictConfig, OmegaConf

from lit_train.config.checks import ConfigProblem, refuse, report
from lit_train.config.compose import CONFIG_MODULE, CONFIG_NAME, check_overrides
from lit_train.config.early import early_problems
from lit_train.config.messages import describe
from lit_train.config.overrides import expand_callback_additions, with_recorded_overrides
from lit_train.config.validate import validate
from lit_train.launch import resolvers  # noqa: F401  (a job unpickled by a launcher resolves ${lit_train.pid:})
from lit_train.launch.ranks import ranks_of_this_job
from lit_train.training.run_dir import taken_back
from lit_train.training.summary import EXIT_DIVERGED, EXIT_RUN_FAILED

#: Hydra's flags that take a value, which is not an override.
_FLAGS_WITH_VALUE = ("-c", "--cfg", "-p", "--package", "-cp", "--config-path", "-cn", "--config-name",
                     "-cd", "--config-dir", "--experimental-rerun", "-sc", "--shell-completion")


#: Hydra's errors for a command line that does not compose (a ValueError for a group set to null):
#: explained here, one line per bad override. Errors after composition (a sweeper's) stay Hydra's.
_COMPOSITION_ERRORS = (ConfigCompositionException, MissingConfigException, OverrideParseException, ValueError)
#: Jobs this process started: an error that reaches main() before any is the command line's.
_jobs_started: list[str] = []


@hydra.main(version_base="1.3", config_path=f"pkg://{CONFIG_MODULE}", config_name=CONFIG_NAME)
def _job(cfg: DictConfig) -> float | None:
    _jobs_started.append(HydraConfig.get().job.name)
    # A single run was checked as Hydra composed it; a sweeper may generate values no check saw.
    if HydraConfig.get().mode == RunMode.MULTIRUN and (problems := validate(cfg)):
        report(problems)
        raise ConfigProblem("; ".join(problems))  # the sweeper records the job as failed, and why
    from lit_train.training.run import Diverged, run
    from lit_train.training.signals import StopRequested

    try:
        with ranks_of_this_job():
            value = run(cfg)
        if cfg.action == "doctor" and HydraConfig.get().mode != RunMode.MULTIRUN:
            from lit_train.training.doctor import exit_code

            if code := exit_code(cfg.run_dir):  # an error finding: 4
                sys.exit(code)
        return value
    except ConfigProblem as problem:
        refuse([str(problem)])
    except Diverged as diverged:
        if HydraConfig.get().mode == RunMode.MULTIRUN:
            return diverged.value  # the sweep reads the job's status and goes on
        sys.exit(EXIT_DIVERGED)
    except StopRequested as stop:
        print(f"lit_train: stopped by {stop.name} (summary.json says where); add resume=auto to the same command "
              "to continue", file=sys.stderr)
        stop.pass_on()
        sys.exit(stop.exit_code)
    except Exception as error:
        if cfg.verbose:
            raise
        _report_failure(error, kept=not taken_back(cfg.run_dir))
        sys.exit(EXIT_RUN_FAILED)


def _report_failure(error: BaseException, kept: bool = True) -> None:
    """One line naming the root cause (Hydra wraps errors raised by constructors), then what is left of the run."""
    print(f"error: {describe(error)}", file=sys.stderr)
    if kept:
        print("lit_train: the run failed (summary.json says where it stopped); add verbose=true for the traceback.",
              file=sys.stderr)
    else:
        print("lit_train: the run failed before its first checkpoint, so it left nothing behind; "
              "add verbose=true for the traceback.", file=sys.stderr)


def _overrides(argv: list[str]) -> list[str]:
    """The overrides among Hydra's command-line arguments (flags and their values left out)."""
    overrides, skip = [], False
    for arg in argv:
        if skip:
            skip = False
        elif arg.startswith("-"):
            skip = arg in _FLAGS_WITH_VALUE
        else:
            overrides.append(arg)
    return overrides


def _continuing(args: list[str]) -> list[str]:
    """A single run's ``resume=auto`` command after the overrides its run directory recorded (``.hydra/``).

    The resumed run is configured as the run it continues (its checkpoint interval, its callbacks), with
    the command's own overrides on top; the command may change a value or drop one (``~key``).
    """
    overrides = _overrides(args)
    run_dir = next((o.split("=", 1)[1] for o in overrides if o.startswith("hydra.run.dir=")), None)
    if "resume=auto" not in overrides or run_dir is None or any(a in ("-m", "--multirun") for a in args):
        return args
    record = Path(run_dir) / ".hydra" / "overrides.yaml"
    if not record.is_file():
        return args
    merged, changes = with_recorded_overrides(overrides, [str(o) for o in OmegaConf.load(record)])
    kept = [o for o in merged if o not in overrides]
    print(f"lit_train: resume=auto continues {run_dir} with its overrides ({' '.join(kept) or 'none'})"
          + (f", changed by this command: {' '.join(changes)}" if changes else ""))
    return [*(a for a in args if a not in overrides), *merged]


def main(argv: list[str] | None = None) -> None:
    """Runs lit_train with ``argv`` (default: ``sys.argv[1:]``)."""
    given = _continuing(list(sys.argv[1:] if argv is None else argv))
    expanded = expand_callback_additions(given)
    if expanded != list(sys.argv[1:]):
        # hydra.main reads its command line from sys.argv and from nowhere else.
        sys.argv = [sys.argv[0], *expanded]
    # Hydra's errors come here instead of to its own report (a traceback): a command line that
    # does not compose is then explained one line per bad override. Ranks and trials inherit it.
    os.environ["HYDRA_FULL_ERROR"] = "1"
    if problems := early_problems(expanded, _overrides(expanded), CONFIG_MODULE, CONFIG_NAME):
        refuse(problems)
    _jobs_started.clear()
    try:
        _job()
    except _COMPOSITION_ERRORS as error:
        if _jobs_started:  # an error of a job (verbose=true), not of the command line
            raise
        multirun = any(arg in ("-m", "--multirun") for arg in expanded)
        refuse(check_overrides(_overrides(expanded), multirun) or [describe(error)])
    except CompactHydraException as error:
        # A message meant to be shown without a traceback (a sweeper's settings), as Hydra shows it.
        print(error, file=sys.stderr)
        sys.exit(EXIT_RUN_FAILED)
