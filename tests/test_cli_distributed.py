"""The multi-process trainer options, run through the CLI with two CPU processes."""

import pytest
from support import read_summary, run_cli


@pytest.mark.slow
@pytest.mark.parametrize("option", ["ddp", "ddp_spawn"])
def test_two_cpu_processes_train_one_run(option, tmp_path):
    run_dir = tmp_path / "run"
    # Fit only: testing after a ddp_spawn fit trips Lightning's CSVLogger, whose writer state
    # stays behind in the spawned processes (the test stage then rewrites metrics.csv wrongly).
    result = run_cli(f"trainer={option}", "trainer.accelerator=cpu", "trainer.devices=2", "trainer.max_epochs=1",
                     "test=false", "callbacks.progress_bar=null", f"hydra.run.dir={run_dir}", cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    summary = read_summary(run_dir)
    assert summary["status"] == "completed"
    if option == "ddp":
        # 1259 training samples in batches of 64 are 20 batches; two ranks take 10 each.
        # (ddp_spawn's main process never learns the step count back from its workers.)
        assert summary["global_step"] == 10
    assert (run_dir / "checkpoints" / "last.ckpt").is_file()
