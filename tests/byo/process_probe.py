"""Callbacks that tell the tests about the process a run trains in: its parent, its torch threads."""

import json
import os
import signal
from pathlib import Path

import lightning.pytorch as L
import torch

#: What the sweeper's warm parent runs as (``python -m lit_train.sweep.warm_start FD``).
WARM_PARENT = b"lit_train.sweep.warm_start"


def _is_warm_parent(pid: int) -> bool:
    return WARM_PARENT in Path(f"/proc/{pid}/cmdline").read_bytes()


class RecordProcess(L.Callback):
    """Writes ``process.json`` to the run directory as training starts: pid, parent pid, torch threads."""

    def on_train_start(self, trainer, pl_module) -> None:
        record = {"pid": os.getpid(), "ppid": os.getppid(), "torch_threads": torch.get_num_threads(),
                  "warm": _is_warm_parent(os.getppid())}
        (Path(trainer.default_root_dir) / "process.json").write_text(json.dumps(record))


class KillWarmParent(RecordProcess):
    """Also SIGKILLs the process's parent as training starts, if that parent is the sweeper's warm parent."""

    def on_train_start(self, trainer, pl_module) -> None:
        super().on_train_start(trainer, pl_module)
        if _is_warm_parent(os.getppid()):
            os.kill(os.getppid(), signal.SIGKILL)
