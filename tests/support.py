"""Helpers shared by the test modules: composing configs and running the CLI."""

import json
import os
import subprocess
import sys
from pathlib import Path

from hydra import compose as hydra_compose
from hydra import initialize_config_module
from hydra.core.global_hydra import GlobalHydra
from omegaconf import DictConfig

from lit_train.config.compose import compose_config as compose

ROOT = Path(__file__).resolve().parents[1]
#: Overrides that make any run a few optimizer steps long.
FAST = [
    "trainer.accelerator=cpu",
    "trainer.devices=1",
    "trainer.max_epochs=1",
    "trainer.limit_train_batches=2",
    "trainer.limit_val_batches=1",
    "trainer.limit_test_batches=1",
    "trainer.log_every_n_steps=1",
]


def compose_config(overrides: list[str], run_dir: Path | str | None = None) -> DictConfig:
    """The composed lit_train config, as the CLI would build it (with ``run_dir`` pinned)."""
    return compose(overrides + ([f"run_dir={run_dir}"] if run_dir is not None else []))


def compose_with_hydra(overrides: list[str] | None = None) -> DictConfig:
    """The composed config with Hydra's own node (run and sweep dirs, launcher, sweeper), as Hydra's callbacks get it."""
    GlobalHydra.instance().clear()
    with initialize_config_module("lit_train.conf", version_base="1.3"):
        return hydra_compose("config", overrides=overrides or [], return_hydra_config=True)


def group_options(group: str) -> list[str]:
    GlobalHydra.instance().clear()
    with initialize_config_module("lit_train.conf", version_base="1.3"):
        return GlobalHydra.instance().config_loader().get_group_options(group)


def run_cli(*args: str, cwd: Path, env: dict | None = None, timeout: float = 300) -> subprocess.CompletedProcess:
    """Runs ``python -m lit_train ARGS`` in a subprocess."""
    full_env = {**os.environ, "PYTHONWARNINGS": "ignore", **(env or {})}
    return subprocess.run(
        [sys.executable, "-m", "lit_train", *args], cwd=cwd, capture_output=True, text=True, timeout=timeout, env=full_env
    )


def read_summary(run_dir: Path) -> dict:
    return json.loads((run_dir / "summary.json").read_text())
