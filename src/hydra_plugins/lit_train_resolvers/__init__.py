"""Registers lit_train's OmegaConf resolvers wherever Hydra runs.

lit_train's default run and sweep directories use ``${lit_train.pid:}``. Hydra
imports every module under ``hydra_plugins`` when it looks for plugins, before
it composes any config, so importing :mod:`lit_train.launch.resolvers` here (which
registers the resolver) makes it available to ``compose()`` (config checks,
tests, notebooks), not only to the CLI.
"""

from lit_train.launch.resolvers import register_resolvers

register_resolvers()
