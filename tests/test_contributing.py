"""CONTRIBUTING.md's checklists are exact: the files they name are all a new optimizer or scheduler needs."""

import math

from support import FAST, ROOT, compose_config, read_summary

from lit_train.config import specs
from lit_train.config.rules import COUNT, FLAG, KERNEL, NON_NEGATIVE, POSITIVE, ListOf, Number
from lit_train.config.validate import validate
from lit_train.training.run import run

CONTRIBUTING = (ROOT / "CONTRIBUTING.md").read_text()


def _checklist(title: str) -> str:
    return CONTRIBUTING.split(f"### {title}\n")[1].split("###")[0]


def _new_option(tmp_path, group: str, name: str, yaml: str) -> str:
    """A YAML file in a config folder of its own, as a contributor adds it to conf/<group>/."""
    (tmp_path / "conf" / group).mkdir(parents=True)
    (tmp_path / "conf" / group / f"{name}.yaml").write_text(yaml)
    return f"hydra.searchpath=[file://{tmp_path / 'conf'}]"


def test_a_new_optimizer_needs_its_yaml_and_its_spec(tmp_path, monkeypatch):
    assert "conf/optimizer/<name>.yaml" in _checklist("Add an optimizer")
    assert "`OPTIMIZERS` entry" in _checklist("Add an optimizer")
    searchpath = _new_option(tmp_path, "optimizer", "adamax", (
        "# Adamax: Adam with the infinity norm.\n_target_: torch.optim.Adamax\n_partial_: true\nlr: 0.002\n"
        "betas: [0.9, 0.999]\nweight_decay: 0.0\n"))
    monkeypatch.setitem(specs.OPTIMIZERS, "torch.optim.Adamax", specs.OptimizerSpec({
        "lr": POSITIVE, "betas": ListOf(Number(0, 1, high_open=True), lengths=(2,)), "eps": POSITIVE,
        "weight_decay": NON_NEGATIVE, "foreach": KERNEL, "maximize": FLAG, "differentiable": FLAG,
        "capturable": FLAG,
    }))
    cfg = compose_config([searchpath, "optimizer=adamax", *FAST], run_dir=tmp_path / "run")
    assert validate(cfg) == []
    assert math.isfinite(run(cfg))
    assert read_summary(tmp_path / "run")["lr"] == 0.002


def test_a_new_scheduler_needs_its_yaml_and_its_spec(tmp_path, monkeypatch):
    assert "conf/scheduler/<name>.yaml" in _checklist("Add an LR scheduler")
    assert "`SCHEDULERS` entry" in _checklist("Add an LR scheduler")
    searchpath = _new_option(tmp_path, "scheduler", "polynomial", (
        "# Polynomial decay to zero over the run.\n_target_: torch.optim.lr_scheduler.PolynomialLR\n"
        "_partial_: true\npower: 2.0\n"))
    monkeypatch.setitem(specs.SCHEDULERS, "torch.optim.lr_scheduler.PolynomialLR", specs.SchedulerSpec(
        {"total_iters": COUNT, "power": POSITIVE}, length_arg="total_iters", interval="step"))
    cfg = compose_config([searchpath, "scheduler=polynomial", *FAST], run_dir=tmp_path / "run")
    assert validate(cfg) == []
    run(cfg)
    assert read_summary(tmp_path / "run")["status"] == "completed"
