"""lit_train's optimizer and scheduler groups in another Hydra app: every option builds with plain
``hydra.utils.instantiate``, as the README's two lines do, and lit_train's own settings stay outside them."""

import pytest
import torch
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from hydra.utils import instantiate
from support import group_options

from lit_train.config.specs import OWN_SETTINGS, SCHEDULERS


@pytest.fixture
def foreign_app(tmp_path):
    """A Hydra app of its own that picks lit_train's groups through the search-path plugin."""
    (tmp_path / "config.yaml").write_text("defaults:\n  - optimizer: sgd\n  - scheduler: none\n  - _self_\n")
    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=str(tmp_path), version_base="1.3"):
        yield lambda *overrides: compose("config", overrides=list(overrides))
    GlobalHydra.instance().clear()


@pytest.mark.parametrize("option", group_options("optimizer"))
def test_every_optimizer_option_builds_with_plain_instantiate(foreign_app, option):
    cfg = foreign_app(f"optimizer={option}")
    assert not OWN_SETTINGS.keys() & cfg.optimizer.keys()
    model = torch.nn.Linear(3, 2)
    optimizer = instantiate(cfg.optimizer)(model.parameters())
    model(torch.ones(4, 3)).sum().backward()
    optimizer.step()
    assert optimizer.param_groups[0]["lr"] == cfg.optimizer.lr


@pytest.mark.parametrize("option", [o for o in group_options("scheduler") if o != "none"])
def test_every_scheduler_option_builds_with_plain_instantiate(foreign_app, option):
    cfg = foreign_app("optimizer=adamw", f"scheduler={option}")
    assert not OWN_SETTINGS.keys() & cfg.scheduler.keys()
    optimizer = instantiate(cfg.optimizer)(torch.nn.Linear(3, 2).parameters())
    length_arg = SCHEDULERS[cfg.scheduler._target_].length_arg
    scheduler = instantiate(cfg.scheduler, **({length_arg: 100} if length_arg else {}))(optimizer)
    optimizer.step()
    scheduler.step(1.0) if isinstance(scheduler, torch.optim.lr_scheduler.ReduceLROnPlateau) else scheduler.step()
    assert optimizer.param_groups[0]["lr"] > 0
