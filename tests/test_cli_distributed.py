"""The multi-process trainer options, run through the CLI with two CPU processes: alone, in a sweep,
under torchrun, and the SLURM launcher preset."""

import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from hydra import compose, initialize_config_dir
from hydra._internal.utils import get_args_parser
from hydra.core.hydra_config import HydraConfig
from omegaconf import OmegaConf, open_dict
from support import compose_with_hydra, read_summary, run_cli

from lit_train.config.launcher import launcher_problems
from lit_train.launch.ranks import rank_command, ranks_of_this_job
from lit_train.config.compose import check_overrides

#: Two CPU ranks, a few steps, fit only. (Testing after a ddp_spawn fit trips Lightning's CSVLogger, whose
#: writer state stays behind in the spawned processes; the test stage would then rewrite metrics.csv wrongly.)
TWO_RANKS = ["trainer.accelerator=cpu", "trainer.devices=2", "trainer.max_epochs=1", "test=false",
             "callbacks.progress_bar=null"]
SHORT = ["trainer.limit_train_batches=2", "trainer.limit_val_batches=1", "logger=none"]


def _only_dirs(pattern: str, root: Path) -> list[Path]:
    """The directories matching ``pattern`` under ``root`` (sorted)."""
    return sorted(path for path in root.glob(pattern) if path.is_dir())


@pytest.mark.slow
@pytest.mark.parametrize("option", ["ddp", "ddp_spawn"])
def test_two_cpu_processes_train_one_run(option, tmp_path):
    result = run_cli(f"trainer={option}", *TWO_RANKS, cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    # The default directory names the process that resolved it: a rank resolving its own would make a second.
    (run_dir,) = _only_dirs("outputs/*/*/*", tmp_path)
    assert run_dir.parent.parent.name == "runs"
    assert sorted(tmp_path.rglob(".hydra")) == [run_dir / ".hydra"]
    summary = read_summary(run_dir)
    assert summary["status"] == "completed"
    assert summary["effective_batch_size"] == 2 * 64
    if option == "ddp":
        # 1259 training samples in batches of 64 are 20 batches; two ranks take 10 each.
        # (ddp_spawn's main process never learns the step count back from its workers.)
        assert summary["global_step"] == 10
        assert "GLOBAL_RANK: 1" in (run_dir / "lit_train_rank1.log").read_text()
    assert (run_dir / "checkpoints" / "last.ckpt").is_file()


@pytest.mark.slow
@pytest.mark.parametrize("option", ["ddp", "ddp_spawn"])
def test_a_sweep_runs_each_job_once_with_two_ranks_in_its_own_directory(option, tmp_path):
    result = run_cli("-m", "optimizer=adam,adamw", f"trainer={option}", *TWO_RANKS, *SHORT, cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    # Ranks started for a job run that job alone: no rank starts the sweep again.
    assert result.stdout.count("Launching 2 jobs locally") == 1
    (sweep_dir,) = _only_dirs("outputs/*/*/*", tmp_path)
    assert sweep_dir.parent.parent.name == "multiruns"
    jobs = [sweep_dir / "0", sweep_dir / "1"]
    assert _only_dirs("*", sweep_dir) == jobs
    assert sorted(tmp_path.rglob(".hydra")) == [job / ".hydra" for job in jobs]
    for job, optimizer in zip(jobs, ["adam", "adamw"]):
        assert f"optimizer={optimizer}" in yaml.safe_load((job / ".hydra" / "overrides.yaml").read_text())
        summary = read_summary(job)
        assert summary["status"] == "completed"
        assert summary["effective_batch_size"] == 2 * 64
        if option == "ddp":
            assert "GLOBAL_RANK: 1" in (job / "lit_train_rank1.log").read_text()
    assert (sweep_dir / "leaderboard.md").is_file()


def _torchrun(*args: str, cwd: Path, env: dict | None = None) -> subprocess.CompletedProcess:
    """``torchrun --standalone --nproc_per_node=2 -m lit_train ARGS`` on this machine."""
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2", "-m", "lit_train",
               *args]
    full_env = {**os.environ, "PYTHONWARNINGS": "ignore", "OMP_NUM_THREADS": "1", **(env or {})}
    return subprocess.run(command, cwd=cwd, capture_output=True, text=True, timeout=300, env=full_env)


@pytest.mark.slow
@pytest.mark.parametrize("store", ["agent", "rank0"])
def test_torchrun_workers_share_one_run_directory(store, tmp_path):
    # rank0: torchrun's agent keeps its store to itself, so rank 0 hosts the one the workers agree through.
    env = {"TORCH_DISABLE_SHARE_RDZV_TCP_STORE": "1"} if store == "rank0" else {}
    result = _torchrun("trainer=ddp", *TWO_RANKS, *SHORT, cwd=tmp_path, env=env)
    assert result.returncode == 0, result.stderr[-3000:]
    (run_dir,) = _only_dirs("outputs/*/*/*", tmp_path)
    assert sorted(tmp_path.rglob(".hydra")) == [run_dir / ".hydra"]
    assert sorted(path.name for path in run_dir.glob("*.log")) == ["lit_train.log", "lit_train_rank1.log"]
    summary = read_summary(run_dir)
    assert summary["status"] == "completed"
    assert summary["effective_batch_size"] == 2 * 64
    assert result.stdout.count("lit_train: completed after") == 1  # only rank 0 reports


# --- how a rank started by Lightning is run -----------------------------------------------------------------


@pytest.fixture
def sweep_job(tmp_path):
    """Hydra's state inside job 1 of ``-m optimizer=adam,adamw trainer=ddp`` with a launcher override."""
    cfg = compose_with_hydra(["hydra.mode=MULTIRUN", "hydra.sweep.dir=sweep", "hydra/launcher=basic",
                              "hydra.job.chdir=false", "optimizer=adamw", "trainer=ddp",
                              "callbacks=[default,early_stopping]"])
    with open_dict(cfg):
        cfg.hydra.runtime.output_dir = str(tmp_path / "sweep" / "1")
        cfg.hydra.job.num = 1
    HydraConfig.instance().set_config(cfg)
    yield cfg
    HydraConfig.instance().cfg = None


def test_a_rank_of_a_sweep_job_runs_that_job_alone(sweep_job, tmp_path, monkeypatch):
    import __main__
    import types

    monkeypatch.setattr(__main__, "__spec__", types.SimpleNamespace(name="lit_train"))  # python -m lit_train
    command, cwd = rank_command(1)
    assert command[:3] == [sys.executable, "-m", "lit_train"]
    args = get_args_parser().parse_args(command[3:])
    assert not args.multirun
    assert args.overrides[:3] == ["optimizer=adamw", "trainer=ddp", "callbacks=[default,early_stopping]"]
    assert "hydra.job.chdir=false" in args.overrides
    assert f"hydra.run.dir='{tmp_path / 'sweep' / '1'}'" in args.overrides
    assert "hydra.output_subdir=null" in args.overrides
    assert "hydra.job.name=lit_train_rank1" in args.overrides
    assert not [o for o in args.overrides if o.startswith(("hydra.mode", "hydra.sweep", "hydra/launcher"))]
    assert cwd == os.getcwd()


def test_a_rank_of_the_console_script_runs_the_script(sweep_job, monkeypatch):
    import __main__

    monkeypatch.setattr(__main__, "__spec__", None)
    monkeypatch.setattr(sys, "argv", ["bin/lit-train", "-m", "optimizer=adam,adamw"])
    command, _ = rank_command(1)
    assert command[:3] == [sys.executable, os.path.abspath("bin/lit-train"), "optimizer=adamw"]


def test_lightning_starts_ranks_with_the_job_command_only_while_the_job_runs(sweep_job, monkeypatch):
    from lightning.fabric.strategies.launchers import subprocess_script as fabric_launcher
    from lightning.pytorch.strategies.launchers import subprocess_script as trainer_launcher

    original = fabric_launcher._hydra_subprocess_cmd
    monkeypatch.delenv("LOCAL_RANK", raising=False)
    with ranks_of_this_job():
        assert trainer_launcher._hydra_subprocess_cmd(local_rank=1) == rank_command(1)
        assert fabric_launcher._hydra_subprocess_cmd(local_rank=1) == rank_command(1)
        os.environ["LOCAL_RANK"] = "0"  # as Lightning's launcher sets it when it starts ranks
    assert fabric_launcher._hydra_subprocess_cmd is original is trainer_launcher._hydra_subprocess_cmd
    # Else the next job of the sweep would take itself for a rank that someone else started.
    assert "LOCAL_RANK" not in os.environ


def _one_rank_group():
    import torch.distributed as dist

    dist.init_process_group("gloo", store=dist.HashStore(), rank=0, world_size=1)
    return dist


def test_a_rank_that_completes_destroys_its_process_group():
    # Left to the interpreter's shutdown, gloo's threads can abort the process.
    with ranks_of_this_job():
        dist = _one_rank_group()
    assert not dist.is_initialized()


def test_a_rank_that_fails_leaves_its_process_group_alone():
    # The other ranks may still be in a collective that destroying the group would wait on.
    with pytest.raises(RuntimeError, match="boom"), ranks_of_this_job():
        dist = _one_rank_group()
        raise RuntimeError("boom")
    try:
        assert dist.is_initialized()
    finally:
        dist.destroy_process_group()


# --- SLURM ---------------------------------------------------------------------------------------------------

MULTI_NODE = ["hydra/launcher=slurm", "trainer=ddp", "trainer.accelerator=gpu", "trainer.devices=4",
              "trainer.num_nodes=2", "resume=auto", "hydra.sweep.dir=outputs/my_sweep"]


def test_slurm_preset_runs_a_task_per_device_and_requeues():
    cfg = compose_with_hydra(MULTI_NODE)
    launcher = OmegaConf.to_container(cfg.hydra.launcher, resolve=True)
    assert launcher["_target_"] == "hydra_plugins.hydra_submitit_launcher.submitit_launcher.SlurmLauncher"
    assert (launcher["nodes"], launcher["tasks_per_node"], launcher["gpus_per_node"]) == (2, 4, 4)
    assert launcher["timeout_min"] > 0 and launcher["signal_delay_s"] > 0 and launcher["max_num_timeout"] > 0
    assert launcher["additional_parameters"] == {"requeue": True}
    assert launcher["submitit_folder"] == "outputs/my_sweep/.submitit/%j"


def test_slurm_preset_passes_lit_train_checks():
    sweep = [*MULTI_NODE, "optimizer=adam,adamw"]
    assert check_overrides(sweep, multirun=True) == []
    assert launcher_problems(compose_with_hydra(MULTI_NODE)) == []


def test_slurm_preset_renders_the_sbatch_flags(tmp_path, monkeypatch):
    """The preset through the real submitit launcher, up to the sbatch script it submits."""
    import submitit
    from hydra.utils import instantiate

    fake = tmp_path / "bin"  # submitit looks for srun, then submits with sbatch: this one only keeps the script
    fake.mkdir()
    (fake / "srun").write_text("#!/bin/sh\nexit 1\n")
    (fake / "sbatch").write_text(f'#!/bin/sh\ncp "$1" {tmp_path}/submitted.sh\necho "Submitted batch job 42"\n')
    for tool in ("srun", "sbatch"):
        (fake / tool).chmod(0o755)
    monkeypatch.setenv("PATH", f"{fake}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.setattr(submitit.Job, "results", lambda job: [None])
    cfg = compose_with_hydra([*MULTI_NODE[:-1], f"hydra.sweep.dir={tmp_path / 'sweep'}"])
    launcher = instantiate(cfg.hydra.launcher)
    launcher.setup(hydra_context=None, task_function=print, config=cfg)
    launcher.launch([["optimizer=adam"]], initial_job_idx=0)
    flags = [line for line in (tmp_path / "submitted.sh").read_text().splitlines() if line.startswith("#SBATCH")]
    for flag in ("--nodes=2", "--ntasks-per-node=4", "--gpus-per-node=4", "--time=240", "--signal=USR2@120",
                 "--requeue", "--job-name=lit_train"):
        assert f"#SBATCH {flag}" in flags, flags


def test_slurm_preset_is_found_by_another_hydra_app(tmp_path):
    """Through lit_train's search-path plugin, not only as part of lit_train's own config."""
    (tmp_path / "config.yaml").write_text("trainer:\n  devices: 8\n  num_nodes: 1\n")
    with initialize_config_dir(str(tmp_path), version_base="1.3"):
        cfg = compose("config", overrides=["hydra/launcher=slurm"], return_hydra_config=True)
    assert cfg.hydra.launcher.tasks_per_node == 8
    assert cfg.hydra.launcher.additional_parameters.requeue is True


def test_slurm_preset_needs_a_number_of_devices(tmp_path):
    result = run_cli("-m", "hydra/launcher=slurm", "optimizer=adam,adamw", cwd=tmp_path)
    assert result.returncode == 2
    assert result.stderr.splitlines()[0].startswith("error: hydra.launcher.")
    assert "'auto'" in result.stderr and "Traceback" not in result.stderr
    assert list(tmp_path.iterdir()) == []


def test_slurm_preset_without_resume_says_a_requeued_job_would_start_over(capsys):
    problems = launcher_problems(compose_with_hydra([*MULTI_NODE[:5], "optimizer=adam"]))
    assert problems == []
    assert "resume=auto" in capsys.readouterr().err


LAUNCHER_VARIABLES = ("TORCHELASTIC_RUN_ID", "SLURM_NTASKS", "OMPI_COMM_WORLD_SIZE", "LSB_JOBID", "MASTER_ADDR")


def test_several_nodes_without_a_launcher_are_refused_instead_of_waiting_forever(tmp_path):
    env = {name: value for name, value in os.environ.items() if name not in LAUNCHER_VARIABLES}
    result = subprocess.run([sys.executable, "-m", "lit_train", "trainer.num_nodes=2", f"hydra.run.dir={tmp_path / 'run'}"],
                            cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120)
    assert result.returncode == 2
    assert result.stderr.splitlines()[0].startswith("error: trainer.num_nodes: 2 nodes need a multi-node launcher")
    assert not (tmp_path / "run").exists()


def test_several_nodes_under_a_launcher_or_a_slurm_sweep_pass_the_check(monkeypatch):
    from lit_train.config.launcher import multi_node_problems

    for name in LAUNCHER_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    sweep = compose_with_hydra(["hydra/launcher=basic", "trainer.num_nodes=2"])
    assert launcher_problems(sweep)[0].startswith("trainer.num_nodes: 2 nodes need a multi-node launcher")
    assert launcher_problems(compose_with_hydra(MULTI_NODE)) == []  # submitit starts the tasks on every node
    monkeypatch.setenv("MASTER_ADDR", "10.0.0.1")
    assert multi_node_problems(compose_with_hydra(["trainer.num_nodes=2"])) == []
