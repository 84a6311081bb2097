"""A run of several nodes waits at most rendezvous_timeout seconds for them, and a stop signal ends the wait at once;
either way it leaves nothing behind, as nothing was trained."""

import csv
import os
import signal
import socket
import subprocess
import sys
import time

import pytest
from support import FAST, read_summary, run_cli


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _node(rank: int, port: int, run_dir, *overrides: str) -> subprocess.Popen:
    """One node of a two-node run on this machine, as a cluster's launcher starts it (MASTER_ADDR and friends set)."""
    env = {**os.environ, "PYTHONWARNINGS": "ignore", "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(port),
           "NODE_RANK": str(rank), "OMP_NUM_THREADS": "1"}
    return subprocess.Popen(
        [sys.executable, "-m", "lit_train", *FAST, "trainer.num_nodes=2", "callbacks.progress_bar=null",
         f"hydra.run.dir={run_dir}", *overrides],
        cwd=run_dir.parent, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )


def test_a_node_whose_peers_never_come_fails_after_the_timeout_leaving_nothing(tmp_path):
    started = time.monotonic()
    node = _node(0, _free_port(), tmp_path / "run", "rendezvous_timeout=3")
    _, err = node.communicate(timeout=120)
    assert node.returncode == 1, err
    assert time.monotonic() - started < 60
    assert err.splitlines()[-1].startswith(
        "error: rendezvous: the 2 processes of this run did not all join at 127.0.0.1:")
    assert "within rendezvous_timeout=3 s; start every node with the same MASTER_ADDR, MASTER_PORT" in err
    assert not (tmp_path / "run").exists()


def _wait_until_waiting(node: subprocess.Popen) -> str:
    """Reads the node's stderr up to the line that says it waits for the others (after a few seconds), and returns it."""
    lines = []
    for line in node.stderr:
        lines.append(line)
        if line.startswith("lit_train: waiting for the 2 processes of this run to join at 127.0.0.1:"):
            return line
    raise AssertionError("".join(lines))


def test_sigterm_while_waiting_for_the_other_nodes_ends_the_run_at_once(tmp_path):
    node = _node(0, _free_port(), tmp_path / "run", "rendezvous_timeout=300")
    assert _wait_until_waiting(node).endswith("(up to 300 s: rendezvous_timeout)\n")
    sent = time.monotonic()
    node.send_signal(signal.SIGTERM)
    _, err = node.communicate(timeout=60)
    assert time.monotonic() - sent < 10
    assert node.returncode == 128 + signal.SIGTERM
    assert err.strip().splitlines()[-1] == ("lit_train: stopped by SIGTERM while waiting for the other processes to "
                                            "join; nothing was trained")
    assert not (tmp_path / "run").exists()


@pytest.mark.slow
def test_two_nodes_started_seconds_apart_meet_and_train(tmp_path):
    port = _free_port()
    first = _node(0, port, tmp_path / "run")
    _wait_until_waiting(first)
    second = _node(1, port, tmp_path / "run")
    _, err = first.communicate(timeout=240)
    second.communicate(timeout=60)
    assert first.returncode == 0 and second.returncode == 0, err[-3000:]
    summary = read_summary(tmp_path / "run")
    assert summary["status"] == "completed"
    assert summary["global_step"] == 2


@pytest.mark.slow
def test_a_ddp_spawn_parent_waits_for_its_processes_past_the_timeout(tmp_path):
    """The parent that starts the processes with multiprocessing never joins them: only they are bound by the limit."""
    result = run_cli(*FAST, "trainer=ddp_spawn", "trainer.accelerator=cpu", "trainer.devices=2", "trainer.max_epochs=3",
                     "trainer.limit_train_batches=20", "rendezvous_timeout=1", "callbacks.progress_bar=null",
                     "hydra.run.dir=run", cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "rendezvous" not in result.stderr
    assert read_summary(tmp_path / "run")["status"] == "completed"
    # The fit's processes and the test's each wrote metrics.csv: both kept, under one header.
    (metrics,) = (tmp_path / "run").rglob("metrics.csv")
    rows = list(csv.DictReader(metrics.open()))
    assert any(row["val/loss"] for row in rows) and any(row["test/loss"] for row in rows)
