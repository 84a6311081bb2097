"""Checks the launcher a multirun would use, before Hydra builds it, and that a multi-node run has one."""

import os
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
    submitit = "submitit" in str(launcher.get("_target_"))
    if submitit and cfg.get("resume") != "auto":
        print("lit_train: note: SLURM requeues preempted and timed-out jobs; add resume=auto so that a requeued "
              "job continues from its checkpoints instead of starting over", file=sys.stderr)
    return [] if submitit else multi_node_problems(cfg)


#: Environment variables of which one says that a multi-node launcher started this process: torchrun, SLURM,
#: MPI, LSF, or a launcher that sets torch.distributed's own variables (Kubeflow's PyTorchJob, for one).
_MULTI_NODE_LAUNCHED = ("TORCHELASTIC_RUN_ID", "SLURM_NTASKS", "OMPI_COMM_WORLD_SIZE", "LSB_JOBID", "MASTER_ADDR")


def multi_node_problems(cfg: DictConfig) -> list[str]:
    """``trainer.num_nodes`` above 1 in a process that no multi-node launcher started: it would wait forever."""
    nodes = OmegaConf.select(cfg, "trainer.num_nodes", default=1)
    if not isinstance(nodes, int) or nodes <= 1 or any(name in os.environ for name in _MULTI_NODE_LAUNCHED):
        return []
    return [f"trainer.num_nodes: {nodes} nodes need a multi-node launcher and none started this process (alone it "
            f"would wait for the other nodes forever): use torchrun --nnodes={nodes}, srun under SLURM, or "
            "hydra/launcher=slurm with -m; on one machine, leave trainer.num_nodes=1"]
