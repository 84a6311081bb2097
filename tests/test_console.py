"""What a run prints, read as a person reads it: in a log, on an 80-column terminal, under DDP, for each action."""

import fcntl
import os
import pty
import re
import struct
import subprocess
import sys
import termios
from pathlib import Path

import pytest
from omegaconf import OmegaConf
from support import FAST, ROOT, compose_config, read_summary, run_cli

from lit_train.training.summary import format_summary

#: Python's own warning filters, as a user has them (run_cli turns warnings off for the other tests).
USERS_WARNINGS = {"PYTHONWARNINGS": ""}
THREE_EPOCHS = [*FAST, "trainer.max_epochs=3"]
EPOCH_LINE = re.compile(r"epoch ([123])/3  loss \S+  val/loss \S+  val/acc \S+  acc \S+  \d+\.\d+s")


def test_a_run_in_a_log_prints_one_plain_line_per_epoch_and_no_noise(tmp_path):
    result = run_cli(*THREE_EPOCHS, f"hydra.run.dir={tmp_path / 'run'}", cwd=tmp_path, env=USERS_WARNINGS)
    assert result.returncode == 0, result.stderr[-3000:]
    output = result.stdout + result.stderr
    assert "\r" not in output and "\x1b" not in output
    assert [EPOCH_LINE.fullmatch(line)[1] for line in result.stdout.splitlines() if line.startswith("epoch")] == [
        "1", "2", "3"
    ]
    assert "model: Classifier(MLP), 85.0 K trainable params, on 1 cpu device\n" in result.stdout
    # No warning at all, nor Lightning's advert, device lines, FLOPs table or test table.
    assert [line for line in result.stderr.splitlines() if not line.startswith("INFO: ")] == []
    for noise in ("litlogger", "GPU available", "FLOPs", "Flops", "Test metric", "v_num"):
        assert noise not in output
    (test_line,) = [line for line in result.stdout.splitlines() if line.startswith("  test: ")]
    values = re.fullmatch(r"  test: loss (\S+), acc (\S+)", test_line).groups()
    assert all(len(value.replace(".", "").lstrip("0")) <= 4 for value in values)  # significant digits


def _run_in_terminal(*args: str, cwd: Path, columns: int) -> str:
    """What ``python -m lit_train ARGS`` writes to a terminal ``columns`` wide (stderr is left out)."""
    main, terminal = pty.openpty()
    fcntl.ioctl(terminal, termios.TIOCSWINSZ, struct.pack("HHHH", 24, columns, 0, 0))
    env = {**os.environ, "PYTHONWARNINGS": "ignore", "COLUMNS": str(columns)}
    process = subprocess.Popen([sys.executable, "-m", "lit_train", *args], cwd=cwd, env=env, stdout=terminal,
                               stderr=subprocess.DEVNULL)
    os.close(terminal)
    written = b""
    while True:
        try:
            chunk = os.read(main, 65536)
        except OSError:  # the terminal closed with the process
            break
        if not chunk:
            break
        written += chunk
    os.close(main)
    assert process.wait(timeout=300) == 0
    return written.decode()


def test_on_a_terminal_the_status_line_fits_80_columns(tmp_path):
    written = _run_in_terminal(*THREE_EPOCHS, "callbacks.progress_bar.refresh_seconds=0", f"hydra.run.dir={tmp_path}",
                               cwd=tmp_path, columns=80)
    shown = re.split(r"[\r\n]", written)
    # The bar's lines; others (the run directory's path) are as long as the machine's paths.
    assert max(len(text) for text in shown if re.match(r"(epoch|validating|testing) ", text)) < 80
    assert "\x1b" not in written and "v_num" not in written
    assert any(re.match(r"epoch 3/3  \[#####-----\] 1/2  loss \S+  val/loss \S+  val/acc \S+", text) for text in shown)
    assert any(EPOCH_LINE.fullmatch(text) for text in shown)  # the last epoch's line stays


@pytest.mark.slow
@pytest.mark.parametrize(("model", "advised"), [
    ([], False),  # the built-in modules reduce their epoch means over ranks themselves
    (["model._target_=byo_models.NoOptimizerModule"], True),  # logs val/loss per rank
])
def test_under_ddp_only_a_users_module_gets_lightnings_sync_dist_advice(model, advised, tmp_path):
    env = {**USERS_WARNINGS, "PYTHONPATH": str(ROOT / "tests" / "byo"), "OMP_NUM_THREADS": "1"}
    result = run_cli("trainer=ddp", *FAST, "trainer.devices=2", *model, "test=false", f"hydra.run.dir={tmp_path / 'run'}",
                     cwd=tmp_path, env=env)
    assert result.returncode == 0, result.stderr[-3000:]
    assert ("self.log('val/loss', ..., sync_dist=True)" in result.stderr) == advised
    assert "sync_dist" not in result.stderr.replace("self.log('val/loss', ..., sync_dist=True)", "")


def test_lr_find_prints_the_command_that_uses_its_suggestion_and_no_best_value(tmp_path):
    run_dir = tmp_path / "run"
    result = run_cli("action=lr_find", "model.net.hidden=[16]", *FAST, f"hydra.run.dir={run_dir}", cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    suggestion = read_summary(run_dir)["lr_suggestion"]
    assert f"lit_train: suggested learning rate {suggestion:.4g}\n" in result.stdout
    (command,) = [line for line in result.stdout.splitlines() if line.startswith("  use it: ")]
    assert command.startswith("  use it: python -m lit_train 'model.net.hidden=[16]' trainer.accelerator=cpu")
    assert command.endswith(f" optimizer.lr={suggestion:.4g}") and "action=" not in command
    assert "lit_train: lr_find completed in " in result.stdout and "best" not in result.stdout


def test_show_schedule_prints_no_best_value(tmp_path):
    result = run_cli("action=show_schedule", *FAST, f"hydra.run.dir={tmp_path / 'run'}", cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "lit_train: show_schedule completed in " in result.stdout and "best" not in result.stdout


def test_help_lists_every_top_level_key_and_the_actions(tmp_path):
    result = run_cli("--help", cwd=tmp_path)
    assert result.returncode == 0
    config = OmegaConf.to_container(compose_config([]), resolve=False)
    keys = [key for key, value in config.items() if not isinstance(value, dict) and key != "hydra"]
    assert {"action", "resume", "monitor", "mode", "seed", "train", "test", "ckpt_path", "verbose"} <= set(keys)
    for key in [*keys, "lr_find", "show_schedule", "doctor"]:
        assert re.search(rf"\b{key}\b", result.stdout.split("== Top-level keys")[1]), key


def test_the_summary_shows_test_metrics_loss_first_with_four_significant_digits():
    summary = {"status": "completed", "global_step": 400, "wall_time_s": 12.3, "stopped_reason": "max_epochs",
               "monitor": "val/loss", "mode": "min", "best_score": 0.0883512, "run_dir": "runs/a",
               "test_metrics": {"test/acc": 0.9851301312446594, "test/loss": 0.07383879274129868}}
    assert format_summary(summary).splitlines() == [
        "lit_train: completed after 400 steps in 12.3 s (stopped: max_epochs)",
        "  best val/loss (min): 0.08835",
        "  test: loss 0.07384, acc 0.9851",
        "  run dir: runs/a",
    ]
