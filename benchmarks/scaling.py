"""Does lit_train's per-step overhead fade as the work per step grows? Steps/s and peak memory vs batch and width.

Two contenders from ``_contenders`` train the same MLP (AdamW, per-step cosine schedule,
validation off) on a synthetic classification set built here (65536 x 64 standard normal
features, 10 uniform random labels: :class:`SyntheticClassification`, a lit_train
``TensorDataModule`` that both contenders load through ``data._target_``):

* ``raw``: the hand-written PyTorch loop;
* ``lit_train``: ``lit_train.training.run.run`` on the composed config, with the default callbacks,
  logger and progress bar (checkpointing and testing off).

Two sweeps: the batch size (64, 256, 1024, 4096) with hidden layers [256, 256], and the
width ``w`` of hidden layers [w, w] (256, 1024, 4096) at batch 512. Every measurement runs
in a fresh process forked from this one after the imports (torch, Lightning, Hydra,
lit_train), so each contender starts from the same state and its peak memory is its own:
``peak MB`` is the growth of the child's peak RSS (``ru_maxrss``) over the run, data
set-up included (a forked child's peak starts at its RSS at the fork). steps/s is the number of
optimizer steps over the seconds of the training loop (``_contenders``' timers: set-up
excluded). The contenders alternate round by round and each number is a median. torch
runs on ``_harness.THREADS`` threads (``BENCH_THREADS``, default 1).

How to read it: ``lit/raw`` is lit_train's steps/s over the raw loop's. lit_train adds a
roughly fixed cost per step (Lightning's loop and hooks, the callbacks, logging), so the
ratio is lowest for the smallest steps and approaches 1 as the compute per step grows
(points with few steps also carry lit_train's ~10 ms of per-run hooks inside the timed loop);
``RATIO scaling_ratio_at_largest_compute`` (full mode) is the ratio at the widest network,
where the full mode also measures lit_train without its gradient monitor. Plots go to
``benchmarks/scaling.png``: absolute steps/s and the ratio, vs batch and vs width.
Quick mode measures two points (the smallest step, and width 1024) and prints no RATIO.

Where the remaining per-step overhead goes (cProfile of lit_train at batch 64, width 256,
printed by the full mode; A/B runs with one callback switched off):

* At batch 64 lit_train adds about 1-2 ms to a raw step of 1-2 ms. Most of it is Python in
  Lightning's per-step machinery: hook dispatch to the module and every callback (each in a
  profiler context), the automatic-optimization closure and ``optimizer_step``/``zero_grad``
  wrappers, ``batch_to_device`` and the result bookkeeping behind ``self.log``; then the task
  module's per-step accuracy and running means. The LR monitor, the progress bar and the
  scheduler step are small. None of this depends on the batch or the width.
* What does not fade with compute is the gradient monitor's check on every step: an inf-norm
  of every gradient (``torch._foreach_norm(grads, inf)``), which on CPU is about 13x slower
  than an L2 norm or ``torch.aminmax`` over the same tensors: 44 ms vs 3 ms for the 17M
  parameters of width 4096, about 6% of that step. Without the monitor lit_train runs the
  widest network as fast as the raw loop (729 vs 729 ms per step here).

Usage: ``python benchmarks/scaling.py [--quick]``
"""

import contextlib
import json
import os
import resource
import statistics
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import torch

from lit_train.data.tensor_datamodule import TensorDataModule

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from _harness import THREADS, alternate, command_line, markdown_table, ratio_line, report

PLOT = HERE / "scaling.png"
NUM_SAMPLES, NUM_FEATURES, NUM_CLASSES = 65536, 64, 10
RATIO_BOUND = 0.95
#: (sweep, batch, width, optimizer steps): each run trains for about a second or more in full mode, so that
#: lit_train's fixed cost inside the timed loop (about 10 ms: epoch start and end hooks) weighs little.
FULL_POINTS = [
    ("batch", 64, 256, 400), ("batch", 256, 256, 160), ("batch", 1024, 256, 80), ("batch", 4096, 256, 30),
    ("width", 512, 256, 100), ("width", 512, 1024, 24), ("width", 512, 4096, 5),
]
#: The smallest and a large step only: each child costs about half a second of set-up besides its steps.
QUICK_POINTS = [("batch", 64, 256, 100), ("width", 512, 1024, 20)]
REPEATS = 5
#: (batch, width, optimizer steps) of the profiled run.
PROFILE_POINT = (64, 256, 300)


class SyntheticClassification(TensorDataModule):
    """Standard normal features with uniform random labels, as many as asked for.

    Args:
        num_samples: Rows of the data set.
        num_features: Features per row.
        num_classes: Labels are drawn from ``range(num_classes)``.
        **kwargs: Batch size, split fractions and seed, see :class:`TensorDataModule`.
    """

    def __init__(self, num_samples: int = NUM_SAMPLES, num_features: int = NUM_FEATURES,
                 num_classes: int = NUM_CLASSES, **kwargs) -> None:
        super().__init__(**kwargs)
        self.num_samples, self.num_features, self.num_classes = num_samples, num_features, num_classes

    def make_tensors(self) -> tuple[torch.Tensor, torch.Tensor]:
        generator = torch.Generator().manual_seed(self.seed)
        x = torch.randn(self.num_samples, self.num_features, generator=generator)
        return x, torch.randint(0, self.num_classes, (self.num_samples,), generator=generator)


def overrides(batch: int, width: int) -> tuple[str, ...]:
    """lit_train overrides for one point: the synthetic data (all of it for training) and the MLP's width."""
    return (
        # Hydra imports this file as `scaling` (this folder is on the path) in the child that trains.
        "data._target_=scaling.SyntheticClassification",
        f"+data.num_samples={NUM_SAMPLES}", "data.val_fraction=0", "data.test_fraction=0",
        f"data.batch_size={batch}", f"model.net.hidden=[{width},{width}]",
    )


# ------------------------------------------------------------------ one measurement, in a forked child


def _measure(request: dict) -> dict:
    """Runs one contender at one point in this (freshly forked) process; returns its seconds and peak growth."""
    import _contenders

    torch.set_num_threads(THREADS)
    workload = _contenders.Workload(request["contender"], overrides(request["batch"], request["width"]),
                                    request["steps"], tuple(request.get("lit_overrides", ())))
    contender = getattr(_contenders, request["contender"])
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    if request.get("profile"):
        import cProfile
        import io
        import pstats

        profiler = cProfile.Profile()
        seconds = profiler.runcall(contender, workload)
        text = io.StringIO()
        pstats.Stats(profiler, stream=text).sort_stats("tottime").print_stats(request["profile"])
        return {"seconds": seconds, "profile": text.getvalue()}
    seconds = contender(workload)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux
    return {"seconds": seconds, "peak_mb": (peak - before) / 1024}


def _in_child(**request) -> dict:
    """Runs :func:`_measure` in a forked child and returns its answer.

    A forked child starts with this process's imports already done, and its peak RSS
    starts at its RSS at the fork, so the growth it reports is its own run's.
    """
    sys.stdout.flush()
    sys.stderr.flush()
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:
        os.close(read_end)
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, 1)
        os.dup2(devnull, 2)  # lit_train's summary and progress bar, Lightning's messages
        try:
            answer = _measure(request)
        except BaseException as error:  # noqa: BLE001  (handed to the parent, which raises it)
            answer = {"error": f"{type(error).__name__}: {error}"}
        with os.fdopen(write_end, "w") as out:
            json.dump(answer, out)
        os._exit(0)
    os.close(write_end)
    with os.fdopen(read_end) as answer_file:
        answer = json.loads(answer_file.read() or '{"error": "the child died without an answer"}')
    os.waitpid(pid, 0)
    if "error" in answer:
        raise RuntimeError(f"{request}: {answer['error']}")
    return answer


@contextlib.contextmanager
def _compose_once() -> Iterator[Callable[[int, int], None]]:
    """Composes each point's config once, here, instead of three times in every raw child.

    Composing is set-up that no contender's timer sees; it only made the benchmark slower.
    """
    import _contenders

    import lit_train.training.run  # noqa: F401  (imported once here rather than in every lit_train child)

    compose, cache = _contenders.compose_config, {}

    def cached(overrides: list[str]):
        key = tuple(overrides)
        return cache[key] if key in cache else compose(overrides)

    def warm(batch: int, width: int) -> None:
        key = overrides(batch, width)
        if key not in cache:
            cache[key] = compose(list(key))

    _contenders.compose_config = cached
    try:
        yield warm
    finally:
        _contenders.compose_config = compose


# ------------------------------------------------------------------ the parent


#: Contender name -> the ``_contenders`` function and extra lit_train overrides.
CONTENDERS = {"raw": ("raw", ()), "lit_train": ("lit_train", ())}
#: Measured at the largest point of the full mode too: what is left without the gradient monitor.
NO_GRADIENT_MONITOR = {"lit_train without gradient_monitor": ("lit_train", ("callbacks.gradient_monitor=null",))}


def _point(batch: int, width: int, steps: int, repeats: int, contenders: dict) -> dict[str, float]:
    """Median steps/s of each contender (key: its name) and median peak MB (key: ``<name> MB``)."""
    memory: dict[str, list[float]] = {name: [] for name in contenders}

    def run(name: str) -> float:
        function, lit_overrides = contenders[name]
        answer = _in_child(contender=function, lit_overrides=lit_overrides, batch=batch, width=width, steps=steps)
        memory[name].append(answer["peak_mb"])
        return steps / answer["seconds"]

    rates = alternate({name: lambda name=name: run(name) for name in contenders}, repeats=repeats, warmup=0)
    return {**rates, **{f"{name} MB": statistics.median(values) for name, values in memory.items()}}


def _plot(rows: list[dict], quick: bool) -> None:
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot as plt

    (extra,) = NO_GRADIENT_MONITOR
    figure, axes = plt.subplots(2, 2, figsize=(10, 7), sharex="col")
    for column, (sweep, x_label) in enumerate([("batch", "batch size (hidden [256, 256])"),
                                               ("width", "hidden width w, layers [w, w] (batch 512)")]):
        points = [row for row in rows if row["sweep"] == sweep]
        xs = [row[sweep] for row in points]
        top, bottom = axes[0][column], axes[1][column]
        for contender, marker in (("raw", "o"), ("lit_train", "s")):
            top.plot(xs, [row[contender] for row in points], marker=marker, label=contender)
        top.set_xscale("log", base=2)
        top.set_yscale("log")
        top.set_ylabel("optimizer steps/s")
        top.legend()
        bottom.plot(xs, [row["lit_train"] / row["raw"] for row in points], marker="s", color="tab:green",
                    label="lit_train / raw")
        with_extra = [row for row in points if extra in row]
        if with_extra:
            bottom.plot([row[sweep] for row in with_extra], [row[extra] / row["raw"] for row in with_extra],
                        linestyle="none", marker="^", color="tab:red", label=f"{extra} / raw")
            bottom.legend(loc="lower right")
        bottom.axhline(1.0, color="gray", linestyle="--")
        bottom.set_ylim(0, 1.1)
        bottom.set_ylabel("steps/s, lit_train / raw")
        bottom.set_xlabel(x_label)
    figure.suptitle(f"lit_train vs a raw PyTorch loop, synthetic 65536 x 64, {THREADS} torch thread(s)"
                    + (" (quick mode: 2 points)" if quick else ""))
    figure.tight_layout()
    figure.savefig(PLOT, dpi=100)
    plt.close(figure)


def _profile() -> None:
    batch, width, steps = PROFILE_POINT
    answer = _in_child(contender="lit_train", batch=batch, width=width, steps=steps, profile=15)
    print(f"\ncProfile of lit_train at batch {batch}, width {width}, {steps} steps "
          f"(top functions by own time, whole run incl. set-up):")
    lines = answer["profile"].splitlines()
    start = next((i for i, line in enumerate(lines) if line.lstrip().startswith("ncalls")), 0)
    print("\n".join(line for line in lines[start:] if line.strip()))


def main(quick: bool) -> list[tuple[str, bool]]:
    """Measures every point, prints the table, writes the plot, returns the ``(line, met)`` pairs."""
    points = QUICK_POINTS if quick else FULL_POINTS
    rows = []
    with _compose_once() as warm:
        for index, (sweep, batch, width, steps) in enumerate(points):
            warm(batch, width)
            largest = not quick and index == len(points) - 1
            contenders = {**CONTENDERS, **(NO_GRADIENT_MONITOR if largest else {})}
            measured = _point(batch, width, steps, REPEATS, contenders)
            rows.append({"sweep": sweep, "batch": batch, "width": width, "steps": steps, **measured})
        if not quick:
            _profile()
    table = [[row["sweep"], row["batch"], row["width"], row["steps"], row["raw"], row["lit_train"],
              row["lit_train"] / row["raw"], row["raw MB"], row["lit_train MB"]] for row in rows]
    print(f"\nSteps/s and peak RSS growth, median of {REPEATS} alternating rounds, {THREADS} torch thread(s)")
    print(markdown_table(["sweep", "batch", "width", "steps", "raw steps/s", "lit_train steps/s", "lit/raw",
                          "raw peak MB", "lit_train peak MB"], table))
    _plot(rows, quick)
    print(f"plot: {PLOT}")
    last = rows[-1]
    where = f"batch {last['batch']}, width {last['width']}"
    if quick:
        print(f"lit/raw at the largest compute measured ({where}): {last['lit_train'] / last['raw']:.3f} "
              "(no RATIO line in quick mode: a smaller point)")
        return []
    for name in NO_GRADIENT_MONITOR:
        print(f"{name} at {where}: {last[name]:.4g} steps/s, {last[name] / last['raw']:.3f} of raw, "
              f"peak {last[name + ' MB']:.4g} MB")
    print(f"lit/raw at the largest compute measured ({where}), lit_train's default callbacks:")
    results = [ratio_line("scaling_ratio_at_largest_compute", last["lit_train"] / last["raw"], ">=", RATIO_BOUND)]
    return report(results)


if __name__ == "__main__":
    command_line(main, __doc__, "fewer points and steps (for BENCH=quick)")
