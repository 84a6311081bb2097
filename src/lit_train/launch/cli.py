"""``python -m lit_train``: compose the config, validate it, then train.

Torch and Lightning are imported after the config has been validated, so a bad
command line fails fast.
"""

import sys

import hydra
from omegaconf import DictConfig

from lit_train._compat import get_args_parser
from lit_train.config.compose import CONFIG_MODULE, CONFIG_NAME, check_overrides
from lit_train.config.launcher import launcher_problems
from lit_train.config.messages import describe
from lit_train.config.overrides import expand_callback_additions
from lit_train.config.validate import validate
from lit_train.launch import resolvers  # noqa: F401  (a job unpickled by a launcher resolves ${lit_train.pid:})
from lit_train.launch.ranks import ranks_of_this_job
from lit_train.launch.torchrun import torchrun_overrides
from lit_train.training.run_dir import taken_back

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
    from lit_train.training.run import run

    try:
        with ranks_of_this_job():
            return run(cfg)
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


def main(argv: list[str] | None = None) -> None:
    """Runs lit_train with ``argv`` (default: ``sys.argv[1:]``)."""
    argv = expand_callback_additions(list(sys.argv[1:] if argv is None else argv))
    args = get_args_parser().parse_args(argv)
    # Flags that only print (help, config, info) run no job and need no validation.
    if not (args.help or args.hydra_help or args.info or args.cfg or args.shell_completion):
        problems = (check_overrides(args.overrides, multirun=args.multirun)
                    or launcher_problems(args.overrides, multirun=args.multirun))
        if problems:
            _report(problems)
            sys.exit(EXIT_BAD_CONFIG)
        argv += torchrun_overrides(args.overrides, multirun=args.multirun)
    sys.argv = [sys.argv[0], *argv]
    _job()
