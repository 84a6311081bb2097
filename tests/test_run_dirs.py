"""Where runs go: default directories that never collide, and one directory per run for all its processes."""

import os
import re
import subprocess
import sys
from datetime import timedelta
from pathlib import Path

import pytest
from omegaconf import OmegaConf
from support import compose_with_hydra, read_summary

from lit_train.config.overrides import quote
from lit_train.launch import torchrun

#: A default directory name: date, then time to the microsecond and the process id.
STAMP = r"\d{4}-\d\d-\d\d/\d\d-\d\d-\d\d-\d{6}-(\d+)"


def _hydra_dirs(overrides: list[str] | None = None) -> tuple[str, str]:
    cfg = compose_with_hydra(overrides or [])
    return str(cfg.hydra.run.dir), str(cfg.hydra.sweep.dir)


def test_default_dirs_hold_the_time_to_the_microsecond_and_the_pid():
    run_dir, sweep_dir = _hydra_dirs()
    run_match = re.fullmatch(rf"outputs/runs/{STAMP}", run_dir)
    sweep_match = re.fullmatch(rf"outputs/multiruns/{STAMP}", sweep_dir)
    assert run_match and sweep_match, (run_dir, sweep_dir)
    assert run_match[1] == sweep_match[1] == str(os.getpid())


def test_default_dirs_sort_by_start_time():
    first, _ = _hydra_dirs()
    second, _ = _hydra_dirs()
    assert first < second


def test_plain_compose_resolves_the_default_dirs_without_the_cli(tmp_path):
    """Hydra's plugin discovery registers the resolver, so compose() works in any process."""
    code = ("from hydra import compose, initialize_config_module\n"
            "with initialize_config_module('lit_train.conf', version_base='1.3'):\n"
            "    print(compose('config', return_hydra_config=True).hydra.run.dir)\n")
    result = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr[-3000:]
    assert re.fullmatch(rf"outputs/runs/{STAMP}\n", result.stdout)


def test_a_pickled_sweep_config_resolves_to_the_same_dir_elsewhere():
    """A launcher that ships the sweep's config to another process (submitit) gets the same sweep dir."""
    import cloudpickle

    cfg = compose_with_hydra()
    sweep_dir = str(cfg.hydra.sweep.dir)
    code = ("import sys, cloudpickle, lit_train.launch.cli\n"
            "from hydra.core.utils import setup_globals\n"
            "setup_globals()\n"
            "print(cloudpickle.loads(sys.stdin.buffer.read()).hydra.sweep.dir)\n")
    result = subprocess.run([sys.executable, "-c", code], input=cloudpickle.dumps(cfg), capture_output=True)
    assert result.returncode == 0, result.stderr.decode()[-3000:]
    assert result.stdout.decode().strip() == sweep_dir


@pytest.mark.slow
def test_four_runs_started_at_once_get_four_directories(tmp_path):
    command = [sys.executable, "-m", "lit_train", "debug=fast_dev_run", "logger=none", "test=false",
               "callbacks.progress_bar=null"]
    env = {**os.environ, "PYTHONWARNINGS": "ignore", "OMP_NUM_THREADS": "1"}
    processes = [subprocess.Popen(command, cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                  text=True) for _ in range(4)]
    outputs = [process.communicate(timeout=300) for process in processes]
    assert all(process.returncode == 0 for process in processes), [err[-2000:] for _, err in outputs]
    run_dirs = sorted(path.parent for path in (tmp_path / "outputs" / "runs").glob("*/*/summary.json"))
    assert len(run_dirs) == 4
    assert sorted({read_summary(d)["run_dir"] for d in run_dirs}) == [str(d) for d in run_dirs]
    assert sorted(tmp_path.rglob(".hydra")) == [d / ".hydra" for d in run_dirs]


# --- torchrun workers agree on one directory ---------------------------------------------------------------


@pytest.fixture
def torchrun_store(monkeypatch):
    """A TCP store standing in for torchrun's agent store, and the variables torchrun gives worker 1."""
    from torch.distributed import TCPStore

    store = TCPStore("127.0.0.1", 0, is_master=True, wait_for_workers=False, timeout=timedelta(seconds=30))
    for name, value in {"TORCHELASTIC_RUN_ID": "test", "TORCHELASTIC_USE_AGENT_STORE": "True", "RANK": "1",
                        "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(store.port)}.items():
        monkeypatch.setenv(name, value)
    yield store
    torchrun._stores.clear()


def test_outside_torchrun_nothing_changes(monkeypatch):
    monkeypatch.delenv("TORCHELASTIC_RUN_ID", raising=False)
    cfg = compose_with_hydra(["hydra.run.dir=outputs/mine"])
    torchrun.share_dir(cfg, "hydra.run.dir")
    assert (cfg.hydra.run.dir, cfg.hydra.output_subdir, cfg.hydra.job.name) == ("outputs/mine", ".hydra", "lit_train")


def test_a_torchrun_worker_takes_the_directory_proposed_first(torchrun_store):
    torchrun_store.set("lit_train/hydra.run.dir", "outputs/runs/chosen")
    cfg = compose_with_hydra(["optimizer=adam"])
    torchrun.share_dir(cfg, "hydra.run.dir")
    assert (cfg.hydra.run.dir, cfg.hydra.output_subdir, cfg.hydra.job.name) == (
        "outputs/runs/chosen", None, "lit_train_rank1")


def test_the_first_torchrun_worker_proposes_its_own_directory(torchrun_store, monkeypatch):
    monkeypatch.setenv("RANK", "0")
    cfg = compose_with_hydra(["hydra.run.dir=outputs/${now:%f}/${lit_train.pid:}"])
    torchrun.share_dir(cfg, "hydra.run.dir")
    assert re.fullmatch(rf"outputs/\d{{6}}/{os.getpid()}", cfg.hydra.run.dir)
    assert torchrun_store.get("lit_train/hydra.run.dir").decode() == cfg.hydra.run.dir
    assert (cfg.hydra.output_subdir, cfg.hydra.job.name) == (".hydra", "lit_train")


def test_torchrun_workers_of_a_sweep_agree_on_the_sweep_dir(torchrun_store):
    torchrun_store.set("lit_train/hydra.sweep.dir", "outputs/multiruns/chosen")
    cfg = compose_with_hydra([])
    torchrun.share_dir(cfg, "hydra.sweep.dir")
    assert cfg.hydra.sweep.dir == "outputs/multiruns/chosen"


def test_quote_keeps_a_path_one_override_value(tmp_path):
    from hydra.core.override_parser.overrides_parser import OverridesParser

    path = str(tmp_path / "a b,c=d'e")
    (override,) = OverridesParser.create().parse_overrides([f"hydra.run.dir={quote(path)}"])
    assert override.value() == path
    assert Path(OmegaConf.create({"d": override.value()}).d) == Path(path)
