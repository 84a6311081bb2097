"""Parallel Optuna trials that start warm: a sweep of 8 short trials with ``n_jobs=2`` against one cold run.

Commands through the real CLI, alternating round by round (:func:`_harness.alternate_rounds`):

* one cold run of the trial: ``python -m lit_train TRIAL`` (a few optimizer steps, no test stage);
* the sweep of 8 such trials (random sampler over the learning rate) with ``hydra.sweeper.n_jobs=2``,
  its trials forked from the sweeper's warm parent (the default);
* full mode only: the same sweep with ``hydra.sweeper.warm_start=false``, each trial a fresh
  ``python -m lit_train``.

Each time is the wall time from ``Popen`` to exit. A probe callback on the command line
(``+callbacks.first_step={_target_: sweep_startup.first_step}``, with this folder on ``PYTHONPATH``)
writes the time of each run's first training batch into its run directory. A trial's start-up is
from the moment the sweeper asked Optuna for it (the trial's ``datetime_start``) to that batch: the
job's config, the process start, the CLI's checks, the data, model and Trainer set-up, the sanity
check; the single cold run's is from ``Popen`` to that batch. Start-ups are medians over every
trial (or run) of every round. The first two trials of a warm sweep wait for the warm parent's
imports, as cold trials would: they are counted apart from the six that follow.

The targets: the warm sweep takes at most twice the single cold run, and a warm trial that does
not wait for the parent's imports reaches its first training batch within a second of being
asked for::

    RATIO sweep_8_trials_2_jobs_vs_one_cold_run <warm sweep / single run> <= 2.0
    RATIO trial_startup_warm_seconds <median seconds from ask to first batch, trials 2 to 7> <= 1.0

On a shared two-core machine the commands compete with whatever else runs, so the single run, the
sweeps and the start-ups are medians; quick mode runs one round (about 30 s), full mode three (about
four minutes).

Usage: ``python benchmarks/sweep_startup.py [--quick]``
"""

import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
#: One trial: a few optimizer steps of the digits MLP, no test stage, no progress bar.
TRIAL = ["trainer.accelerator=cpu", "trainer.devices=1", "trainer.max_epochs=3", "trainer.limit_train_batches=2",
         "trainer.limit_val_batches=1", "test=false", "callbacks.progress_bar=null"]
N_JOBS = 2
SWEEP = ["-m", "hydra/sweeper=lit_optuna", "hydra/sweeper/sampler=random", "hydra.sweeper.sampler.seed=0",
         "optimizer.lr=tag(log,interval(1e-3,1e-1))", "hydra.sweeper.n_trials=8", f"hydra.sweeper.n_jobs={N_JOBS}"]
PROBE = "+callbacks.first_step={_target_: sweep_startup.first_step}"
#: Where the probe writes the time of the first training batch, in each job directory.
FIRST_STEP_FILE = "first_step.txt"
SWEEP_BOUND, STARTUP_BOUND = 2.0, 1.0
ROUNDS = {True: 1, False: 3}


def first_step():
    """The probe callback (a factory, so that importing this module does not import Lightning)."""
    from lightning.pytorch.callbacks import Callback

    class FirstStep(Callback):
        """Writes the wall-clock time of the first training batch to the run directory."""

        def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
            path = Path(trainer.default_root_dir) / FIRST_STEP_FILE
            if not path.exists():
                path.write_text(repr(time.time()))

    return FirstStep()


def _timed(args: list[str], folder: Path) -> tuple[float, float]:
    """Runs ``python -m lit_train ARGS`` in ``folder``; returns when it started and the seconds it took.

    Exits on a failed command.
    """
    folder.mkdir(parents=True)
    path = os.pathsep.join(filter(None, [str(HERE), os.environ.get("PYTHONPATH")]))
    env = {**os.environ, "PYTHONPATH": path, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1",
           "PYTHONWARNINGS": "ignore"}
    started, clock = time.time(), time.perf_counter()
    done = subprocess.run([sys.executable, "-m", "lit_train", *args, PROBE], cwd=folder, env=env,
                          capture_output=True, text=True, check=False)
    elapsed = time.perf_counter() - clock
    if done.returncode != 0:
        sys.exit(f"{' '.join(args)} failed (exit code {done.returncode}):\n{done.stderr[-3000:]}")
    return started, elapsed


def _first_step(run_dir: Path) -> float:
    return float((run_dir / FIRST_STEP_FILE).read_text())


def _trial_startups(sweep_dir: Path) -> tuple[list[float], list[float]]:
    """Seconds from each trial's ask to its first training batch: the first ``n_jobs`` trials', the others'."""
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    trials = optuna.load_study(study_name="lit_train", storage=f"sqlite:///{sweep_dir / 'optuna.db'}").trials
    seconds = [_first_step(sweep_dir / str(t.number)) - t.datetime_start.timestamp() for t in trials]
    return seconds[:N_JOBS], seconds[N_JOBS:]


def main(quick: bool) -> list[tuple[str, bool]]:
    """Runs the rounds, prints the tables and the RATIO lines, returns ``(line, met)`` pairs."""
    from _harness import Spread, alternate_rounds, markdown_table, ratio_line, report

    runs = iter(range(10**6))
    startups: dict[str, list[float]] = {name: [] for name in (
        "single cold run", "sweep, warm trials 0-1", "sweep, warm trials 2-7", "sweep, cold trials 0-1",
        "sweep, cold trials 2-7")}
    with tempfile.TemporaryDirectory() as scratch:
        root = Path(scratch)

        def single() -> float:
            run_dir = root / f"single-{next(runs)}" / "run"
            started, elapsed = _timed([*TRIAL, f"hydra.run.dir={run_dir}"], run_dir.parent)
            startups["single cold run"].append(_first_step(run_dir) - started)
            return elapsed

        def sweep(kind: str) -> float:
            sweep_dir = root / f"sweep-{next(runs)}" / "sweep"
            _, elapsed = _timed([*SWEEP, *TRIAL, f"hydra.sweeper.warm_start={kind == 'warm'}",
                                 f"hydra.sweep.dir={sweep_dir}"], sweep_dir.parent)
            first, others = _trial_startups(sweep_dir)
            startups[f"sweep, {kind} trials 0-1"] += first
            startups[f"sweep, {kind} trials 2-7"] += others
            return elapsed

        contenders = {"single cold run": single, "sweep, warm trials": lambda: sweep("warm")}
        if not quick:
            contenders["sweep, cold trials"] = lambda: sweep("cold")
        seconds = alternate_rounds(contenders, repeats=ROUNDS[quick], warmup=0)
    single_run = statistics.median(seconds["single cold run"])
    print(f"Wall time, median of {ROUNDS[quick]} round(s); each sweep runs 8 trials with n_jobs=2")
    print(markdown_table(["command", "median s", "vs single cold run"],
                         [[name, statistics.median(values), statistics.median(values) / single_run]
                          for name, values in seconds.items()]))
    print("\nStart-up to the first training batch (a sweep's trials: from the sweeper's ask; the single run: "
          "from Popen)")
    print(markdown_table(["runs", "count", "median s", "min s", "max s"],
                         [[name, len(values), statistics.median(values), min(values), max(values)]
                          for name, values in startups.items() if values]))
    ratios = Spread.of([s / one for s, one in zip(seconds["sweep, warm trials"], seconds["single cold run"])])
    return report([ratio_line("sweep_8_trials_2_jobs_vs_one_cold_run", ratios, "<=", SWEEP_BOUND),
                   ratio_line("trial_startup_warm_seconds", Spread.of(startups["sweep, warm trials 2-7"]), "<=",
                              STARTUP_BOUND)])


if __name__ == "__main__":
    sys.path.insert(0, str(HERE))
    from _harness import command_line

    command_line(main, __doc__, "one round, without the sweep of cold trials")
