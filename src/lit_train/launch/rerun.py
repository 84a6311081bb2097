"""A run never trains over the results of an earlier run in the same directory.

Running a command again with the same ``hydra.run.dir`` (or ``hydra.sweep.dir``)
would overwrite ``last.ckpt``, ``metrics.csv`` and ``summary.json``, and in a
sweep retrain finished jobs over their results. So a run that finds earlier
results where it would write refuses before any compute, naming the two ways on:
``resume=auto`` continues the earlier run, another directory starts a new one.
``overwrite=true`` starts over in the same directory after moving the earlier
run aside, whole, to ``<dir>.previous-N``: nothing is deleted. lit_train's
Optuna sweeper continues its study in the sweep directory instead, and runs only
new trials, in new job directories. A resumed run keeps the overrides the earlier
run recorded (``.hydra/overrides.resume-N.yaml``), as Hydra rewrites the file.

Nothing here imports torch: Hydra builds the callback before the config is checked.
"""

import os
import sys
from pathlib import Path
from typing import Any

from hydra.experimental.callback import Callback
from omegaconf import DictConfig, OmegaConf

from lit_train.config.checks import refuse
from lit_train.training.run_dir import keep_recorded_overrides

#: What a run leaves in its directory that another run would overwrite.
RESULTS = ("summary.json", "metrics.csv", "checkpoints")


def earlier_results(directory: Path) -> list[str]:
    """The results of an earlier run in ``directory`` (an empty ``checkpoints`` folder is none)."""
    found = []
    for name in RESULTS:
        path = directory / name
        if path.is_file() or (path.is_dir() and any(path.iterdir())):
            found.append(name)
    return found


def _started_by_a_launch() -> bool:
    """Whether this process is a rank that torchrun, SLURM or Lightning started beside rank 0 of the same run."""
    return any(os.environ.get(name, "0") != "0" for name in ("RANK", "LOCAL_RANK", "SLURM_PROCID"))


def _resumes_itself(config: DictConfig) -> bool:
    """Whether the sweep's sweeper continues an earlier sweep without retraining its jobs (lit_train's Optuna
    sweeper: its study in the sweep directory knows the finished trials, and new trials get new directories)."""
    sweeper = OmegaConf.select(config, "hydra.sweeper") or {}
    return "lit_train_optuna_sweeper" in str(sweeper.get("_target_"))


def _aside(directory: Path) -> Path:
    number = 1
    while (aside := directory.with_name(f"{directory.name}.previous-{number}")).exists():
        number += 1
    return aside


def guard(directory: Path, found: list[str], key: str, config: DictConfig) -> None:
    """Refuses to run over ``found`` in ``directory`` unless the config resumes or overwrites it.

    Args:
        directory: The run (or sweep) directory.
        found: What it holds of an earlier run (for a sweep: ``<job>/<name>``).
        key: The key that names the directory, for the message.
        config: The composed config (``resume``, ``overwrite``, ``action``).
    """
    if not found:
        return
    if config.get("resume") == "auto" and config.get("action") == "train":
        keep_recorded_overrides(directory)
        return
    if not config.get("overwrite"):
        held = ", ".join(found[:3]) + (f" and {len(found) - 3} more" if len(found) > 3 else "")
        refuse([f"{key}: {directory} already holds an earlier run ({held}); add resume=auto to continue it, "
                f"overwrite=true to move it aside and start over, or choose another {key}"])
    here = Path.cwd().resolve()
    if here == directory.resolve() or directory.resolve() in here.parents:
        refuse([f"overwrite: cannot move {directory} aside, it holds the working directory; choose another {key}"])
    aside = _aside(directory)
    directory.rename(aside)
    print(f"lit_train: overwrite=true moved the earlier run in {directory} to {aside}", file=sys.stderr)


class RefuseRerun(Callback):
    """Hydra callback: guards the run or sweep directory before Hydra creates it (see the module's docstring)."""

    def on_run_start(self, config: DictConfig, **kwargs: Any) -> None:
        if _started_by_a_launch():
            return
        directory = Path(str(OmegaConf.select(config, "hydra.run.dir")))
        guard(directory, earlier_results(directory), "hydra.run.dir", config)

    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        if _started_by_a_launch() or _resumes_itself(config):
            return
        directory = Path(str(OmegaConf.select(config, "hydra.sweep.dir")))
        jobs = sorted(job for job in directory.iterdir() if job.is_dir()) if directory.is_dir() else []
        found = [f"{job.name}/{name}" for job in jobs for name in earlier_results(job)]
        guard(directory, found, "hydra.sweep.dir", config)
