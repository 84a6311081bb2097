"""The one door to Hydra's private names that the sweeper relies on.

A release that renames one fails loudly, naming the name and the installed
version, instead of changing the sweeper's behaviour silently.
"""

import importlib
import importlib.metadata
from typing import Any

#: Where Hydra keeps its in-process launcher.
BASIC_LAUNCHER = "hydra._internal.core_plugins.basic_launcher"


class CompatError(ImportError):
    """A private name of Hydra that the sweeper relies on is missing from the installed version."""


def is_basic_launcher(launcher: Any) -> bool:
    """Whether ``launcher`` is Hydra's in-process launcher (the sweeper then runs parallel trials as processes).

    Looked up at each call: Hydra's plugin scan executes its plugin modules
    again, so a class taken before the scan is not the one Hydra instantiates.

    Raises:
        CompatError: If the installed Hydra has no such launcher.
    """
    try:
        basic = importlib.import_module(BASIC_LAUNCHER).BasicLauncher
    except (ImportError, AttributeError) as error:
        version = importlib.metadata.version("hydra-core")
        raise CompatError(f"the lit_optuna sweeper relies on {BASIC_LAUNCHER}.BasicLauncher, which hydra-core "
                          f"{version} does not have; install a version its package allows") from error
    return isinstance(launcher, basic)


def job_error(job_return: Any) -> BaseException:
    """What a failed Hydra job raised, without re-raising it.

    The public ``JobReturn.return_value`` raises the error again and prints to
    stderr; a sweeper records the failure and goes on.
    """
    return job_return._return_value
