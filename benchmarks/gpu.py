"""Training throughput on one CUDA device: the GPT experiment at bf16-mixed, eager and compiled.

``experiment=gpt_adamw_cosine`` at GPT-2 small's size (12 layers, 12 heads, width 768,
context 256, batch 32) on 1M characters of text, ``trainer.precision=bf16-mixed``, with
and without ``model.compile=true``. lit_train runs as a user runs it (default callbacks,
CSV logger, progress bar; validation and checkpoint save off) against a raw PyTorch loop
doing the same math: the same network and init, the same batches in the same order moved
to the device per step, bf16 autocast around forward and loss, the loss summed on the
device and read every 50 steps as lit_train logs it, gradient clipping at 1.0, the same
AdamW (fused) over the same parameter groups and the same warmup-cosine schedule, and the
network compiled in place exactly when lit_train's is.

Printed per contender: tokens/s, model FLOPs utilization (6 x parameters + attention per
token, over the device's dense bf16 peak: a table of known devices, or ``--peak-tflops``),
peak GPU memory, and the first steps' seconds (which hold the compilation). The timed
window opens after those warm-up steps. ``RATIO gpu_gpt_bf16_<eager|compiled>_vs_raw``:
lit_train's tokens/s over the raw loop's (median of the per-round ratios), >= 0.97.

Without a CUDA device it prints one line and exits 0. ``--smoke`` runs the same code on
the CPU with a tiny model and a few steps, to check it still runs; it prints no RATIO.
One full run takes about three minutes on an H100, most of it compiling.

Usage: ``python benchmarks/gpu.py [--smoke] [--rounds N] [--peak-tflops TFLOPS]``
"""

import argparse
import functools
import statistics
import sys
import tempfile
from pathlib import Path

import torch
from _contenders import Workload, WindowTimer, lit_train, lit_train_config, training_split
from _harness import alternate_rounds, markdown_table, ratio_line, report, speedup
from hydra.utils import instantiate
from torch.nn import functional as F

from lit_train.data.text import DEFAULT_TEXT
from lit_train.modules.running_means import RunningMeans
from lit_train.training.run import build_optimization

#: Dense bf16 tensor-core peaks in TFLOPS, by a part of ``torch.cuda.get_device_name()``; the first match counts.
PEAK_BF16_TFLOPS = (
    ("H100 PCIe", 756.0), ("H100 NVL", 835.0), ("GH200", 989.0), ("H200", 989.0), ("H100", 989.0),
    ("B200", 2250.0), ("A100", 312.0), ("L40S", 362.0), ("L40", 181.0), ("L4", 121.0), ("A10G", 70.0),
    ("A10", 125.0), ("RTX 4090", 165.0),
)
BOUND = 0.97
SIZES = {
    "gpu": ("model.net.n_layer=12", "model.net.n_head=12", "model.net.n_embd=768", "data.block_size=256",
            "data.batch_size=32"),
    "smoke": ("model.net.n_layer=1", "model.net.n_head=2", "model.net.n_embd=32", "data.block_size=32",
              "data.batch_size=4"),
}
#: (steps in all, of which warm-up) per run.
STEPS = {"gpu": (150, 30), "smoke": (4, 2)}
#: lit_train logs the training loss every ``trainer.log_every_n_steps`` steps (50).
LOG_EVERY = 50


def peak_tflops(name: str) -> float | None:
    """The dense bf16 peak of the device called ``name``, if the table knows it."""
    return next((peak for part, peak in PEAK_BF16_TFLOPS if part in name), None)


@functools.cache
def _folder() -> tempfile.TemporaryDirectory:
    return tempfile.TemporaryDirectory(prefix="lit_train_gpu_bench_")  # removed when the process exits


@functools.cache
def text_file(characters: int = 1_000_000) -> str:
    """A text of ``characters`` characters (lit_train's shipped text, repeated): epochs as long as a real corpus's."""
    text = DEFAULT_TEXT.read_text(encoding="utf-8")
    path = Path(_folder().name) / "text.txt"
    path.write_text((text * (characters // len(text) + 1))[:characters], encoding="utf-8")
    return str(path)


def workload(size: str, compiled: bool) -> Workload:
    steps, warmup = STEPS[size]
    overrides = ("experiment=gpt_adamw_cosine", f"data.path={text_file()}", *SIZES[size],
                 "trainer.precision=bf16-mixed", f"model.compile={str(compiled).lower()}")
    return Workload(f"gpt_{'compiled' if compiled else 'eager'}", overrides, steps, warmup=warmup,
                    accelerator="gpu" if size == "gpu" else "cpu")


def raw_gpt(work: Workload) -> float:
    """The raw loop over lit_train's composed config, so that every setting is the one lit_train runs with."""
    with tempfile.TemporaryDirectory() as root:
        cfg = lit_train_config(work, root)
    device = torch.device("cuda" if work.accelerator == "gpu" else "cpu")
    x, y = training_split(work.overrides)
    torch.manual_seed(cfg.seed)
    net = instantiate(cfg.model.net, _convert_="all").to(device)
    if cfg.model.compile:
        net.compile(mode=cfg.model.compile_mode, dynamic=cfg.model.compile_dynamic)
    # The kernel lit_train picks: not fused where Lightning's mixed precision clips the gradients.
    clipped_amp = str(cfg.trainer.precision).endswith("-mixed") and bool(cfg.trainer.gradient_clip_val)
    optimizer, scheduler = build_optimization(cfg).build(net, work.steps, fused=not clipped_amp)
    size, clip = cfg.data.batch_size, cfg.trainer.gradient_clip_val
    window, generator, timer = RunningMeans(("loss",)), torch.Generator().manual_seed(0), WindowTimer(work.warmup)
    timer.begin_loop()
    while timer.step < work.steps:
        order = torch.randperm(len(x), generator=generator)
        for start in range(0, len(x) - size + 1, size):
            timer.before_step()
            batch = order[start : start + size]
            inputs, targets = x[batch].to(device), y[batch].to(device)
            with torch.autocast(device.type, dtype=torch.bfloat16):
                loss = F.cross_entropy(net(inputs).flatten(0, 1), targets.flatten())
            window.update([loss], targets.numel())
            if timer.step % LOG_EVERY == 0:
                window.compute()["loss"].item()
                window.reset()
            loss.backward()
            torch.nn.utils.clip_grad_norm_(net.parameters(), clip)
            optimizer.step()
            scheduler.step()
            optimizer.zero_grad(set_to_none=True)
            if timer.step == work.steps:
                break
    return timer.end_loop()


def model_numbers(work: Workload) -> tuple[int, float]:
    """Tokens per step, and FLOPs per token: 6 x the parameters (position embeddings aside) plus the
    attention's 12 x layers x width x context."""
    with tempfile.TemporaryDirectory() as root:
        cfg = lit_train_config(work, root)
    net = instantiate(cfg.model.net, _convert_="all")
    params = sum(p.numel() for p in net.parameters()) - net.pos_emb.weight.numel()
    layers, width, context = cfg.model.net.n_layer, cfg.model.net.n_embd, cfg.data.block_size
    return cfg.data.batch_size * context, 6 * params + 12 * layers * width * context


def _measured(contender, work: Workload, memory: dict[str, list[float]], warmups: dict[str, list[float]],
              name: str) -> float:
    if torch.cuda.is_available():
        torch.cuda.reset_peak_memory_stats()
    seconds = contender(work)
    memory[name].append(torch.cuda.max_memory_allocated() / 2**30 if torch.cuda.is_available() else 0.0)
    warmups[name].append(WindowTimer.last.warmup_seconds)
    return seconds


def run(size: str, rounds: int, peak: float | None) -> list[tuple[str, bool]]:
    contenders = {}
    for compiled in (False, True):
        work = workload(size, compiled)
        contenders[f"raw, {work.name}"] = (raw_gpt, work)
        contenders[f"lit_train, {work.name}"] = (lit_train, work)
    memory = {name: [] for name in contenders}
    warmups = {name: [] for name in contenders}
    seconds = alternate_rounds({name: lambda f=f, w=w, n=name: _measured(f, w, memory, warmups, n)
                                for name, (f, w) in contenders.items()}, repeats=rounds, warmup=0)
    work = workload(size, False)
    tokens_per_step, flops = model_numbers(work)
    tokens = (work.steps - work.warmup) * tokens_per_step
    rows = []
    for name in contenders:
        rate = tokens / statistics.median(seconds[name])
        mfu = f"{rate * flops / (peak * 1e12):.1%}" if peak else "-"
        rows.append([name, rate, mfu, statistics.median(memory[name]), statistics.median(warmups[name])])
    print(markdown_table(["contender", "tokens/s", "MFU", "peak GiB", f"first {work.warmup} steps, s"], rows))
    print(f"\n{flops / 1e6:.1f} MFLOPs per token; peak {peak or 'unknown'} TFLOPS; medians of {rounds} rounds\n")
    if size == "smoke":
        return []
    return report([ratio_line(f"gpu_gpt_bf16_{kind}_vs_raw", speedup(seconds, f"lit_train, gpt_{kind}", f"raw, gpt_{kind}"),
                              ">=", BOUND) for kind in ("eager", "compiled")])


def main(quick: bool = False, smoke: bool = False, rounds: int | None = None,
         peak: float | None = None) -> list[tuple[str, bool]]:
    """Runs on the CUDA device if there is one (``smoke``: on the CPU, tiny); returns the RATIO results."""
    if smoke:
        return run("smoke", rounds or 1, peak)
    if not torch.cuda.is_available():
        print("gpu: no CUDA device here; skipped (benchmarks/gpu.py runs on a machine with one)")
        return []
    name = torch.cuda.get_device_name()
    peak = peak or peak_tflops(name)
    print(f"{name}, torch {torch.__version__}\n")
    return run("gpu", rounds or (2 if quick else 3), peak)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--smoke", action="store_true", help="run the code path on the CPU, tiny and fast")
    parser.add_argument("--rounds", type=int, help="alternating rounds (default 3)")
    parser.add_argument("--peak-tflops", type=float, help="the device's dense bf16 peak, if the table lacks it")
    args = parser.parse_args()
    results = main(smoke=args.smoke, rounds=args.rounds, peak=args.peak_tflops)
    sys.exit(0 if all(met for _, met in results) else 1)
