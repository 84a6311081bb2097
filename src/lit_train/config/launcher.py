"""Checks the launcher a multirun would use, before Hydra builds it."""

import sys

from omegaconf import OmegaConf

from lit_train.config.compose import compose_with_hydra


def launcher_problems(overrides: list[str], multirun: bool) -> list[str]:
    """Problems with the launcher a multirun would use, one line each (empty for a single run).

    Hydra builds the launcher only once the sweep starts, so a value it cannot
    take (``trainer.devices=auto`` as the task count of ``hydra/launcher=slurm``)
    would otherwise end the sweep with a traceback. Also says when jobs that
    SLURM may requeue would start over instead of resuming.
    """
    from hydra.errors import HydraException
    from omegaconf.errors import OmegaConfBaseException

    if not multirun:
        return []
    try:
        cfg = compose_with_hydra(overrides, multirun)
        launcher = OmegaConf.to_container(cfg.hydra.launcher, resolve=True)
    except OmegaConfBaseException as error:
        key = getattr(error, "full_key", None) or "hydra.launcher"
        return [f"{key}: {str(error).splitlines()[0]}"]
    except HydraException:
        return []  # a composition problem: check_overrides reports it
    if "submitit" in str(launcher.get("_target_")) and cfg.get("resume") != "auto":
        print("lit_train: note: SLURM requeues preempted and timed-out jobs; add resume=auto so that a requeued "
              "job continues from its checkpoints instead of starting over", file=sys.stderr)
    return []
