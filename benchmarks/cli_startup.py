"""How long ``python -m lit_train`` takes before it does anything, and where a default run's start-up goes.

Part 1 times three commands that never train, each as a fresh subprocess, against
``python -c "import torch"`` (the floor of any command that trains with torch):

* ``--help`` (lists every config group and option),
* ``--cfg job`` (composes and prints the config),
* ``optimizer=adamm`` (a config error: it must fail, exit code 2, before importing torch).

The four commands alternate round by round (:func:`_harness.alternate`); each time is the
median wall time from ``Popen`` to exit. Every ratio must stay <= 1.0: printing help, a
config or a config error must cost less than importing torch.

Part 2 measures a default training run (``python -m lit_train trainer.max_steps=1 test=false``,
CSV logger, checkpointing, progress bar and sanity check as configured by default) from the
command to the start of its first training batch. The probe is a callback added from the
command line (``+callbacks.first_step={_target_: cli_startup.first_step}``, with this folder
on ``PYTHONPATH``): at ``on_train_batch_start`` it prints its time markers and ends the
process, as nothing after the first batch is measured. The breakdown comes from an
instrumented twin of the same command, ``python -c "import cli_startup; cli_startup._probe()"``
with the same arguments, which runs ``lit_train.launch.cli.main`` in-process and puts time markers
between the phases (after the CLI's imports, after the job's config validation, around
the torch and Lightning imports, the data and model ``instantiate`` calls, ``build_trainer``,
the data module's ``setup`` and the Lightning hooks up to the first batch). It adds no work
of its own beyond importing torch a moment before Lightning would, so its total matches
the plain command's; both run, alternating, and both totals are printed.

How to read part 2: each row is the wall time (median over the runs) from the previous
marker to this one; the first row starts at ``Popen``. Imports are most of it: torch, then
Lightning, which itself pulls in torchmetrics (with scipy and matplotlib) and
``torch._dynamo``; sklearn comes in with the digits. The sanity check is Lightning's two
validation batches before training (``trainer.num_sanity_val_steps``).

Quick mode (``--quick``) runs part 1 only, with 5 rounds and no warm-up round; part 2
(about ten runs of a training command) is full mode only.

Usage: ``python benchmarks/cli_startup.py [--quick]``
"""

import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
# `_harness` imports torch: it is imported inside the parent's functions only, because the probe
# process imports this module first thing and must not import torch before lit_train would.

BOUND = 1.0
REPEATS = {True: 5, False: 9}
#: Runs of each first-step command (full mode only).
FIRST_STEP_RUNS = 5
MARKER = "LIT_TRAIN_FIRST_STEP"

COMMANDS = {
    "python -c 'import torch'": ["-c", "import torch"],
    "python -m lit_train --help": ["-m", "lit_train", "--help"],
    "python -m lit_train --cfg job": ["-m", "lit_train", "--cfg", "job"],
    "python -m lit_train optimizer=adamm": ["-m", "lit_train", "optimizer=adamm"],
}
RATIO_NAMES = {
    "python -m lit_train --help": "cli_help_vs_import_torch",
    "python -m lit_train --cfg job": "cli_cfg_job_vs_import_torch",
    "python -m lit_train optimizer=adamm": "cli_bad_config_vs_import_torch",
}

# ------------------------------------------------------------------ markers (run inside the measured process)

_MARKS: list[tuple[str, float]] = []


def _mark(label: str) -> None:
    """Records that the phase ``label`` ended now (wall clock, comparable across processes)."""
    _MARKS.append((label, time.time()))


_CALLBACK_CLASS = None


def first_step(exit_at_first_batch: bool = True):
    """The probe callback (a factory, so that importing this module does not import Lightning).

    Args:
        exit_at_first_batch: Print the markers and end the process at the first training batch.
    """
    global _CALLBACK_CLASS
    if _CALLBACK_CLASS is None:
        from lightning.pytorch.callbacks import Callback

        class FirstStep(Callback):
            """Marks the Lightning hooks up to the first training batch, then reports them."""

            def __init__(self, exit_at_first_batch: bool) -> None:
                self.exit_at_first_batch = exit_at_first_batch
                self.done = False

            def on_fit_start(self, trainer, pl_module) -> None:
                _mark("Lightning: callbacks, module and strategy set-up, optimizers")

            def on_sanity_check_start(self, trainer, pl_module) -> None:
                _mark("Lightning: from on_fit_start to the sanity check")

            def on_sanity_check_end(self, trainer, pl_module) -> None:
                _mark("Lightning: sanity check (validation batches)")

            def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
                if self.done:
                    return
                self.done = True
                _mark("Lightning: train loader, on_train_start, to the first batch")
                # On a line of its own: the progress bar may have left its line open on stdout.
                print(f"\n{MARKER} {json.dumps(_MARKS)}", flush=True)
                if self.exit_at_first_batch:
                    # Nothing after the first batch is measured: skip the step, the save and the teardown.
                    sys.stderr.flush()
                    os._exit(0)

        _CALLBACK_CLASS = FirstStep
    return _CALLBACK_CLASS(exit_at_first_batch)


def _probe() -> None:
    """``python -m lit_train`` with time markers between its phases; run as a fresh process by the parent."""
    _mark("Python start-up")
    from lit_train.config import checks
    from lit_train.launch import cli

    _mark("imports: hydra, omegaconf, lit_train CLI")
    validate = checks.validate

    def marked_validate(cfg):
        problems = validate(cfg)
        _mark("config: compose, validate, Hydra job set-up")
        if not problems:
            import torch  # noqa: F401  (lit_train.training.run would import it first thing anyway)

            _mark("imports: torch")
            import lit_train.training.run as run_module

            _mark("imports: lightning, lit_callbacks, lit_train.training.run")
            _instrument(run_module, cfg)
        return problems

    checks.validate = marked_validate
    sys.argv = ["lit_train", *sys.argv[1:]]
    cli.main()


def _instrument(run_module, cfg) -> None:
    """Wraps what ``lit_train.training.run`` calls so that each phase of the run ends with a marker."""
    from lit_train.data.tensor_datamodule import TensorDataModule

    labels = {cfg.data.get("_target_"): "data module object, seeding", cfg.model.get("_target_"): "model build"}
    instantiate, build_trainer, setup = run_module.instantiate, run_module.build_trainer, TensorDataModule.setup

    def marked_instantiate(node, *args, **kwargs):
        made = instantiate(node, *args, **kwargs)
        label = labels.get(node.get("_target_")) if hasattr(node, "get") else None
        if label:
            _mark(label)
        return made

    def marked_build_trainer(*args, **kwargs):
        _mark("optimizer config, checkpoint check")
        trainer = build_trainer(*args, **kwargs)
        _mark("Trainer construction (logger, callbacks, Trainer)")
        return trainer

    def marked_setup(self, stage=None):
        if self.splits:
            return setup(self, stage)
        _mark("trainer.fit entry until the data module's setup")
        import sklearn.datasets  # noqa: F401  (what DigitsDataModule.make_tensors imports first)

        _mark("imports: sklearn")
        result = setup(self, stage)
        _mark("data: digits load + split")
        return result

    run_module.instantiate, run_module.build_trainer, TensorDataModule.setup = (
        marked_instantiate, marked_build_trainer, marked_setup)


# ------------------------------------------------------------------ the parent


def _env() -> dict[str, str]:
    """The environment of the first-step runs: this folder on the path, for the probe callback."""
    path = os.pathsep.join(filter(None, [str(HERE), os.environ.get("PYTHONPATH")]))
    return {**os.environ, "PYTHONPATH": path}


def _timed(name: str, cwd: str, codes: dict[str, set[int]]) -> float:
    """Seconds from ``Popen`` to exit of one command; its exit code goes into ``codes``."""
    started = time.perf_counter()
    done = subprocess.run([sys.executable, *COMMANDS[name]], cwd=cwd, stdout=subprocess.DEVNULL,
                          stderr=subprocess.DEVNULL, check=False)
    elapsed = time.perf_counter() - started
    codes.setdefault(name, set()).add(done.returncode)
    return elapsed


def _first_step_args(run_dir: str) -> list[str]:
    return ["trainer.max_steps=1", "test=false", f"hydra.run.dir={run_dir}",
            "+callbacks.first_step={_target_: cli_startup.first_step}"]


def _first_step(prefix: list[str], root: str) -> list[tuple[str, float]]:
    """Runs one command to its first batch; returns the markers, the first one being ``("start", Popen time)``."""
    run_dir = tempfile.mkdtemp(dir=root)
    started = time.time()
    done = subprocess.run([sys.executable, *prefix, *_first_step_args(run_dir)], cwd=root, env=_env(),
                          capture_output=True, text=True, check=False)
    lines = [line for line in done.stdout.split("\n") if line.startswith(MARKER)]
    if not lines:
        raise RuntimeError(f"the run ended (exit code {done.returncode}) before its first batch:\n{done.stderr[-2000:]}")
    return [("start", started), *(tuple(mark) for mark in json.loads(lines[-1].removeprefix(MARKER)))]


def _startup_table(quick: bool, root: str) -> list[tuple[str, bool]]:
    from _harness import alternate, markdown_table, ratio_line

    codes: dict[str, set[int]] = {}
    repeats = REPEATS[quick]
    # Quick mode skips the warm-up round: earlier benchmarks already warmed the file cache.
    medians = alternate({name: lambda name=name: _timed(name, root, codes) for name in COMMANDS},
                        repeats=repeats, warmup=0 if quick else 1)
    floor = medians["python -c 'import torch'"]
    rows = [[name, 1e3 * medians[name], medians[name] / floor, ",".join(map(str, sorted(codes[name])))]
            for name in COMMANDS]
    print(f"Commands that do not train, median wall time of {repeats} alternating rounds")
    print(markdown_table(["command", "median ms", "vs import torch", "exit code"], rows))
    results = [ratio_line(ratio, medians[name] / floor, "<=", BOUND) for name, ratio in RATIO_NAMES.items()]
    expected = {name: {2 if "adamm" in name else 0} for name in COMMANDS}
    for name in COMMANDS:
        if codes[name] != expected[name]:
            results.append((f"CHECK {name} exited with {sorted(codes[name])}, expected {sorted(expected[name])}", False))
    return results


def _phases(marks: list[tuple[str, float]]) -> dict[str, float]:
    """Seconds per phase: from the previous marker to the marker that ends it."""
    return {label: at - marks[i][1] for i, (label, at) in enumerate(marks[1:])}


def _first_step_table(root: str) -> None:
    from _harness import markdown_table

    probe = ["-c", "import cli_startup; cli_startup._probe()"]
    plain = ["-m", "lit_train"]
    probed: list[dict[str, float]] = []
    totals: dict[str, list[float]] = {"instrumented": [], "python -m lit_train": []}
    for _ in range(FIRST_STEP_RUNS):
        marks = _first_step(probe, root)
        probed.append(_phases(marks))
        totals["instrumented"].append(marks[-1][1] - marks[0][1])
        marks = _first_step(plain, root)
        totals["python -m lit_train"].append(marks[-1][1] - marks[0][1])
    labels = list(probed[0])
    medians = {label: statistics.median(p.get(label, 0.0) for p in probed) for label in labels}
    total = statistics.median(totals["instrumented"])
    rows = [[label, 1e3 * value, f"{100 * value / total:.0f}%"] for label, value in medians.items()]
    rows.append(["total: command to first batch (instrumented)", 1e3 * total, ""])
    rows.append(["total: command to first batch (python -m lit_train)",
                 1e3 * statistics.median(totals["python -m lit_train"]), ""])
    print(f"\nDefault run to its first training batch: {' '.join(_first_step_args('DIR')[:2])}, "
          f"median of {FIRST_STEP_RUNS} runs of each, alternating")
    print(markdown_table(["phase", "ms", "share"], rows))


def main(quick: bool) -> list[tuple[str, bool]]:
    """Runs both parts, prints the tables and the RATIO lines, returns ``(line, met)`` pairs."""
    with tempfile.TemporaryDirectory() as root:
        results = _startup_table(quick, root)
        for line, _ in results:
            print(line)
        if quick:
            print("\n(The default run's start-up breakdown is measured in full mode only.)")
        else:
            _first_step_table(root)
    return results


if __name__ == "__main__":
    from _harness import command_line

    command_line(main, __doc__, "the three commands only (for BENCH=quick)")
