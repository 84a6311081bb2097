"""Checks the launcher a multirun would use, before Hydra builds it."""

import sys

from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException


def launcher_problems(cfg: DictConfig) -> list[str]:
    """Problems with the launcher of the composed multirun ``cfg`` (Hydra's node included), one line each.

    Hydra builds the launcher only once the sweep starts, so a value it cannot
    take (``trainer.devices=auto`` as the task count of ``hydra/launcher=slurm``)
    would otherwise end the sweep with a traceback. Also says when jobs that
    SLURM may requeue would start over instead of resuming.
    """
    try:
        launcher = OmegaConf.to_container(cfg.hydra.launcher, resolve=True)
    except OmegaConfBaseException as error:
        key = getattr(error, "full_key", None) or "hydra.launcher"
        return [f"{key}: {str(error).splitlines()[0]}"]
    if "submitit" in str(launcher.get("_target_")) and cfg.get("resume") != "auto":
        print("lit_train: note: SLURM requeues preempted and timed-out jobs; add resume=auto so that a requeued "
              "job continues from its checkpoints instead of starting over", file=sys.stderr)
    return []
