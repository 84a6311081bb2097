"""Hydra search-path plugin: makes lit_train's config groups available to every Hydra app."""

from hydra.core.config_search_path import ConfigSearchPath
from hydra.plugins.search_path_plugin import SearchPathPlugin


class LitTrainSearchPathPlugin(SearchPathPlugin):
    """Appends ``pkg://lit_train.conf``, so any app's defaults list can pick ``optimizer: lamb``."""

    def manipulate_search_path(self, search_path: ConfigSearchPath) -> None:
        search_path.append(provider="lit_train", path="pkg://lit_train.conf")
