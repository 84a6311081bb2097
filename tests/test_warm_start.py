"""Parallel trials forked from the sweeper's warm parent: one process each, their own exit, a parent that survives."""

import json
import os
import re
import signal
import subprocess
import sys
import time

import optuna
import pytest
from support import ROOT, read_summary
from test_sweeper import RANDOM, TINY

from hydra_plugins.lit_train_optuna_sweeper._impl import FAILURE_ATTR
from lit_train.sweep.warm_start import WarmParent, WarmParentGone

BYO = {"PYTHONPATH": str(ROOT / "tests" / "byo")}
LR = "optimizer.lr=tag(log,interval(1e-4,1.0))"
PROBE = "+callbacks.process={_target_: process_probe.RecordProcess}"
WARM_PARENT = re.compile(r"Trials fork from a warm parent \(pid (\d+)\)")


def _sweep(tmp_path, *args: str) -> tuple[subprocess.Popen, str]:
    """Runs a parallel sweep to its end; returns its process (for its pid) and its output."""
    command = [sys.executable, "-m", "lit_train", *RANDOM, *TINY, "hydra.sweeper.n_jobs=2",
               f"hydra.sweep.dir={tmp_path / 'sweep'}", *args]
    env = {**os.environ, "PYTHONWARNINGS": "ignore", **BYO}
    sweeper = subprocess.Popen(command, cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                               text=True)
    output = sweeper.communicate(timeout=300)[0]
    assert sweeper.returncode == 0, output[-3000:]
    return sweeper, output


def _trials(tmp_path) -> list[optuna.trial.FrozenTrial]:
    return optuna.load_study(study_name="lit_train", storage=f"sqlite:///{tmp_path / 'sweep' / 'optuna.db'}").trials


def _process(tmp_path, number: int) -> dict:
    """What the probe recorded in trial ``number``'s process as training started."""
    return json.loads((tmp_path / "sweep" / str(number) / "process.json").read_text())


@pytest.mark.slow
def test_parallel_trials_fork_from_one_warm_parent_with_a_torch_thread_each(tmp_path):
    sweeper, output = _sweep(tmp_path, LR, PROBE, "hydra.sweeper.n_trials=3")
    assert [t.state.name for t in _trials(tmp_path)] == ["COMPLETE"] * 3
    (parent,) = map(int, WARM_PARENT.findall(output))
    processes = [_process(tmp_path, number) for number in range(3)]
    # Each trial its own process, all children of the warm parent, which is not the sweeper.
    assert len({p["pid"] for p in processes}) == 3 and parent != sweeper.pid
    assert [(p["ppid"], p["warm"], p["torch_threads"]) for p in processes] == [(parent, True, 1)] * 3
    # Their output reaches the sweeper's, as a trial started as `python -m lit_train` writes it.
    assert all(f"run dir: {tmp_path / 'sweep' / str(number)}" in output for number in range(3))


@pytest.mark.slow
def test_a_trial_killed_with_sigkill_fails_alone_and_the_warm_parent_forks_the_next(tmp_path):
    # With this seed the random sampler has trial 1 killed after its first step, and no other.
    killer = "+callbacks.killer={_target_: killer.KillAt, step: 1}"
    sweeper, output = _sweep(tmp_path, killer, "callbacks.killer.step=choice(1,1000)", PROBE,
                             "hydra.sweeper.n_trials=4")
    trials = _trials(tmp_path)
    assert [t.params["callbacks.killer.step"] for t in trials] == [1000, 1, 1000, 1000]
    assert [t.state.name for t in trials] == ["COMPLETE", "FAIL", "COMPLETE", "COMPLETE"]
    assert trials[1].user_attrs[FAILURE_ATTR] == "the job exited with code -9"
    assert "Trial 1: failed (the job exited with code -9)" in output
    # The parent outlived the killed trials: every trial, the one after each kill too, was its child.
    (parent,) = map(int, WARM_PARENT.findall(output))
    assert [_process(tmp_path, number)["ppid"] for number in range(4)] == [parent] * 4
    assert "start cold" not in output


@pytest.mark.slow
def test_when_the_warm_parent_dies_its_trials_finish_and_later_trials_start_cold(tmp_path):
    # Each trial SIGKILLs its parent as it starts training, if that parent is the warm parent.
    killer = "+callbacks.process={_target_: process_probe.KillWarmParent}"
    sweeper, output = _sweep(tmp_path, LR, killer, "hydra.sweeper.n_trials=4")
    (parent,) = map(int, WARM_PARENT.findall(output))
    fallback = re.findall(r"Trials start cold from trial (\d+) on: the warm parent of the trials \(pid (\d+)\) "
                          r"stopped \(killed by SIGKILL\)", output)
    assert len(fallback) == 1 and int(fallback[0][1]) == parent, output[-3000:]
    first_cold = int(fallback[0][0])
    # The trials it had forked ran on to the end; their summary.json tells how, their exit code died with it.
    assert [t.state.name for t in _trials(tmp_path)] == ["COMPLETE"] * 4
    # Forked before it died, a trial's parent is the warm parent, or whoever adopted it after; later trials
    # are the sweeper's own children.
    processes = [_process(tmp_path, number) for number in range(4)]
    assert 1 <= first_cold < 4 and not any(p["ppid"] == sweeper.pid for p in processes[:first_cold])
    assert [p["ppid"] for p in processes[first_cold:]] == [sweeper.pid] * (4 - first_cold)


@pytest.mark.slow
def test_the_warm_parent_reports_exit_codes_and_its_children_keep_their_signal_handling(tmp_path):
    parent = WarmParent({**os.environ, "OMP_NUM_THREADS": "1", **BYO})
    try:
        env = {**os.environ, "PYTHONWARNINGS": "ignore", **BYO}
        bad = parent.start(["optimizer=adamm"], env)  # a config error: exit code 2
        long_run = [*TINY, "trainer.max_epochs=100000", PROBE, f"hydra.run.dir={tmp_path / 'long'}"]
        training = parent.start(long_run, env)
        deadline = time.monotonic() + 120
        while not (tmp_path / "long" / "process.json").is_file():
            assert not training.ended() and time.monotonic() < deadline
            time.sleep(0.1)
        training.terminate()  # SIGTERM: lit_train stops after the step, saves, and exits with 128 + 15
        training.wait()
        bad.wait()
        assert (bad.returncode, training.returncode) == (2, 128 + signal.SIGTERM)
        summary = read_summary(tmp_path / "long")
        assert (summary["status"], summary["signal"]) == ("interrupted", "SIGTERM")
        assert (tmp_path / "long" / "checkpoints" / "last.ckpt").is_file()
        os.kill(parent.pid, signal.SIGKILL)
        with pytest.raises(WarmParentGone, match=rf"^the warm parent of the trials \(pid {parent.pid}\) stopped "
                                                 r"\(killed by SIGKILL\)$"):
            parent.start(["optimizer=adamm"], env)
    finally:
        parent.close()
