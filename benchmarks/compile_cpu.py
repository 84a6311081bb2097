"""``torch.compile`` on the CPU: the GPT experiment's steps/s with and without ``model.compile=true``.

``experiment=gpt_adamw_cosine`` at a size that trains on two cores (2 layers, 4 heads,
width 128, context 64, batch 16), run by lit_train as a user runs it (default callbacks,
CSV logger, progress bar; validation and checkpoint save off), once eager and once with
``model.compile=true``, alternating. The timed window opens after the first steps, which
hold the compilation; their seconds are printed too: the first round's is the cold
compile, later rounds' reuse Inductor's caches. Compiling is worth it when the steps saved
repay the compile time: the break-even step count is printed.

There is no bound: how much compiling gains on a CPU depends on the CPU and the model,
and this is a measurement to decide with, not a target.

Usage: ``python benchmarks/compile_cpu.py [--quick]``
"""

import os
import statistics
import tempfile

from _contenders import Workload, WindowTimer, lit_train
from _harness import QUICK_SCALE, alternate_rounds, command_line, markdown_table

SIZE = ("model.net.n_layer=2", "model.net.n_head=4", "model.net.n_embd=128", "data.block_size=64",
        "data.batch_size=16")
#: Steps per run, of which the first (timed apart) hold the compilation.
STEPS, WARMUP = 80, 10


def workload(compiled: bool, steps: int) -> Workload:
    return Workload(f"gpt_{'compiled' if compiled else 'eager'}",
                    ("experiment=gpt_adamw_cosine", *SIZE, f"model.compile={str(compiled).lower()}"),
                    steps, warmup=WARMUP)


def main(quick: bool = False) -> list[tuple[str, bool]]:
    """Prints the table; returns no RATIO results (see the module's docstring)."""
    steps = WARMUP + int((STEPS - WARMUP) * (QUICK_SCALE if quick else 1))
    # An empty Inductor cache, so that the first round's compile is cold even after earlier runs on this machine.
    os.environ["TORCHINDUCTOR_CACHE_DIR"] = tempfile.mkdtemp(prefix="lit_train_compile_bench_")
    warmups: dict[str, list[float]] = {"eager": [], "compiled": []}

    def contender(kind: str) -> float:
        seconds = lit_train(workload(kind == "compiled", steps))
        warmups[kind].append(WindowTimer.last.warmup_seconds)
        return seconds

    seconds = alternate_rounds({kind: lambda k=kind: contender(k) for kind in warmups},
                               repeats=2 if quick else 3, warmup=0)
    timed = steps - WARMUP
    rate = {kind: timed / statistics.median(values) for kind, values in seconds.items()}
    rows = [[kind, rate[kind], warmups[kind][0], statistics.median(warmups[kind][1:] or warmups[kind])]
            for kind in warmups]
    print(markdown_table(["model", "steps/s after warm-up", f"first {WARMUP} steps, s (cold)",
                          f"first {WARMUP} steps, s (cached)"], rows))
    gain = rate["compiled"] / rate["eager"]
    cost = warmups["compiled"][0] - warmups["eager"][0]
    saved = 1 / rate["eager"] - 1 / rate["compiled"]
    repaid = f"after {cost / saved:.0f} steps" if saved > 0 else "never: compiled steps are not faster"
    print(f"\ncompiled / eager steps/s: {gain:.3f}; cold compile costs {cost:.1f} s, repaid {repaid}\n")
    return []


if __name__ == "__main__":
    command_line(main, __doc__, "fewer steps and rounds")
