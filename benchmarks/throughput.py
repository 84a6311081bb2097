"""Training throughput of lit_train's default path against a raw PyTorch loop and plain Lightning.

Every contender does the same optimizer steps on the same data (see ``_contenders``):
AdamW with a per-step cosine schedule, validation off. lit_train runs as a user runs
it, with its default callbacks, CSV logger and progress bar; only the checkpoint save
is left out, because it is a per-epoch cost that the raw loop does not have. That cost,
and the validation pass's, are measured separately below on digits with default
settings, in milliseconds per epoch and as a share of the epoch.

The Lightning floor (a minimal module on the same tensor loader, with nothing else on)
is what any Trainer-based step costs at least: the ceiling for lit_train's ratio.

Contenders alternate within each round; the ratios are of medians over the rounds.

Usage: ``python benchmarks/throughput.py [--quick]``
"""

import time

from _contenders import Workload, lightning_floor, lit_train, plain_lightning, raw
from _harness import alternate, command_line, markdown_table, ratio_line, report

DIGITS_512 = ("data.batch_size=512",)
DIGITS_64 = ("data.batch_size=64",)
COMPUTE_BOUND = ("data=blobs", "data.num_samples=100000", "data.batch_size=512", "model.net.hidden=[1024,1024,1024,1024]")


def _throughput(quick: bool) -> tuple[list[list[object]], list[tuple[str, bool]]]:
    repeats = 5
    rows, results = [], []
    cases = [
        ("digits MLP, batch 512", Workload("digits_bs512", DIGITS_512, 120 if quick else 300), True),
        ("digits MLP, batch 64", Workload("digits_bs64", DIGITS_64, 240 if quick else 600), True),
        ("4 x 1024 MLP, batch 512", Workload("compute_bound", COMPUTE_BOUND, 8 if quick else 30), False),
    ]
    for label, workload, with_plain in cases:
        contenders = {"raw": lambda w=workload: raw(w), "lit_train": lambda w=workload: lit_train(w)}
        if with_plain:
            contenders["plain_lightning"] = lambda w=workload: plain_lightning(w)
            # Lightning's own loop with lit_train's module and data: what the callbacks and logger add to it.
            bare = Workload(workload.name, workload.overrides, workload.steps, ("callbacks=none", "logger=none"))
            contenders["lit_train_bare"] = lambda w=bare: lit_train(w)
            contenders["lightning_floor"] = lambda w=workload: lightning_floor(w)
        seconds = alternate(contenders, repeats=repeats)
        rate = {name: workload.steps / value for name, value in seconds.items()}
        rows.append([label, rate["raw"], rate["lit_train"], rate.get("lit_train_bare", "-"),
                     rate.get("lightning_floor", "-"), rate.get("plain_lightning", "-"), rate["lit_train"] / rate["raw"],
                     rate["lightning_floor"] / rate["raw"] if with_plain else "-"])
        target = {"digits_bs512": 0.80, "digits_bs64": 0.75, "compute_bound": 0.97}[workload.name]
        results.append(ratio_line(f"train_{workload.name}_vs_raw", rate["lit_train"] / rate["raw"], ">=", target))
        if with_plain:
            if workload.name == "digits_bs512":
                ratio = rate["lit_train"] / rate["plain_lightning"]
                results.append(ratio_line(f"train_{workload.name}_vs_plain_lightning", ratio, ">=", 2.5))
    return rows, results


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
    rows, results = _throughput(quick)
    print("### Training throughput (optimizer steps/s, medians of 5 alternating rounds)\n")
    print(markdown_table(["workload", "raw loop", "lit_train", "lit_train, no callbacks or logger", "Lightning floor",
                          "plain Lightning", "lit_train / raw", "Lightning floor / raw"], rows))
    print("\n### Per-epoch costs the raw loop does not have (digits, batch 64, defaults)\n")
    print(markdown_table(["cost", "ms per epoch", "share of an epoch"], _epoch_costs(quick)))
    print(f"\n({time.perf_counter() - started:.0f} s)\n")
    return report(results)


if __name__ == "__main__":
    command_line(main, __doc__, "fewer steps per round")
