"""Does pruning pay? Two 30-trial Optuna sweeps of the digits MLP, with and without pruning.

Both sweeps use the preset ``hparams_search=optuna`` (TPE with the same seed,
the same search space) with short trials, through the real CLI. They run side
by side, one process and one torch thread each, so that both see the same load
on a shared machine; each sweep's wall time is its whole command. The pruned
sweep (the preset's pruner unless ``--pruner`` says otherwise) should find a
best validation metric within 1% of the unpruned one in at most 60% of its wall
time. Prints both sweeps' numbers, their CPU times (a cross-check that is less
sensitive to other load), and::

    RATIO sweep_pruned_walltime_vs_unpruned <pruned / unpruned wall time> <= 0.60
    RATIO sweep_pruned_best_vs_unpruned <how many times worse the pruned best is> <= 1.01

The second ratio is unpruned / pruned for a metric to maximize (the preset's
val/acc) and pruned / unpruned for one to minimize: 1.0 is "as good", 1.01 is
"1% worse". Exits 1 if a bound is not met.

Trials are 40 epochs long (about 3 s each here with one thread) so that training, not
what every sweep pays whatever it prunes (about 13 s: imports, composing each
job, the report), decides the wall time; with ``--epochs 20`` the same pruner
measured 0.67 of the unpruned wall time. The whole benchmark takes about two
minutes on two cores.

Usage: ``python benchmarks/sweep_pruning.py [--trials 30] [--epochs 40] [--seed 0] [--pruner NAME] [--keep DIR]``
"""

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

WALLTIME_BOUND = 0.60
BEST_BOUND = 1.01


def start(sweep_dir: Path, pruner: str | None, args: argparse.Namespace) -> tuple[subprocess.Popen, float]:
    """Starts one sweep in the background; returns the process and its start time."""
    command = [
        sys.executable, "-m", "lit_train", "-m", "hparams_search=optuna",
        f"hydra.sweeper.n_trials={args.trials}", f"hydra.sweeper.sampler.seed={args.seed}",
        f"trainer.max_epochs={args.epochs}", "test=false", "callbacks.progress_bar=null",
        f"hydra.sweep.dir={sweep_dir}",
        *([f"hydra/sweeper/pruner={pruner}"] if pruner else []),
    ]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "PYTHONWARNINGS": "ignore"}
    sweep_dir.mkdir(parents=True)
    log = (sweep_dir.parent / f"{sweep_dir.name}.log").open("w")
    return subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, env=env), time.perf_counter()


def finish(process: subprocess.Popen, started: float, sweep_dir: Path) -> tuple[float, float, dict]:
    """Waits for one sweep; returns its wall time, CPU time and best.yaml."""
    _, status, usage = os.wait4(process.pid, 0)
    elapsed = time.perf_counter() - started
    process.returncode = os.waitstatus_to_exitcode(status)
    if process.returncode != 0:
        log = (sweep_dir.parent / f"{sweep_dir.name}.log").read_text()
        sys.exit(f"the sweep in {sweep_dir} failed:\n{log[-3000:]}")
    return elapsed, usage.ru_utime + usage.ru_stime, yaml.safe_load((sweep_dir / "best.yaml").read_text())


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=30)
    parser.add_argument("--epochs", type=int, default=40)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--pruner", default=None, help="hydra/sweeper/pruner option (default: the preset's)")
    parser.add_argument("--keep", type=Path, default=None, help="keep both sweep directories under this folder")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as scratch:
        root = args.keep or Path(scratch)
        unpruned_run = start(root / "unpruned", "none", args)
        pruned_run = start(root / "pruned", args.pruner, args)
        pruned_time, pruned_cpu, pruned = finish(*pruned_run, root / "pruned")
        unpruned_time, unpruned_cpu, unpruned = finish(*unpruned_run, root / "unpruned")
    monitor, mode = unpruned["monitor"], unpruned["mode"]
    for name, elapsed, cpu, best in (("unpruned", unpruned_time, unpruned_cpu, unpruned),
                                     ("pruned", pruned_time, pruned_cpu, pruned)):
        print(f"{name:>8}: best {monitor} {best['value']:.4f} (trial {best['trial']}) in {elapsed:.1f} s "
              f"({cpu:.1f} s CPU); trials {best['trials']}")
    time_ratio = pruned_time / unpruned_time
    best_ratio = unpruned["value"] / pruned["value"] if mode == "max" else pruned["value"] / unpruned["value"]
    print(f"CPU time ratio (cross-check): {pruned_cpu / unpruned_cpu:.3f}")
    print(f"RATIO sweep_pruned_walltime_vs_unpruned {time_ratio:.3f} <= {WALLTIME_BOUND:.2f}")
    print(f"RATIO sweep_pruned_best_vs_unpruned {best_ratio:.4f} <= {BEST_BOUND:.2f}")
    return 0 if time_ratio <= WALLTIME_BOUND and best_ratio <= BEST_BOUND else 1


if __name__ == "__main__":
    sys.exit(main())
