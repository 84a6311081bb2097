"""Runs every benchmark and writes ``benchmarks/RESULTS.md``: ``make bench`` (full) or ``BENCH=quick make bench``.

Each benchmark prints its tables and one ``RATIO <name> <value> <op> <target>`` line
per target; this runner collects them, prints the RATIO lines again at the end, and
exits 1 if any target was missed. The full run adds the Optuna pruning sweep
(about two minutes); the quick one takes about ten minutes on two cores.
"""

import contextlib
import importlib
import io
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

import torch

HERE = Path(__file__).resolve().parent
SCRIPTS = ["throughput", "overhead", "monitors", "lr_finder", "cli_startup", "sweep_startup", "doctor", "scaling",
           "compile_cpu", "gpu"]


class _Tee(io.TextIOBase):
    def __init__(self, *streams: io.TextIOBase) -> None:
        self.streams = streams

    def write(self, text: str) -> int:
        for stream in self.streams:
            stream.write(text)
        return len(text)

    def flush(self) -> None:
        for stream in self.streams:
            stream.flush()


def _sweep_pruning() -> list[tuple[str, bool]]:
    """The pruning benchmark runs its sweeps as subprocesses; its RATIO lines come from its output."""
    result = subprocess.run([sys.executable, str(HERE / "sweep_pruning.py")], capture_output=True, text=True)
    print(result.stdout)
    lines = [line for line in result.stdout.splitlines() if line.startswith("RATIO ")]
    return [(line, _holds(line)) for line in lines] or [("RATIO sweep_pruning_failed 0 >= 1", False)]


def _holds(line: str) -> bool:
    _, _, value, op, target = line.split()[:5]  # a spread over the rounds may follow
    return float(value) >= float(target) if op == ">=" else float(value) <= float(target)


def main() -> int:
    quick = os.environ.get("BENCH", "full") == "quick"
    sys.path.insert(0, str(HERE))
    buffer = io.StringIO()
    results: list[tuple[str, bool]] = []
    started = time.perf_counter()
    with contextlib.redirect_stdout(_Tee(sys.stdout, buffer)):
        print(f"# Benchmarks ({'quick' if quick else 'full'})\n")
        threads = importlib.import_module("_harness").THREADS  # what every benchmark runs with
        print(f"{platform.node()}: {os.cpu_count()} CPUs, torch {torch.__version__}, "
              f"{threads} torch thread(s), Python {platform.python_version()}\n")
        for name in SCRIPTS:
            print(f"## {name}\n")
            results += importlib.import_module(name).main(quick)
            print()
        if not quick:
            print("## sweep_pruning\n")
            results += _sweep_pruning()
        print(f"## All targets ({time.perf_counter() - started:.0f} s)\n")
        print("```")
        for line, met in results:
            print(f"{line}{'' if met else '   <-- MISSED'}")
        print("```")
    (HERE / "RESULTS.md").write_text(buffer.getvalue())
    return 0 if all(met for _, met in results) else 1


if __name__ == "__main__":
    sys.exit(main())
