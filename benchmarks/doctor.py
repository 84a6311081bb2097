"""How long ``python -m lit_train action=doctor`` takes on the default digits job, start-up included.

Each run is a fresh subprocess, timed from ``Popen`` to exit: Python and torch start-up,
config checks, the data and model, every check of the doctor (data, init, gradients, the
one-batch overfit, the LR range test), ``doctor.json`` and ``doctor.png``. Each run writes
into its own temporary directory. The time is the median of the runs (3, or 1 in quick
mode), with torch on ``_harness.THREADS`` threads (``OMP_NUM_THREADS``).

How to read it: ``doctor_wall_vs_30s`` is the median wall time over 30 s (<= 1.0: the
doctor must answer within half a minute on two CPU cores).

Usage: ``python benchmarks/doctor.py [--quick]``
"""

import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from _harness import THREADS, markdown_table, ratio_line, report  # noqa: E402

BOUND_S = 30.0
RUNS = {True: 1, False: 3}
COMMAND = [sys.executable, "-m", "lit_train", "action=doctor"]


def _once(root: str) -> float:
    run_dir = Path(root) / f"run{time.perf_counter_ns()}"
    env = {**os.environ, "OMP_NUM_THREADS": str(THREADS), "PYTHONWARNINGS": "ignore"}
    started = time.perf_counter()
    result = subprocess.run([*COMMAND, f"hydra.run.dir={run_dir}"], cwd=root, env=env, capture_output=True, text=True)
    elapsed = time.perf_counter() - started
    if result.returncode != 0 or not (run_dir / "doctor.json").is_file():
        raise RuntimeError(f"action=doctor failed (exit {result.returncode}):\n{result.stderr[-2000:]}")
    return elapsed


def main(quick: bool) -> list[tuple[str, bool]]:
    """Times the command, prints the table and the RATIO line, returns ``(line, met)`` pairs."""
    with tempfile.TemporaryDirectory() as root:
        times = [_once(root) for _ in range(RUNS[quick])]
    median = statistics.median(times)
    print(f"python -m lit_train action=doctor (default digits job), {len(times)} run(s), {THREADS} torch thread(s)")
    print(markdown_table(["command", "median s", "runs s"], [
        ["action=doctor", median, ", ".join(f"{t:.1f}" for t in times)]]))
    return report([ratio_line("doctor_wall_vs_30s", median / BOUND_S, "<=", 1.0)])


if __name__ == "__main__":
    results = main("--quick" in sys.argv[1:])
    sys.exit(0 if all(met for _, met in results) else 1)
