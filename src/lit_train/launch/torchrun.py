"""torchrun workers of one launch agree on one run directory before Hydra starts.

torchrun starts every worker itself, and each would resolve the default
directory (a timestamp and its process id) to its own time and pid.

Nothing here imports torch at module level: the CLI imports this module before
the config is validated.
"""

import os
from datetime import timedelta
from typing import Any

from omegaconf import OmegaConf

from lit_train.config.compose import compose_with_hydra
from lit_train.config.overrides import quote

#: Environment variables torchrun sets in every worker it starts.
_TORCHRUN_VARIABLES = ("TORCHELASTIC_RUN_ID", "MASTER_ADDR", "MASTER_PORT", "RANK")
#: How long a torchrun worker waits for the store that it agrees on the directory through.
_STORE_TIMEOUT = timedelta(minutes=5)
#: The store a torchrun worker agreed through; kept for the life of the process (see :func:`_agree`).
_stores: list[Any] = []


def under_torchrun() -> bool:
    """Whether torchrun (torch.distributed.run) started this process as one of its workers."""
    return all(name in os.environ for name in _TORCHRUN_VARIABLES)


def torchrun_overrides(overrides: list[str], multirun: bool) -> list[str]:
    """Overrides that make the torchrun workers of one launch share one directory; empty outside torchrun.

    Every worker proposes the directory it would use, and all take the first
    proposal that reached torchrun's store (see :func:`_agree`). Only rank 0
    records the config (``.hydra/``); the other ranks log to files of their own.
    """
    if not under_torchrun():
        return []
    key = "hydra.sweep.dir" if multirun else "hydra.run.dir"
    rank = int(os.environ["RANK"])
    # Resolved here, in this worker: its own time and pid, or whatever the user's hydra.run.dir resolves to.
    cfg = compose_with_hydra(overrides, multirun)
    agreed = _agree(f"lit_train/{key}", str(OmegaConf.select(cfg, key)))
    extra = [f"{key}={quote(agreed)}"]
    if rank != 0:
        extra += ["hydra.output_subdir=null", f"hydra.job.name={cfg.hydra.job.name}_rank{rank}"]
    return extra


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
