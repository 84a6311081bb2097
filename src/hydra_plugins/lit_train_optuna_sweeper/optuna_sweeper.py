"""The Hydra Sweeper plugin class; the work is done in ``_impl``, which imports Optuna."""

import sys
from typing import Any

from hydra.plugins.sweeper import Sweeper
from hydra.types import HydraContext, TaskFunction
from omegaconf import DictConfig

from hydra_plugins.lit_train_optuna_sweeper import config as _config  # noqa: F401  (registers hydra/sweeper=lit_optuna)

#: The exit code of a sweep refused for its settings, as lit_train's CLI exits for a bad config.
EXIT_BAD_CONFIG = 2


class LitOptunaSweeper(Sweeper):
    """Runs an Optuna study whose trials are Hydra jobs; see :class:`~.config.LitOptunaSweeperConf` for the settings."""

    def __init__(self, **settings: Any) -> None:
        from hydra_plugins.lit_train_optuna_sweeper._impl import LitOptunaSweeperImpl

        self._impl = LitOptunaSweeperImpl(**settings)

    def setup(self, *, hydra_context: HydraContext, task_function: TaskFunction, config: DictConfig) -> None:
        self._impl.setup(hydra_context=hydra_context, task_function=task_function, config=config)

    def sweep(self, arguments: list[str]) -> Any:
        from hydra_plugins.lit_train_optuna_sweeper._impl import SweeperConfigError

        try:
            return self._impl.sweep(arguments)
        except SweeperConfigError as error:  # a config problem, like those the CLI finds: same output, same exit code
            print(error, file=sys.stderr)
            sys.exit(EXIT_BAD_CONFIG)
