"""Checks what Hydra would act on before lit_train's own checks can run: its callbacks and its own logging.

Hydra configures its logging (``hydra.hydra_logging``: handlers and factories
it calls) while it composes, and builds every ``hydra.callbacks`` entry before
it calls any of them; lit_train's checks are one of those callbacks. So a
command that could put targets there, a config of the user's own (``-cn``,
``-cd``, ``-cp``, ``hydra.searchpath``) or an override of those nodes, has
Hydra's node composed and checked here first. Commands that use lit_train's
own configs alone skip this: theirs are checked where Hydra composes.
"""

import os
from pathlib import Path

from hydra import compose
from hydra.core.global_hydra import GlobalHydra
from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.errors import HydraException, MissingConfigException
from omegaconf import OmegaConf

from lit_train._compat import initialize_hydra_as_main
from lit_train.config.validate import hydra_problems

#: Hydra's flags that name a config of the user's own, each with its long form.
CONFIG_FLAGS = {"-cn": "--config-name", "-cd": "--config-dir", "-cp": "--config-path"}
#: Nodes of Hydra's that a command line may fill with targets Hydra acts on before lit_train's checks run.
_EARLY_NODES = ("hydra.callbacks", "hydra.hydra_logging", "hydra.searchpath", "hydra/hydra_logging", "hydra/callbacks")
#: The check that lit_train's root config installs, which a user's root config must keep.
CHECK = "lit_train.config.checks.CheckConfig"


def config_flags(args: list[str]) -> dict[str, str]:
    """The values of ``args``' config flags, by long name (``{"--config-dir": "conf"}``)."""
    found = {}
    for i, arg in enumerate(args):
        flag, equals, value = arg.partition("=")
        long = CONFIG_FLAGS.get(flag, flag)
        if long in CONFIG_FLAGS.values():
            if equals:
                found[long] = value
            elif i + 1 < len(args):
                found[long] = args[i + 1]
    return found


def early_problems(args: list[str], overrides: list[str], module: str, config_name: str) -> list[str]:
    """Problems with the targets Hydra acts on before lit_train's checks, for the command ``args``.

    Args:
        args: The command line, flags included.
        overrides: Its overrides.
        module: The package of lit_train's configs.
        config_name: lit_train's root config.
    """
    flags = config_flags(args)
    if not flags and not any(o.lstrip("+~").startswith(_EARLY_NODES) for o in overrides):
        return []
    name = flags.get("--config-name", config_name)
    config_dir = flags.get("--config-dir")
    if config_dir is not None and not os.path.isdir(config_dir):
        return [f"--config-dir: no such directory {os.path.abspath(config_dir)!r}"]
    try:
        # A sweep's values are checked job by job; Hydra's node is the same in every job.
        fixed = [o.input_line for o in OverridesParser.create().parse_overrides(overrides) if not o.is_sweep_override()]
        initialize_hydra_as_main(_config_path(flags.get("--config-path"), module),
                                 os.path.abspath(config_dir) if config_dir is not None else None)
        cfg = compose(name, overrides=fixed, return_hydra_config=True)
    except MissingConfigException as error:
        if error.missing_cfg_file != name:
            return []  # a group's option: Hydra's own message is explained with the command line's
        where = f"{os.path.abspath(config_dir)!r} or " if config_dir is not None else ""
        return [f"--config-name: no config {name!r} in {where}lit_train's configs"]
    except (HydraException, ValueError):
        return []  # Hydra fails on the same command line itself, before it acts on anything
    finally:
        GlobalHydra.instance().clear()
    callbacks = OmegaConf.select(cfg, "hydra.callbacks") or {}
    if not any(entry is not None and entry.get("_target_") == CHECK for entry in callbacks.values()):
        return [f"--config-name: the root config {name!r} does not build on lit_train's root config, whose checks "
                "it would skip; start its defaults list with '- config' (and keep hydra.callbacks.check)"]
    return hydra_problems(cfg, overrides)


def _config_path(given: str | None, module: str) -> str:
    """The primary config path of the command: lit_train's configs, or ``-cp``'s as ``hydra.main`` takes it."""
    if given is None:
        return f"pkg://{module}"
    if given.startswith(("pkg://", "file://")):
        return given
    # hydra.main takes a relative config_path from the directory of the file that declares it.
    return f"file://{(Path(__file__).resolve().parents[1] / 'launch' / given).resolve()}"
