"""Side-by-side timing: contenders alternate round by round, and only medians count.

The machine is shared and noisy. Running every contender once per round, in
turn, spreads any slow spell over all of them; the median of the rounds then
ignores the outliers.
"""

import argparse
import gc
import os
import statistics
import sys
from collections.abc import Callable
from dataclasses import dataclass

import torch

#: torch threads for every benchmark (``BENCH_THREADS``, default 1). On a shared two-core
#: machine a two-thread kernel stalls whenever a neighbour holds the other core, which
#: makes step times an order of magnitude noisier without saying anything about the code.
THREADS = int(os.environ.get("BENCH_THREADS", "1"))
torch.set_num_threads(THREADS)

#: Measured rounds of the throughput comparisons (``BENCH_ROUNDS``, default 5): more rounds, steadier medians
#: on a machine whose neighbours make identical runs differ.
ROUNDS = int(os.environ.get("BENCH_ROUNDS", "5"))

#: ``BENCH=quick`` settings are the full ones scaled down by this factor where a script allows it.
QUICK_SCALE = 0.25


def alternate_rounds(contenders: dict[str, Callable[[], float]], repeats: int,
                     warmup: int = 1) -> dict[str, list[float]]:
    """Runs each contender ``warmup + repeats`` times, alternating in a rotating order; returns each round's value.

    The garbage of one contender is collected before the next starts, so that no contender
    pays for another's in its timed window.

    Args:
        contenders: Name -> callable returning one measurement (seconds, or any number).
        repeats: Measured rounds (at least 5 for a target to count).
        warmup: Rounds run first and thrown away (imports, allocator, caches).
    """
    results: dict[str, list[float]] = {name: [] for name in contenders}
    names = list(contenders)
    for round_ in range(warmup + repeats):
        # Each round starts with the next contender, so that none always runs right after the same one.
        shift = round_ % len(names)
        for name in names[shift:] + names[:shift]:
            gc.collect()
            value = contenders[name]()
            if round_ >= warmup:
                results[name].append(value)
    return results


def alternate(contenders: dict[str, Callable[[], float]], repeats: int, warmup: int = 1) -> dict[str, float]:
    """The median of each contender's rounds (see :func:`alternate_rounds`)."""
    return {name: statistics.median(values) for name, values in alternate_rounds(contenders, repeats, warmup).items()}


@dataclass(frozen=True)
class Spread:
    """A ratio measured round by round: its median, and the lowest and highest round."""

    median: float
    low: float
    high: float

    @classmethod
    def of(cls, ratios: list[float]) -> "Spread":
        return cls(statistics.median(ratios), min(ratios), max(ratios))


def speedup(seconds: dict[str, list[float]], faster: str, slower: str) -> Spread:
    """How many times faster ``faster`` ran than ``slower``, per round (rounds pair up: they ran side by side)."""
    return Spread.of([s / f for f, s in zip(seconds[faster], seconds[slower])])


def ratio_line(name: str, value: float | Spread, op: str, target: float) -> tuple[str, bool]:
    """The machine-readable ``RATIO <name> <value> <op> <target>`` line, and whether it holds.

    A :class:`Spread` is judged by its median, and the line ends with its range over the rounds.
    """
    median = value.median if isinstance(value, Spread) else value
    met = median >= target if op == ">=" else median <= target
    line = f"RATIO {name} {median:.3f} {op} {target}"
    if isinstance(value, Spread):
        line += f"   (rounds: min {value.low:.3f}, max {value.high:.3f})"
    return line, met


def markdown_table(header: list[str], rows: list[list[object]]) -> str:
    """A GitHub markdown table; floats get 4 significant digits."""
    def cell(value: object) -> str:
        return f"{value:.4g}" if isinstance(value, float) else str(value)

    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(cell(v) for v in row) + " |" for row in rows]
    return "\n".join(lines)


def report(results: list[tuple[str, bool]]) -> list[tuple[str, bool]]:
    """Prints the RATIO lines of ``results`` and returns them."""
    for line, _ in results:
        print(line)
    return results


def command_line(main: Callable[[bool], list[tuple[str, bool]]], doc: str, quick_help: str) -> None:
    """A benchmark script's command line: ``--quick``; exits 1 if a target is missed."""
    parser = argparse.ArgumentParser(description=doc.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help=quick_help)
    sys.exit(0 if all(met for _, met in main(parser.parse_args().quick)) else 1)
