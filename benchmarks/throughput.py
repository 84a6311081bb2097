"""Training throughput of lit_train's default path against Lightning's floor, plain Lightning and a raw loop.

Every contender does the same optimizer steps with the same math on the same data (see
``_contenders``): AdamW with a per-step cosine schedule, loss and accuracy summed on the
device, validation off. lit_train runs as a user runs it, with its default callbacks, CSV
logger and progress bar; only the checkpoint save is left out, because it is a per-epoch
cost that the raw loop does not have. That cost, and the validation pass's, are measured
separately below on digits with default settings, in milliseconds per epoch and as a
share of the epoch.

Two data sets: digits (1259 training rows: 3 steps an epoch at batch 512, so per-epoch
costs weigh heavily) and 100,000 synthetic rows of the same shape (blobs: 70,000 training
rows, 137 steps an epoch at batch 512), the epoch length of a real data set.

The targets: lit_train within 5% of the Lightning floor (a minimal module on the same
tensor loader, with nothing else on: what any Trainer-based step costs at least), and at
least 1.6x plain Lightning as its docs write it. Contenders alternate within each round;
each ratio is the median of the per-round ratios, printed with the lowest and the highest
round.

Usage: ``python benchmarks/throughput.py [--quick]``; ``BENCH_ROUNDS=11`` measures 11 rounds instead of 5.
"""

import statistics
import time

from _contenders import (Workload, lightning_floor, lit_train, plain_lightning, plain_lightning_batched, raw,
                         raw_no_metrics)
from _harness import (ROUNDS, alternate, alternate_rounds, command_line, markdown_table, ratio_line, report,
                      speedup)

DIGITS = ("data=digits",)
#: 100,000 rows of 64 features in 10 classes, like digits but with a real data set's epoch length.
BLOBS_100K = ("data=blobs", "data.num_samples=100000", "data.num_features=64", "data.num_classes=10")
COMPUTE_BOUND = ("data=blobs", "data.num_samples=100000", "data.batch_size=512", "model.net.hidden=[1024,1024,1024,1024]")
#: Bounds: lit_train over the Lightning floor, and over plain Lightning.
FLOOR_BOUND, PLAIN_BOUND, COMPUTE_BOUND_RAW = 0.95, 1.6, 0.97
#: Column -> contender, in the table's order.
CONTENDERS = {
    "raw loop": raw,
    "Lightning floor": lightning_floor,
    "lit_train": lit_train,
    "lit_train, no callbacks or logger": lambda w: lit_train(
        Workload(w.name, w.overrides, w.steps, ("callbacks=none", "logger=none"))),
    "plain Lightning": plain_lightning,
    "plain Lightning, batched loader": plain_lightning_batched,
    "raw loop, no metrics (reference)": raw_no_metrics,
}


def _workloads(quick: bool) -> list[tuple[str, Workload]]:
    scale = 1 if quick else 2.5
    return [
        ("digits, batch 512", Workload("digits_bs512", (*DIGITS, "data.batch_size=512"), int(120 * scale))),
        ("digits, batch 64", Workload("digits_bs64", (*DIGITS, "data.batch_size=64"), int(240 * scale))),
        ("100k rows, batch 512", Workload("blobs100k_bs512", (*BLOBS_100K, "data.batch_size=512"), int(160 * scale))),
        ("100k rows, batch 64", Workload("blobs100k_bs64", (*BLOBS_100K, "data.batch_size=64"), int(320 * scale))),
    ]


def _throughput(quick: bool) -> tuple[list[list[object]], list[list[object]], list[tuple[str, bool]]]:
    rates, spreads, results = [], [], []
    for label, workload in _workloads(quick):
        runs = {name: lambda f=f, w=workload: f(w) for name, f in CONTENDERS.items()}
        seconds = alternate_rounds(runs, repeats=ROUNDS)
        rates.append([label, *(workload.steps / statistics.median(values) for values in seconds.values())])
        ratios = {other: speedup(seconds, "lit_train", other)
                  for other in ("Lightning floor", "plain Lightning", "plain Lightning, batched loader", "raw loop")}
        spreads.append([label, *(f"{r.median:.3f} ({r.low:.3f}-{r.high:.3f})" for r in ratios.values())])
        results.append(ratio_line(f"train_{workload.name}_vs_lightning_floor", ratios["Lightning floor"], ">=",
                                  FLOOR_BOUND))
        results.append(ratio_line(f"train_{workload.name}_vs_plain_lightning", ratios["plain Lightning"], ">=",
                                  PLAIN_BOUND))
    compute = Workload("compute_bound", COMPUTE_BOUND, 8 if quick else 30)
    seconds = alternate_rounds({"raw": lambda: raw(compute), "lit_train": lambda: lit_train(compute)}, repeats=ROUNDS)
    ratio = speedup(seconds, "lit_train", "raw")
    rates.append(["4 x 1024 MLP, 100k rows, batch 512", compute.steps / statistics.median(seconds["raw"]), "-",
                  compute.steps / statistics.median(seconds["lit_train"]), *["-"] * (len(CONTENDERS) - 3)])
    results.append(ratio_line("train_compute_bound_vs_raw", ratio, ">=", COMPUTE_BOUND_RAW))
    return rates, spreads, results


def _epoch_costs(quick: bool) -> list[list[object]]:
    """Per-epoch cost of the validation pass and of the checkpoint save, digits defaults (batch 64)."""
    epochs = 5 if quick else 10
    steps = 20 * epochs  # 1259 training samples in batches of 64
    variants = {
        "train only": Workload("epochs", (), steps, ("trainer.limit_val_batches=0", "++callbacks.model_checkpoint=null")),
        "+ validation": Workload("epochs", (), steps, ("++callbacks.model_checkpoint=null",)),
        "+ validation + checkpoint": Workload("epochs", (), steps),
    }
    seconds = alternate({name: lambda w=w: lit_train(w, validate=True) for name, w in variants.items()}, repeats=5)
    epoch = seconds["+ validation + checkpoint"] / epochs
    validation = (seconds["+ validation"] - seconds["train only"]) / epochs
    checkpoint = (seconds["+ validation + checkpoint"] - seconds["+ validation"]) / epochs
    return [["validation pass", validation * 1e3, validation / epoch],
            ["checkpoint save (best + last)", checkpoint * 1e3, checkpoint / epoch],
            ["whole epoch", epoch * 1e3, 1.0]]


def main(quick: bool = False) -> list[tuple[str, bool]]:
    started = time.perf_counter()
    rates, spreads, results = _throughput(quick)
    print(f"### Training throughput (optimizer steps/s, medians of {ROUNDS} alternating rounds; the same math for"
          " all)\n")
    print(markdown_table(["workload", *CONTENDERS], rates))
    print("\n### lit_train's speed over each contender (median of the per-round ratios, lowest-highest round)\n")
    print(markdown_table(["workload", "vs Lightning floor", "vs plain Lightning", "vs plain Lightning, batched loader",
                          "vs raw loop"], spreads))
    print("\n### Per-epoch costs the raw loop does not have (digits, batch 64, defaults)\n")
    print(markdown_table(["cost", "ms per epoch", "share of an epoch"], _epoch_costs(quick)))
    print(f"\n({time.perf_counter() - started:.0f} s)\n")
    return report(results)


if __name__ == "__main__":
    command_line(main, __doc__, "fewer steps per round")
