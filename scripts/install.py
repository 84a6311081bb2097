"""Installs lit_train and lit_callbacks (editable, with test extras) into the active Python, if needed.

Quick when everything is in place: it only checks that both packages import
from this checkout and that their dependencies are installed. An installed
torch is never replaced. Without torch and without a GPU it installs a CPU
build, so a CPU machine does not download gigabytes of CUDA libraries.

Usage: ``python scripts/install.py`` (``make install`` runs it); ``--check`` only reports.
"""

import importlib.metadata
import importlib.util
import os
import pkgutil
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
#: Import name -> where it must come from (this checkout) for the install to count.
LOCAL_PACKAGES = {
    "lit_train": ROOT / "src" / "lit_train",
    "lit_train.conf": ROOT / "conf",
    "lit_callbacks": ROOT / "callbacks" / "src" / "lit_callbacks",
    "hydra_plugins.lit_train_searchpath": ROOT / "src" / "hydra_plugins" / "lit_train_searchpath",
}
#: Distributions lit_train and its tests need, besides torch.
REQUIRED = (
    "lightning", "hydra-core", "omegaconf", "torchmetrics", "scikit-learn", "pytorch-optimizer", "matplotlib",
    "optuna", "cmaes", "pytest", "pytest-xdist", "tensorboard", "mlflow-skinny", "wandb", "hydra-submitit-launcher",
    "psycopg", "psycopg-binary",
)
#: A CPU build of torch: first a local-version pin (found by pip where a CPU wheel is
#: offered, e.g. a find-links folder), then PyTorch's CPU index.
TORCH_CPU = os.environ.get("TORCH_CPU_SPEC", "torch==2.13.0+cpu")
TORCH_CPU_INDEX = os.environ.get("TORCH_CPU_INDEX", "https://download.pytorch.org/whl/cpu")


def _origin(module: str) -> Path | None:
    try:
        spec = importlib.util.find_spec(module)
    except ModuleNotFoundError:
        return None
    # A namespace package (no origin) means a stale install that no longer maps the package.
    if spec is None or spec.origin in (None, "namespace"):
        return None
    return Path(spec.origin).resolve()


def _installed(distribution: str) -> bool:
    try:
        importlib.metadata.version(distribution)
    except importlib.metadata.PackageNotFoundError:
        return False
    return True


def _plugin_discoverable() -> bool:
    try:
        import hydra_plugins
    except ImportError:
        return False
    return any(m.name == "lit_train_searchpath" for m in pkgutil.iter_modules(hydra_plugins.__path__))


def missing() -> list[str]:
    """What is not installed as it should be (empty when all is in place)."""
    problems = []
    for module, folder in LOCAL_PACKAGES.items():
        origin = _origin(module)
        if origin is None or folder.resolve() not in (origin, *origin.parents):
            problems.append(f"{module} (from {folder})")
    if not _plugin_discoverable():
        problems.append("Hydra plugin discovery of hydra_plugins.lit_train_searchpath")
    problems += [f"console script {name}" for name in _stale_console_scripts()]
    problems += [name for name in ("torch", *REQUIRED) if not _installed(name)]
    return problems


def _stale_console_scripts() -> list[str]:
    """lit-train's console scripts whose entry point no longer imports (an install from before a move)."""
    stale = []
    for entry_point in importlib.metadata.entry_points(group="console_scripts"):
        if entry_point.dist is not None and entry_point.dist.name == "lit-train":
            try:
                entry_point.load()
            except (ImportError, AttributeError):
                stale.append(entry_point.name)
    return stale


def _pip(*args: str) -> int:
    command = [sys.executable, "-m", "pip", "install", "--disable-pip-version-check", *args]
    print("+", " ".join(command), flush=True)
    return subprocess.call(command)


def _install_torch() -> None:
    if shutil.which("nvidia-smi"):
        if _pip("torch"):
            sys.exit("could not install torch")
        return
    if _pip(TORCH_CPU) and _pip("torch", "--index-url", TORCH_CPU_INDEX):
        sys.exit(f"could not install a CPU build of torch ({TORCH_CPU}, or from {TORCH_CPU_INDEX})")


def main() -> None:
    todo = missing()
    if not todo:
        return
    print(f"installing: {', '.join(todo)}", flush=True)
    if not _installed("torch"):
        _install_torch()
    with tempfile.NamedTemporaryFile("w", suffix=".txt", delete=False) as pin:
        # Whatever the dependencies ask, keep the torch that is installed.
        pin.write(f"torch=={importlib.metadata.version('torch')}\n")
    try:
        # "compat" editable installs put src/ on sys.path, which Hydra's plugin
        # discovery (a walk over the hydra_plugins namespace) needs.
        compat = "--config-settings=editable_mode=compat"
        code = _pip("-c", pin.name, compat, "-e", str(ROOT / "callbacks"), "-e", f"{ROOT}[test]")
    finally:
        os.unlink(pin.name)
    if code:
        sys.exit(code)
    # A fresh interpreter: this one's import system still holds the old editable finders.
    if subprocess.call([sys.executable, __file__, "--check"]):
        sys.exit(1)


if __name__ == "__main__":
    if sys.argv[1:] == ["--check"]:
        if still := missing():
            sys.exit(f"still missing after install: {', '.join(still)}")
    else:
        main()
