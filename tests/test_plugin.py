"""lit_train as a Hydra plugin: its groups in other apps, and configs inside the wheel."""

import re
import site
import subprocess
import sys
import textwrap
import venv
from pathlib import Path

import pytest
import yaml
from support import ROOT


def _readme_defaults() -> str:
    """The defaults list that README.md's section on other Hydra apps shows, as written there."""
    section = (ROOT / "README.md").read_text().split("## In other Hydra apps", 1)[1].split("\n## ", 1)[0]
    (block,) = re.findall(r"```yaml\n(.*?)```", section, flags=re.S)
    return block


def test_foreign_hydra_app_picks_lit_train_groups(tmp_path):
    defaults = _readme_defaults()
    picked = [next(iter(entry.items())) for entry in yaml.safe_load(defaults)["defaults"] if isinstance(entry, dict)]
    targets = {"lamb": "pytorch_optimizer.Lamb", "cosine": "torch.optim.lr_scheduler.CosineAnnealingLR"}
    assert picked == [("optimizer", "lamb"), ("scheduler", "cosine")]
    (tmp_path / "conf").mkdir()
    (tmp_path / "conf" / "config.yaml").write_text(defaults)
    (tmp_path / "app.py").write_text(textwrap.dedent("""
        import hydra
        from omegaconf import OmegaConf

        @hydra.main(version_base="1.3", config_path="conf", config_name="config")
        def main(cfg):
            print(cfg.optimizer._target_, cfg.scheduler._target_)

        main()
    """))
    result = subprocess.run([sys.executable, "app.py", f"hydra.run.dir={tmp_path / 'out'}"], cwd=tmp_path,
                            capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == [targets[option] for _, option in picked]


@pytest.mark.slow
def test_non_editable_install_runs_from_any_directory(tmp_path):
    """`pip install .` into a fresh environment ships the configs; the job runs outside the checkout."""
    env_dir = tmp_path / "env"
    venv.create(env_dir, with_pip=True)
    python = env_dir / "bin" / "python"
    _see_dependencies_of_this_interpreter(python)
    for package in (ROOT / "callbacks", ROOT):
        subprocess.run([python, "-m", "pip", "install", "-q", "--no-deps", str(package)],
                       check=True, capture_output=True)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    probe = subprocess.run([python, "-c", "import lit_train.conf, lit_callbacks; print(lit_train.conf.__file__)"],
                           cwd=elsewhere, capture_output=True, text=True, check=True)
    assert str(env_dir) in probe.stdout
    result = subprocess.run([python, "-m", "lit_train", "debug=fast_dev_run", f"hydra.run.dir={elsewhere / 'run'}"],
                            cwd=elsewhere, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr[-3000:]
    assert (elsewhere / "run" / "summary.json").is_file()


def _see_dependencies_of_this_interpreter(python) -> None:
    """Lets the environment of ``python`` import what the running interpreter has installed.

    ``system_site_packages`` would reach the base interpreter, which inside a virtual environment
    holds none of the dependencies. A path line in a ``.pth`` file adds a folder without running
    that folder's own ``.pth`` files, so the running interpreter's editable install of this
    checkout stays out of sight and lit_train can only come from the new environment.
    """
    purelib = subprocess.run([python, "-c", "import sysconfig; print(sysconfig.get_path('purelib'))"],
                             capture_output=True, text=True, check=True).stdout.strip()
    (Path(purelib) / "_dependencies.pth").write_text("\n".join(site.getsitepackages()) + "\n")
