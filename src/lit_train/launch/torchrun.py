"""torchrun workers of one launch agree on one run directory before Hydra creates it.

torchrun starts every worker itself, and each would resolve the default
directory (a timestamp and its process id) to its own time and pid.

Nothing here imports torch at module level: Hydra builds the callback before the
config is validated.
"""

import os
from datetime import timedelta
from typing import Any

from hydra.experimental.callback import Callback
from omegaconf import DictConfig, OmegaConf

#: Environment variables torchrun sets in every worker it starts.
_TORCHRUN_VARIABLES = ("TORCHELASTIC_RUN_ID", "MASTER_ADDR", "MASTER_PORT", "RANK")
#: How long a torchrun worker waits for the store that it agrees on the directory through.
_STORE_TIMEOUT = timedelta(minutes=5)
#: The store a torchrun worker agreed through; kept for the life of the process (see :func:`_agree`).
_stores: list[Any] = []


def under_torchrun() -> bool:
    """Whether torchrun (torch.distributed.run) started this process as one of its workers."""
    return all(name in os.environ for name in _TORCHRUN_VARIABLES)


class ShareRunDir(Callback):
    """Under torchrun, gives every worker of one launch the run (or sweep) directory that the first one proposed.

    A Hydra callback (named in the root config): Hydra calls it with the
    composed config before it creates the directory. Every worker proposes
    the directory it resolved (its own time and pid, or whatever the user's
    ``hydra.run.dir`` resolves to), and all take the first proposal that
    reached torchrun's store (see :func:`_agree`). Only rank 0 records the
    config (``.hydra/``); the other ranks log to files of their own.
    """

    def on_run_start(self, config: DictConfig, **kwargs: Any) -> None:
        share_dir(config, "hydra.run.dir")

    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        share_dir(config, "hydra.sweep.dir")


def share_dir(config: DictConfig, key: str) -> None:
    """Sets ``key`` of the composed ``config`` to the directory the torchrun launch agreed on; nothing outside torchrun."""
    if not under_torchrun():
        return
    agreed = _agree(f"lit_train/{key}", str(OmegaConf.select(config, key)))
    OmegaConf.update(config, key, agreed)
    rank = int(os.environ["RANK"])
    if rank != 0:
        config.hydra.output_subdir = None
        config.hydra.job.name = f"{config.hydra.job.name}_rank{rank}"


def _agree(key: str, proposal: str) -> str:
    """The value every worker of this torchrun launch gets for ``key``: the first worker's ``proposal``.

    The workers agree through the TCP store that torchrun already runs for the
    launch (at ``MASTER_ADDR:MASTER_PORT``) rather than through a file: the
    store lives exactly as long as the launch, spans nodes without a shared
    file system, and needs no polling, whereas a file keyed by run id or port
    could be a stale one from an earlier launch (a multi-node launch's run id
    is "none" unless given, and its port is often fixed). ``compare_set`` is atomic in the
    store, so no rank has to go first. When torchrun's agent does not share
    its store (``TORCHELASTIC_USE_AGENT_STORE`` not ``True``), rank 0 hosts it
    exactly as ``init_process_group`` would, as a multi-tenant store that the
    process group reuses later; it is kept alive for that.
    """
    from torch.distributed import TCPStore

    rank = int(os.environ["RANK"])
    hosts = os.environ.get("TORCHELASTIC_USE_AGENT_STORE") != "True" and rank == 0
    store = TCPStore(os.environ["MASTER_ADDR"], int(os.environ["MASTER_PORT"]), is_master=hosts,
                     timeout=_STORE_TIMEOUT, wait_for_workers=False, multi_tenant=True)
    _stores.append(store)
    return store.compare_set(key, "", proposal).decode()
