"""What lit_train's monitoring callbacks cost per training step, on the digits MLP at batch 64: a cross-check.

Each case runs lit_train's real training path (logger and progress bar as configured,
validation and checkpoint save off) with and without the callbacks under test, side by
side; the ratio is the step time with them over the step time without (medians of 9
alternating rounds, 5 with ``--quick``), with the lowest and highest round. 1.05 means
5% slower. Step times on a shared machine move by a few percent from run to run, as much
as the bounds, so the bounds are judged on ``overhead.py``'s per-hook timings
(``overhead_<monitor>_per_hook``); these totals only cross-check them and print no RATIO.

Usage: ``python benchmarks/monitors.py [--quick]``
"""

import statistics

from _contenders import Workload, lit_train
from _harness import alternate_rounds, command_line, markdown_table, speedup

CASES = [
    # (name, callbacks under test)
    ("default_callbacks", "callbacks=default"),
    ("gradient_monitor", "callbacks=gradient_monitor"),
    ("activation_monitor", "callbacks=activation_monitor"),
]


def main(quick: bool = False) -> list[tuple[str, bool]]:
    steps = 240 if quick else 800
    without = Workload("none", ("data.batch_size=64",), steps, ("callbacks=none",))
    contenders = {"none": lambda: lit_train(without)}
    for name, override in CASES:
        contenders[name] = lambda w=Workload(name, ("data.batch_size=64",), steps, (override,)): lit_train(w)
    seconds = alternate_rounds(contenders, repeats=5 if quick else 9)
    rows = []
    for name, override in CASES:
        ratio = speedup(seconds, "none", name)
        rows.append([override, statistics.median(seconds[name]) / steps * 1e3,
                     f"{ratio.median:.3f} ({ratio.low:.3f}-{ratio.high:.3f})"])
    rows.append(["callbacks=none", statistics.median(seconds["none"]) / steps * 1e3, "1"])
    print("### Monitor overhead, totals (digits MLP, batch 64)\n")
    print(markdown_table(["callbacks", "ms per step", "step time vs none (lowest-highest round)"], rows))
    print()
    return []


if __name__ == "__main__":
    command_line(main, __doc__, "fewer steps per round")
