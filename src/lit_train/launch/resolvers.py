"""lit_train's OmegaConf resolvers.

Nothing here imports torch or Lightning: Hydra resolves the run directory before any job runs.
"""

import os

from omegaconf import OmegaConf

#: Resolver giving the process id, for default directory names that differ between processes.
PID_RESOLVER = "lit_train.pid"


def register_resolvers() -> None:
    """Registers ``${lit_train.pid:}``, the id of the process that resolves it.

    Cached like Hydra's ``${now:...}``, so a sweep's jobs (which copy the sweep
    config's cache, also when a launcher pickles it to another machine) resolve
    the sweep directory as the sweep did. OmegaConf still needs the resolver
    registered to read a cached value, which is why importing this module
    registers it (see the end of the module).
    """
    OmegaConf.register_new_resolver(PID_RESOLVER, os.getpid, use_cache=True, replace=True)


# A job that a launcher unpickles on another machine (submitit on a SLURM node) imports the CLI, and with
# it this module, but never runs lit_train's main() nor Hydra's plugin discovery: registering on import is
# what lets it resolve the sweep directory it was given.
register_resolvers()
