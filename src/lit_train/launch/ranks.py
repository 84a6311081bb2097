"""DDP ranks that Lightning starts for a Hydra job run that one job, not the whole sweep.

Lightning's DDP launcher starts ranks 1..N-1 by running the script again. It
rebuilds that command from ``sys.argv``, which under ``-m`` is the whole sweep:
every rank would start the sweep over, each job in a directory of its own.
:func:`ranks_of_this_job` has the ranks run this one job instead.

Nothing here imports torch or Lightning at module level: the CLI imports this
module before the config is validated.
"""

import contextlib
import os
import sys
from collections.abc import Callable, Iterator
from typing import Any

from lit_train._compat import RANK_COMMAND, rank_command_modules
from lit_train.config.overrides import SWEEP_ONLY, quote

#: Hydra overrides that a rank started for one job must not repeat: they belong to the sweep that ran the
#: job, or the rank's command sets them itself.
_SWEEP_OR_SET_FOR_RANK = (
    *SWEEP_ONLY, "hydra/launcher", "hydra.launcher.", "hydra.sweep.", "hydra.job.id=", "hydra.job.name=",
    "hydra.output_subdir=",
)


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
    modules = rank_command_modules()
    environ = dict(os.environ)
    started: list[int] = []

    def command(local_rank: int) -> tuple[list[str], str]:
        started.append(local_rank)
        return rank_command(local_rank)

    originals: list[tuple[Any, Callable]] = [(module, getattr(module, RANK_COMMAND)) for module in modules]
    for module, _ in originals:
        setattr(module, RANK_COMMAND, command)
    completed = False
    try:
        yield
        completed = True
    finally:
        for module, original in originals:
            setattr(module, RANK_COMMAND, original)
        distributed = sys.modules.get("torch.distributed")  # never imported: no group to destroy
        if (completed or started) and distributed is not None and distributed.is_available():
            if distributed.is_initialized():
                distributed.destroy_process_group()
        if started:
            os.environ.clear()
            os.environ.update(environ)
