"""One run, several processes: where they write, and how the ranks Lightning adds are started.

Three situations put more than one process on a run directory:

* **Default directories.** ``hydra.run.dir`` and ``hydra.sweep.dir`` default to a
  timestamp with microseconds plus the process id (``${lit_train.pid:}``), so two
  runs started in the same second never share a directory, and the names still
  sort by start time.
* **Lightning's DDP launcher** starts ranks 1..N-1 by running the script again.
  Lightning rebuilds that command from ``sys.argv``, which under ``-m`` is the
  whole sweep: every rank would start the sweep over, each job in a directory of
  its own. :func:`ranks_of_this_job` has the ranks run this one job instead.
* **torchrun** starts every worker itself, and each would resolve the default
  directory to its own time and pid. :func:`torchrun_overrides` makes the
  workers of one launch agree on one directory before Hydra starts.

Nothing here imports torch or Lightning at module level: the CLI imports this
module before the config is validated.
"""

import contextlib
import os
import sys
from collections.abc import Callable, Iterator
from datetime import timedelta
from typing import Any

from omegaconf import DictConfig, OmegaConf

#: Resolver giving the process id, for default directory names that differ between processes.
PID_RESOLVER = "lit_train.pid"
#: Hydra overrides that a rank started for one job must not repeat: they belong to the sweep that ran the
#: job, or the rank's command sets them itself.
_SWEEP_OR_SET_FOR_RANK = (
    "hydra.mode=", "hydra/launcher", "hydra.launcher.", "hydra/sweeper", "hydra.sweeper.", "hydra.run.", "hydra.sweep.",
    "hydra.job.num=", "hydra.job.id=", "hydra.job.name=", "hydra.output_subdir=",
)
#: Environment variables torchrun sets in every worker it starts.
_TORCHRUN_VARIABLES = ("TORCHELASTIC_RUN_ID", "MASTER_ADDR", "MASTER_PORT", "RANK")
#: How long a torchrun worker waits for the store that it agrees on the directory through.
_STORE_TIMEOUT = timedelta(minutes=5)
#: The store a torchrun worker agreed through; kept for the life of the process (see :func:`_agree`).
_stores: list[Any] = []


def register_resolvers() -> None:
    """Registers ``${lit_train.pid:}``, the id of the process that resolves it.

    Cached like Hydra's ``${now:...}``, so a sweep's jobs (which copy the sweep
    config's cache, also when a launcher pickles it to another machine) resolve
    the sweep directory as the sweep did. OmegaConf still needs the resolver
    registered to read a cached value, which is why importing this module
    registers it (see the end of the module).
    """
    OmegaConf.register_new_resolver(PID_RESOLVER, os.getpid, use_cache=True, replace=True)


def quote(text: str) -> str:
    """``text`` as a quoted Hydra override value (paths may hold ``=``, ``,`` or spaces)."""
    return "'" + text.replace("\\", "\\\\").replace("'", "\\'") + "'"


# --- launchers of a multirun -------------------------------------------------------------------------------


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
        cfg = _compose_with_hydra(overrides, multirun)
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


# --- DDP ranks started by Lightning -------------------------------------------------------------------------


def rank_command(local_rank: int) -> tuple[list[str], str]:
    """The command and working directory for rank ``local_rank`` of the Hydra job now running.

    The job's own overrides (the values a sweep gave it included), as a single
    run in the job's output directory. The job's process has recorded the
    config there, so the rank records none (``hydra.output_subdir=null``), and
    it logs to a file of its own. Same signature and contract as Lightning's
    ``_hydra_subprocess_cmd``.
    """
    from hydra.core.hydra_config import HydraConfig
    from hydra.utils import get_original_cwd, to_absolute_path

    import __main__

    hydra_cfg = HydraConfig.get()
    if __main__.__spec__ is None:  # started as a script (the lit-train console script)
        command = [sys.executable, to_absolute_path(sys.argv[0])]
    else:
        command = [sys.executable, "-m", __main__.__spec__.name]
    kept = [o for o in hydra_cfg.overrides.hydra if not o.startswith(_SWEEP_OR_SET_FOR_RANK)]
    command += [
        *hydra_cfg.overrides.task, *kept,
        f"hydra.run.dir={quote(hydra_cfg.runtime.output_dir)}",
        "hydra.output_subdir=null",
        f"hydra.job.name={hydra_cfg.job.name}_rank{local_rank}",
    ]
    return command, get_original_cwd()


def _lightning_launchers() -> list[Any]:
    """Lightning's modules that build the command of a DDP rank (``_hydra_subprocess_cmd``).

    Fabric defines the builder; the Trainer's launcher imports it by name, so
    both modules' references are replaced.
    """
    from lightning.fabric.strategies.launchers import subprocess_script as fabric_launcher
    from lightning.pytorch.strategies.launchers import subprocess_script as trainer_launcher

    return [module for module in (fabric_launcher, trainer_launcher) if hasattr(module, "_hydra_subprocess_cmd")]


@contextlib.contextmanager
def ranks_of_this_job() -> Iterator[None]:
    """While a Hydra job runs, Lightning's DDP launcher starts its ranks with :func:`rank_command`.

    Lightning starts ranks 1..N-1 from ``sys.argv``, which under ``-m`` holds
    the whole sweep: each rank would run every job of the sweep again, in
    directories of its own. Replacing the one function that builds that command
    is the narrowest fix: the launcher itself (ports, environment, the watch over
    the ranks) stays Lightning's.

    When this job started ranks, they end with it, so the job's process group
    and the variables the launcher set (``LOCAL_RANK``, ``WORLD_SIZE``,
    ``MASTER_PORT``, ...) are undone afterwards: otherwise the next job of a
    sweep would take itself for a rank started by someone else and wait for
    ranks that no longer exist. Every rank of a job that completed destroys its
    process group too: left to the interpreter's shutdown, gloo's worker threads
    can abort the process (``terminate called without an active exception``).
    A rank that failed leaves it alone, as the others may still be in a
    collective that the destruction would wait on.
    """
    modules = _lightning_launchers()
    environ = dict(os.environ)
    started: list[int] = []

    def command(local_rank: int) -> tuple[list[str], str]:
        started.append(local_rank)
        return rank_command(local_rank)

    originals: list[tuple[Any, Callable]] = [(module, module._hydra_subprocess_cmd) for module in modules]
    for module, _ in originals:
        module._hydra_subprocess_cmd = command
    completed = False
    try:
        yield
        completed = True
    finally:
        for module, original in originals:
            module._hydra_subprocess_cmd = original
        distributed = sys.modules.get("torch.distributed")  # never imported: no group to destroy
        if (completed or started) and distributed is not None and distributed.is_available():
            if distributed.is_initialized():
                distributed.destroy_process_group()
        if started:
            os.environ.clear()
            os.environ.update(environ)


# --- torchrun -----------------------------------------------------------------------------------------------


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
    cfg = _compose_with_hydra(overrides, multirun)
    agreed = _agree(f"lit_train/{key}", str(OmegaConf.select(cfg, key)))
    extra = [f"{key}={quote(agreed)}"]
    if rank != 0:
        extra += ["hydra.output_subdir=null", f"hydra.job.name={cfg.hydra.job.name}_rank{rank}"]
    return extra


def _compose_with_hydra(overrides: list[str], multirun: bool) -> DictConfig:
    """The config ``overrides`` compose to, Hydra's node included; a sweep's values are left out.

    A sweep's values change neither where the sweep goes nor how it is
    launched, and composing needs one value per key.
    """
    from hydra import compose, initialize_config_module
    from hydra.core.override_parser.overrides_parser import OverridesParser

    from lit_train.command_line import CONFIG_MODULE, CONFIG_NAME

    parsed = OverridesParser.create().parse_overrides(overrides)
    fixed = [o.input_line for o in parsed if not (multirun and o.is_sweep_override())]
    with initialize_config_module(CONFIG_MODULE, version_base="1.3"):
        return compose(CONFIG_NAME, overrides=fixed, return_hydra_config=True)


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


# A job that a launcher unpickles on another machine (submitit on a SLURM node) imports the CLI, and with
# it this module, but never runs lit_train's main() nor Hydra's plugin discovery: registering on import is
# what lets it resolve the sweep directory it was given.
register_resolvers()
