"""Private Lightning and torch names: all resolve here, all go through ``_compat``, and a missing one fails loudly."""

import ast
import importlib
import inspect
import pkgutil
import re
import subprocess
import sys
from pathlib import Path

import lightning
import lightning.pytorch as L
import pytest
import torch
from _tiny import tiny_trainer
from torch import nn
from torch.optim import lr_scheduler as sched
from torch.utils.data import DataLoader

import lit_callbacks
from lit_callbacks import _compat

PACKAGE = Path(lit_callbacks.__file__).parent
MODULES = sorted(f"lit_callbacks.{info.name}" for info in pkgutil.iter_modules([str(PACKAGE)]))


def is_private(name: str) -> bool:
    return name.startswith("_") and not (name.startswith("__") and name.endswith("__"))


def resolve(label: str):
    """``a.b.C._d`` imported as module ``a.b`` (the longest importable prefix), then attributes ``C._d``."""
    parts = label.split(".")
    for cut in range(len(parts) - 1, 0, -1):
        try:
            target = importlib.import_module(".".join(parts[:cut]))
        except ImportError:
            continue
        for part in parts[cut:]:
            target = getattr(target, part)
        return target
    raise ImportError(label)


def fused(optimizer: type) -> torch.optim.Optimizer:
    return optimizer([nn.Parameter(torch.ones(2))], lr=1.0, fused=True)


def found_inf_drops_the_fused_step() -> bool:
    optimizer = fused(torch.optim.Adam)
    param = optimizer.param_groups[0]["params"][0]
    param.grad = torch.ones(2)
    optimizer.found_inf = torch.ones(())
    optimizer.step()
    return torch.equal(param, torch.ones(2))


def sgd() -> torch.optim.Optimizer:
    return torch.optim.SGD([nn.Parameter(torch.zeros(1))], lr=1.0)


def nested(kind: type) -> bool:
    optimizer = sgd()
    inner = [sched.ConstantLR(optimizer, 0.5, total_iters=1), sched.ExponentialLR(optimizer, 0.9)]
    outer = kind(optimizer, inner, milestones=[1]) if kind is sched.SequentialLR else kind(inner, optimizer)
    return list(outer._schedulers) == inner


def last_lr_is_what_get_last_lr_returns() -> bool:
    scheduler = sched.StepLR(sgd(), step_size=1)
    return scheduler._last_lr is scheduler.get_last_lr()


# Instance attributes exist only on objects: each is checked on a fresh one.
ON_INSTANCES = {
    "lightning.pytorch.core.module.LightningModule._current_fx_name": lambda: hasattr(
        L.LightningModule(), "_current_fx_name"
    ),
    "lightning.pytorch.trainer.trainer.Trainer._logger_connector": lambda: hasattr(tiny_trainer(), "_logger_connector"),
    "torch.optim.adam.Adam._step_supports_amp_scaling": lambda: fused(torch.optim.Adam)._step_supports_amp_scaling,
    "torch.optim.sgd.SGD._step_supports_amp_scaling": lambda: fused(torch.optim.SGD)._step_supports_amp_scaling,
    "torch.optim.adam.Adam.found_inf": found_inf_drops_the_fused_step,
    "torch.utils.data.dataloader.DataLoader._iterator": lambda: hasattr(DataLoader([1.0]), "_iterator"),
    "torch.optim.lr_scheduler.SequentialLR._schedulers": lambda: nested(sched.SequentialLR),
    "torch.optim.lr_scheduler.ChainedScheduler._schedulers": lambda: nested(sched.ChainedScheduler),
    "torch.optim.lr_scheduler.LRScheduler._last_lr": last_lr_is_what_get_last_lr_returns,
}


def test_the_instance_checks_are_for_names_compat_uses():
    assert set(ON_INSTANCES) <= set(_compat.PRIVATE_NAMES)


@pytest.mark.parametrize("label", _compat.PRIVATE_NAMES)
def test_every_private_name_resolves_on_the_installed_versions(label):
    if label in ON_INSTANCES:
        assert ON_INSTANCES[label]()
    else:
        assert resolve(label) is not None


@pytest.mark.parametrize(
    ("remove", "label"),
    [
        ("import lightning.pytorch.utilities.exceptions as m; del m._TunerExitException",
         "lightning.pytorch.utilities.exceptions._TunerExitException"),
        ("import lightning.pytorch as L; L.LightningModule.__init__ = lambda self: None",
         "lightning.pytorch.core.module.LightningModule._current_fx_name"),
    ],
    ids=["attribute", "instance-attribute"],
)
def test_a_missing_private_name_fails_the_import_naming_it_and_the_lightning_version(remove, label):
    result = subprocess.run([sys.executable, "-c", f"{remove}; import lit_callbacks"], capture_output=True, text=True)
    assert result.returncode != 0
    message = (
        f"ImportError: lit_callbacks uses the private name `{label}`, which the installed lightning"
        f" {lightning.__version__} (torch {torch.__version__}) does not have."
    )
    assert message in result.stderr


def private_uses(path: Path, own: set[str]) -> list[tuple[int, str]]:
    """``(line, name)`` of each private name ``path`` imports, reads or writes that is not in ``own``, and of each
    private name it spells as a string (``getattr(obj, "_name")``), its own or not."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom) and node.level == 0:
            names = [*node.module.split("."), *(alias.name for alias in node.names)]
        elif isinstance(node, ast.Import):
            names = [part for alias in node.names for part in alias.name.split(".")]
        elif isinstance(node, ast.Attribute):
            names = [node.attr]
        elif isinstance(node, ast.Constant) and isinstance(node.value, str) and node.value.isidentifier():
            found += [(node.lineno, node.value)] if is_private(node.value) else []
            continue
        else:
            continue
        found.extend((node.lineno, name) for name in names if is_private(name) and name not in own)
    return sorted(found)


def own_private_names(paths: list[Path]) -> set[str]:
    """Private names lit_callbacks defines: functions, classes, module globals and ``self._x`` attributes."""
    names = set()
    for path in paths:
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, (ast.FunctionDef, ast.ClassDef)):
                names.add(node.name)
            elif isinstance(node, ast.Name) and isinstance(node.ctx, ast.Store):
                names.add(node.id)
            elif (
                isinstance(node, ast.Attribute)
                and isinstance(node.ctx, ast.Store)
                and isinstance(node.value, ast.Name)
                and node.value.id == "self"
            ):
                names.add(node.attr)
    return {name for name in names if is_private(name)}


def test_no_module_but_compat_uses_a_private_name_of_lightning_or_torch():
    paths = sorted(path for path in PACKAGE.glob("*.py") if path.name != "_compat.py")
    own = own_private_names(paths)
    uses = [f"{path.name}:{line}: {name}" for path in paths for line, name in private_uses(path, own)]
    assert uses == []


def test_the_scan_catches_the_private_uses_it_is_for(tmp_path):
    source = tmp_path / "sample.py"
    source.write_text(
        "from lightning.pytorch.utilities.exceptions import _TunerExitException\n"
        "trainer._logger_connector.reset_results()\n"
        "pl_module._current_fx_name = 'training_step'\n"
        "supported = getattr(optimizer, '_step_supports_amp_scaling', False)\n"
        "norms = torch._foreach_norm(grads)\n"
        "self._mine = 1\n"
    )
    names = [name for _, name in private_uses(source, own_private_names([source]))]
    assert names == [
        "_TunerExitException", "_logger_connector", "_current_fx_name", "_step_supports_amp_scaling", "_foreach_norm"
    ]


def test_no_class_overrides_a_private_method_of_lightning_or_torch():
    overrides = []
    for module_name in MODULES:
        if module_name == "lit_callbacks._compat":
            continue
        for cls in vars(importlib.import_module(module_name)).values():
            if not (inspect.isclass(cls) and cls.__module__ == module_name):
                continue
            for name in filter(is_private, vars(cls)):
                for base in cls.__mro__[1:]:
                    if not base.__module__.startswith("lit_callbacks") and name in vars(base):
                        overrides.append(f"{cls.__qualname__}.{name} overrides {base.__module__}.{base.__qualname__}")
    assert overrides == []


def test_lightning_is_capped_below_the_next_untested_minor_version():
    pyproject = (PACKAGE.parents[1] / "pyproject.toml").read_text(encoding="utf-8")
    assert f'"{_compat.LIGHTNING_REQUIREMENT}"' in pyproject
    major, minor = (int(part) for part in lightning.__version__.split(".")[:2])
    assert re.fullmatch(rf"lightning>=[\d.]+,<{major}\.{minor + 1}", _compat.LIGHTNING_REQUIREMENT)
