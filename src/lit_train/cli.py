"""``python -m lit_train``: compose the config, validate it, then train.

Only this layer and :mod:`lit_train.run` know Hydra. Torch and Lightning are
imported after the config has been validated, so a bad command line fails fast.
"""

import sys

import hydra
from hydra._internal.utils import get_args_parser
from omegaconf import DictConfig

from lit_train import launch
from lit_train.command_line import CONFIG_MODULE, CONFIG_NAME, check_overrides, expand_callback_additions
from lit_train.partial_run import taken_back
from lit_train.validate import validate

EXIT_BAD_CONFIG = 2
EXIT_RUN_FAILED = 1


class ConfigError(Exception):
    """A config problem found inside a job (e.g. one a sweeper generated)."""


def _report(problems: list[str]) -> None:
    for problem in problems:
        print(f"error: {problem}", file=sys.stderr)
    print(f"lit_train: {len(problems)} config problem(s); nothing was run.", file=sys.stderr)


@hydra.main(version_base="1.3", config_path=f"pkg://{CONFIG_MODULE}", config_name=CONFIG_NAME)
def _job(cfg: DictConfig) -> float | None:
    problems = validate(cfg)
    if problems:
        _report(problems)
        raise ConfigError("; ".join(problems))
    from lit_train.run import run

    try:
        with launch.ranks_of_this_job():
            return run(cfg)
    except Exception as error:
        if cfg.verbose:
            raise
        _report_failure(error, kept=not taken_back(cfg.run_dir))
        sys.exit(EXIT_RUN_FAILED)


def _report_failure(error: BaseException, kept: bool = True) -> None:
    """One line naming the root cause (Hydra wraps errors raised by constructors), then what is left of the run."""
    while error.__cause__ is not None:
        error = error.__cause__
    message = " ".join(line.strip() for line in str(error).splitlines() if line.strip())
    print(f"error: {type(error).__name__}: {message}", file=sys.stderr)
    if kept:
        print("lit_train: the run failed (summary.json says where it stopped); add verbose=true for the traceback.",
              file=sys.stderr)
    else:
        print("lit_train: the run failed before its first checkpoint, so it left nothing behind; "
              "add verbose=true for the traceback.", file=sys.stderr)




def main(argv: list[str] | None = None) -> None:
    """Runs lit_train with ``argv`` (default: ``sys.argv[1:]``)."""
    argv = expand_callback_additions(list(sys.argv[1:] if argv is None else argv))
    args = get_args_parser().parse_args(argv)
    # Flags that only print (help, config, info) run no job and need no validation.
    if not (args.help or args.hydra_help or args.info or args.cfg or args.shell_completion):
        problems = (check_overrides(args.overrides, multirun=args.multirun)
                    or launch.launcher_problems(args.overrides, multirun=args.multirun))
        if problems:
            _report(problems)
            sys.exit(EXIT_BAD_CONFIG)
        argv += launch.torchrun_overrides(args.overrides, multirun=args.multirun)
    sys.argv = [sys.argv[0], *argv]
    _job()
