import multiprocessing
import os
import signal
import subprocess
import time

import pytest
import torch
from support import FAST, read_summary, run_cli

from lit_train.training.atomic import atomic_write, is_temporary
from lit_train.training.checkpoint_io import AtomicCheckpointIO, UnsafeCheckpointError, read_checkpoint


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
    loaded = mid_write = 0
    for kill in range(20):
        writer = fork.Process(target=_rewrite_forever, args=(target,))
        writer.start()
        time.sleep(0.02 + 0.013 * kill)
        os.kill(writer.pid, signal.SIGKILL)
        writer.join()
        # A temporary file left behind: the kill landed between its creation and the rename over last.ckpt.
        temporaries = [p for p in tmp_path.iterdir() if is_temporary(p)]
        mid_write += bool(temporaries)
        for p in temporaries:
            p.unlink()
        if target.exists():
            state = torch.load(target, weights_only=True)
            assert torch.all(state["w"] == state["i"])
            loaded += 1
    assert loaded >= 15
    assert mid_write >= 1, "no kill landed while a checkpoint was being written"


def test_atomic_files_get_the_permissions_of_a_plain_write(tmp_path):
    plain = tmp_path / "plain.txt"
    plain.write_bytes(b"x")
    atomic_write(tmp_path / "atomic.txt", lambda f: f.write(b"x"))
    assert (tmp_path / "atomic.txt").stat().st_mode == plain.stat().st_mode


#: A class whose unpickling leaves a mark: a checkpoint that holds one runs its code if it is loaded unsafely.
PAYLOAD = """
class Payload:
    def __setstate__(self, state):
        open(state["mark"], "w").close()
"""


def _unsafe_checkpoint(folder, monkeypatch):
    (folder / "payload_pkg.py").write_text(PAYLOAD)
    monkeypatch.syspath_prepend(str(folder))
    from payload_pkg import Payload

    payload = Payload()
    payload.mark = str(folder / "code_ran")
    torch.save({"state_dict": {}, "global_step": 0, "x": payload}, folder / "unsafe.ckpt")
    return folder / "unsafe.ckpt"


def test_a_checkpoint_holding_a_pickled_class_is_refused_as_unsafe(tmp_path, monkeypatch):
    ckpt = _unsafe_checkpoint(tmp_path, monkeypatch)
    with pytest.raises(UnsafeCheckpointError, match=rf"^'{ckpt}' is unsafe to load: it holds payload_pkg.Payload, "):
        read_checkpoint(ckpt)
    assert not (tmp_path / "code_ran").exists()


def test_an_unsafe_checkpoint_given_to_the_cli_is_one_line_and_runs_no_code(tmp_path, monkeypatch):
    ckpt = _unsafe_checkpoint(tmp_path, monkeypatch)
    result = run_cli(f"ckpt_path={ckpt}", *FAST, "callbacks.progress_bar=null", f"hydra.run.dir={tmp_path / 'run'}",
                     cwd=tmp_path, env={"PYTHONPATH": str(tmp_path)}, timeout=120)
    assert result.returncode == 1, result.stderr[-3000:]
    assert "Traceback" not in result.stderr
    errors = [line for line in result.stderr.splitlines() if line.startswith("error: ")]
    assert errors == [f"error: ckpt_path: '{ckpt}' is unsafe to load: it holds payload_pkg.Payload, a pickled object "
                      "that torch.load(weights_only=True) refuses because loading could run code; lit_train loads "
                      "only checkpoints of tensors and plain values"]
    assert not (tmp_path / "code_ran").exists()
    assert not (tmp_path / "run").exists()


@pytest.fixture
def small_disk(tmp_path):
    """A 2.6 MB file system: room for two checkpoints of the default model, not for a third beside them."""
    disk = tmp_path / "disk"
    disk.mkdir()
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=2600k", "tmpfs", str(disk)], capture_output=True)
    if mounted.returncode != 0:
        pytest.skip(f"a small file system needs mount (root): {mounted.stderr.decode().strip()}")
    yield disk
    subprocess.run(["umount", "-l", str(disk)], check=True)


def test_a_full_disk_is_named_and_the_last_checkpoint_is_kept(small_disk, tmp_path):
    run_dir = small_disk / "run"
    result = run_cli("trainer.max_epochs=3", "callbacks.progress_bar=null", "callbacks.model_checkpoint.every_n_train_steps=5",
                     f"hydra.run.dir={run_dir}", cwd=tmp_path)
    assert result.returncode == 1
    last = run_dir / "checkpoints" / "last.ckpt"
    assert (f"error: the disk is full: writing {last} failed, and {last} is kept as it was; free space on "
            f"{last.parent} (or write elsewhere) and resume=auto goes on\n") in result.stderr
    kept = torch.load(last, weights_only=True)  # complete: it loads, at an earlier step than the failed write's
    assert 0 < kept["global_step"] < read_summary(run_dir)["global_step"]
    assert read_summary(run_dir)["status"] == "failed"
    assert [p.name for p in last.parent.iterdir() if p.name.startswith(".")] == []  # no temporary left behind
