"""What lit_train's monitoring callbacks cost per training step, on the digits MLP at batch 64.

Each case runs lit_train's real training path (logger and progress bar as configured,
validation and checkpoint save off) with and without the callbacks under test, side by
side; the ratio is the step time with them over the step time without (medians of 9
alternating rounds, 5 with ``--quick``). 1.05 means 5% slower. Step times on a shared
machine move by a few percent from run to run; ``overhead.py`` times each callback's
hooks directly, which does not depend on the difference of two noisy totals.

Usage: ``python benchmarks/monitors.py [--quick]``
"""


from _contenders import Workload, lit_train
from _harness import alternate, command_line, markdown_table, ratio_line, report

CASES = [
    # (name, callbacks under test, bound on the step-time ratio)
    ("default_callbacks", "callbacks=default", 1.05),
    ("gradient_monitor", "callbacks=gradient_monitor", 1.03),
    ("activation_monitor", "callbacks=activation_monitor", 1.02),
]


def main(quick: bool = False) -> list[tuple[str, bool]]:
    steps = 240 if quick else 800
    without = Workload("none", ("data.batch_size=64",), steps, ("callbacks=none",))
    contenders = {"none": lambda: lit_train(without)}
    for name, override, _ in CASES:
        contenders[name] = lambda w=Workload(name, ("data.batch_size=64",), steps, (override,)): lit_train(w)
    # Bounds of 2-5% on a machine whose timings move by about 5%: more rounds for the full run.
    seconds = alternate(contenders, repeats=5 if quick else 9)
    rows, results = [], []
    for name, override, bound in CASES:
        ratio = seconds[name] / seconds["none"]
        rows.append([override, seconds[name] / steps * 1e3, ratio])
        results.append(ratio_line(f"overhead_{name}_vs_no_callbacks", ratio, "<=", bound))
    rows.append(["callbacks=none", seconds["none"] / steps * 1e3, 1.0])
    print("### Monitor overhead (digits MLP, batch 64)\n")
    print(markdown_table(["callbacks", "ms per step", "step time vs none"], rows))
    print()
    return report(results)


if __name__ == "__main__":
    command_line(main, __doc__, "fewer steps per round")
