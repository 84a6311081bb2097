"""Reruns never destroy results: the same command again in a run (or sweep) directory that holds an earlier run is
refused before any compute, unless resume=auto continues it or overwrite=true moves it aside first."""

import json

import pytest
from omegaconf import OmegaConf
from support import FAST, read_summary, run_cli

from lit_train.launch.rerun import earlier_results

TINY = [*FAST, "callbacks.progress_bar=null", "test=false"]


def _snapshot(directory):
    return {str(p.relative_to(directory)): (p.stat().st_mtime_ns, p.read_bytes())
            for p in sorted(directory.rglob("*")) if p.is_file()}


@pytest.fixture
def earlier_run(tmp_path):
    run_dir = tmp_path / "run"
    result = run_cli(*TINY, f"hydra.run.dir={run_dir}", cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    return run_dir


def test_the_same_command_again_is_refused_and_touches_nothing(earlier_run, tmp_path):
    before = _snapshot(earlier_run)
    result = run_cli(*TINY, f"hydra.run.dir={earlier_run}", cwd=tmp_path)
    assert result.returncode == 2
    assert result.stderr.splitlines()[0] == (
        f"error: hydra.run.dir: {earlier_run} already holds an earlier run (summary.json, metrics.csv, checkpoints); "
        "add resume=auto to continue it, overwrite=true to move it aside and start over, or choose another "
        "hydra.run.dir")
    assert "Traceback" not in result.stderr and "model: " not in result.stdout  # before any compute (its model line)
    assert _snapshot(earlier_run) == before


def test_overwrite_moves_the_earlier_run_aside_whole_and_starts_over(earlier_run, tmp_path):
    before = _snapshot(earlier_run)
    for number in (1, 2):
        result = run_cli(*TINY, "trainer.limit_train_batches=1", "overwrite=true", f"hydra.run.dir={earlier_run}",
                         cwd=tmp_path)
        assert result.returncode == 0, result.stderr[-3000:]
        aside = tmp_path / f"run.previous-{number}"
        assert f"moved the earlier run in {earlier_run} to {aside}" in result.stderr
    assert _snapshot(tmp_path / "run.previous-1") == before
    assert read_summary(tmp_path / "run.previous-2")["global_step"] == 1 == read_summary(earlier_run)["global_step"]


def test_resume_auto_continues_the_earlier_run_with_its_overrides(earlier_run, tmp_path):
    recorded = (earlier_run / ".hydra" / "overrides.yaml").read_text()
    result = run_cli("trainer.max_epochs=2", "resume=auto", f"hydra.run.dir={earlier_run}", cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    kept = " ".join(o for o in TINY if not o.startswith("trainer.max_epochs="))
    assert f"resume=auto continues {earlier_run} with its overrides ({kept}" in result.stdout
    assert "changed by this command: trainer.max_epochs=2\n" in result.stdout
    assert read_summary(earlier_run)["global_step"] == 4  # 2 steps an epoch, as the earlier run was configured
    assert (earlier_run / ".hydra" / "overrides.resume-1.yaml").read_text() == recorded
    now = OmegaConf.load(earlier_run / ".hydra" / "overrides.yaml")
    assert "trainer.limit_train_batches=2" in now and "trainer.max_epochs=2" in now and "trainer.max_epochs=1" not in now


def test_a_directory_without_results_is_used_as_it_is(tmp_path):
    run_dir = tmp_path / "run"
    (run_dir / "checkpoints").mkdir(parents=True)
    (run_dir / "notes.txt").write_text("mine")
    assert earlier_results(run_dir) == []
    result = run_cli(*TINY, f"hydra.run.dir={run_dir}", cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    assert (run_dir / "notes.txt").read_text() == "mine"


def test_overwrite_cannot_move_the_working_directory(earlier_run):
    result = run_cli(*TINY, "overwrite=true", "hydra.run.dir=.", cwd=earlier_run)
    assert result.returncode == 2
    assert result.stderr.splitlines()[0] == (
        "error: overwrite: cannot move . aside, it holds the working directory; choose another hydra.run.dir")


@pytest.mark.slow
def test_a_sweep_run_again_is_refused_and_its_jobs_keep_their_results(tmp_path):
    sweep = tmp_path / "sweep"
    args = ["-m", *TINY, "optimizer=sgd,adam", f"hydra.sweep.dir={sweep}"]
    assert run_cli(*args, cwd=tmp_path).returncode == 0
    before = _snapshot(sweep)
    again = run_cli(*args, cwd=tmp_path)
    assert again.returncode == 2
    assert again.stderr.startswith(f"error: hydra.sweep.dir: {sweep} already holds an earlier run (0/summary.json, "
                                   "0/metrics.csv, 0/checkpoints and 3 more)")
    assert _snapshot(sweep) == before
    assert json.loads((sweep / "1" / "summary.json").read_text())["status"] == "completed"
