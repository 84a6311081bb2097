"""The checks before any compute, run where Hydra composes the config: once, before anything is written.

:class:`CheckConfig` is a Hydra callback (named in the root config). Hydra
calls it with the config it has just composed, before a single run creates its
directory and before a sweep builds its sweeper and launcher; a problem ends
the command there with exit code 2, one line each, and nothing on disk. Torch
is never imported on the way.
"""

import sys
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from hydra.experimental.callback import Callback
from omegaconf import DictConfig, OmegaConf

from lit_train.config.compose import added_overrides, command_problems, planned_job_config
from lit_train.config.launcher import launcher_problems, multi_node_problems
from lit_train.config.messages import describe
from lit_train.config.validate import hydra_problems, validate

#: Exit code of a command refused for its config.
EXIT_BAD_CONFIG = 2


class ConfigProblem(ValueError):
    """A config problem found inside a job: a value a sweeper generated, or one that shows only once the run
    has built its objects (the class behind a ``_target_``)."""


def report(problems: list[str]) -> None:
    """Prints ``problems`` one line each, then what was not done."""
    for problem in problems:
        print(f"error: {problem}", file=sys.stderr)
    print(f"lit_train: {len(problems)} config problem(s); nothing was run.", file=sys.stderr)


def refuse(problems: list[str]) -> None:
    """Reports ``problems`` and ends the command with :data:`EXIT_BAD_CONFIG`."""
    report(problems)
    sys.exit(EXIT_BAD_CONFIG)


class CheckConfig(Callback):
    """Validates a single run's config, or every job and the launcher of a sweep, as Hydra composed them."""

    def on_run_start(self, config: DictConfig, **kwargs: Any) -> None:
        with _failing_closed():
            # The command line Hydra parsed is this process's own; hydra.overrides is Hydra's record of it.
            command_line = sys.argv[1:]
            problems = added_overrides(config, command_line) or [
                *hydra_problems(config, command_line),
                *validate(planned_job_config(config, multirun=False), command_line), *multi_node_problems(config)]
        if problems:
            refuse(problems)

    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        with _failing_closed():
            # Each swept value composes a job of its own; the sweep's config holds only the first.
            record = OmegaConf.to_container(config.hydra.overrides, resolve=False)  # as typed: ${...} unresolved
            overrides = [*record["hydra"], *record["task"]]
            problems = added_overrides(config, sys.argv[1:]) or command_problems(overrides, multirun=True)
            problems = problems or launcher_problems(config)
        if problems:
            refuse(problems)


@contextmanager
def _failing_closed() -> Iterator[None]:
    """Refuses the command when a check itself fails: Hydra would only warn of a callback's error and run unchecked."""
    try:
        yield
    except Exception as error:
        refuse([f"the config could not be checked: {describe(error)}"])
