import multiprocessing
import os
import signal
import time

import pytest
import torch

from lit_train.training.atomic import atomic_write
from lit_train.training.checkpoint_io import AtomicCheckpointIO


def test_checkpoint_round_trip(tmp_path):
    io = AtomicCheckpointIO()
    io.save_checkpoint({"w": torch.arange(3)}, tmp_path / "sub" / "last.ckpt")
    assert torch.equal(io.load_checkpoint(tmp_path / "sub" / "last.ckpt")["w"], torch.arange(3))
    assert [p.name for p in (tmp_path / "sub").iterdir()] == ["last.ckpt"]


def test_a_failed_write_keeps_the_old_file_and_leaves_no_temporary(tmp_path):
    target = tmp_path / "last.ckpt"
    atomic_write(target, lambda f: f.write(b"old"))

    def half_then_crash(f):
        f.write(b"new but trunc")
        raise OSError("disk full")

    with pytest.raises(OSError, match="disk full"):
        atomic_write(target, half_then_crash)
    assert target.read_bytes() == b"old"
    assert [p.name for p in tmp_path.iterdir()] == ["last.ckpt"]


def _rewrite_forever(path):
    io, i = AtomicCheckpointIO(), 0
    while True:
        i += 1
        io.save_checkpoint({"i": i, "w": torch.full((256, 1024), float(i))}, path)


@pytest.mark.slow
def test_killing_the_writer_at_any_moment_leaves_a_loadable_checkpoint(tmp_path):
    """SIGKILL a process that rewrites last.ckpt in a loop, 20 times at varied moments; it always loads."""
    target = tmp_path / "last.ckpt"
    fork = multiprocessing.get_context("fork")  # the child inherits imported torch: no start-up per kill
    loaded = 0
    for kill in range(20):
        writer = fork.Process(target=_rewrite_forever, args=(target,))
        writer.start()
        time.sleep(0.02 + 0.013 * kill)
        os.kill(writer.pid, signal.SIGKILL)
        writer.join()
        if target.exists():
            state = torch.load(target, weights_only=True)
            assert torch.all(state["w"] == state["i"])
            loaded += 1
    assert loaded >= 15


def test_atomic_files_get_the_permissions_of_a_plain_write(tmp_path):
    plain = tmp_path / "plain.txt"
    plain.write_bytes(b"x")
    atomic_write(tmp_path / "atomic.txt", lambda f: f.write(b"x"))
    assert (tmp_path / "atomic.txt").stat().st_mode == plain.stat().st_mode
