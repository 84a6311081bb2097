"""The training loops that the benchmarks compare, each timed over the same optimizer steps.

* ``raw``: a hand-written PyTorch loop over slices of tensors shuffled once per epoch.
* ``plain_lightning``: a minimal LightningModule logging its loss every step, fed by
  ``DataLoader(TensorDataset)``, with Lightning's default Trainer settings.
* ``lightning_floor``: the least a Lightning Trainer can run per step: the same minimal module
  without logging, lit_train's tensor loader, no callbacks, logger, progress bar or profiler.
* ``lit_train``: the real ``lit_train.training.run.run`` on a composed config, as a user runs it.

All of them train the same network (same init), with AdamW over the same parameter groups,
run by the same kernel (lit_train's default ``optimization.kernel=auto``), and a per-step cosine schedule, on the same training split, with validation off. Each
returns the seconds between the start and the end of its training loop, so set-up
(imports, data, Trainer construction) is not part of the comparison.
"""

import contextlib
import functools
import io
import logging
import tempfile
import time
import warnings
from dataclasses import dataclass, field

import lightning.pytorch as L
import torch
from hydra.utils import instantiate
from omegaconf import OmegaConf
from torch.nn import functional as F
from torch.utils.data import DataLoader, TensorDataset

from lit_train.config.compose import compose_config
from lit_train.data.loader import TensorLoader
from lit_train.training.optim import kernel_arguments, param_groups
from lit_train.training.profiler import NoProfiler

LR, WEIGHT_DECAY = 1e-3, 0.01
#: The logger of Lightning's ``seed_everything``.
SEED_LOGGER = "lightning.fabric.utilities.seed"

# Lightning's start-up notes and warnings (no validation loop, few workers) would bury the tables,
# and so would the "Seed set to 0" that every lit_train run logs when it seeds.
logging.getLogger("lightning.pytorch").setLevel(logging.ERROR)
logging.getLogger(SEED_LOGGER).setLevel(logging.WARNING)
warnings.filterwarnings("ignore")


@dataclass(frozen=True)
class Workload:
    """One training problem: lit_train overrides that pick data and model, plus the step count."""

    name: str
    overrides: tuple[str, ...]
    steps: int
    #: Extra overrides for the lit_train contender only (e.g. a callback set to compare).
    lit_overrides: tuple[str, ...] = field(default=())


@functools.cache
def training_split(overrides: tuple[str, ...]) -> tuple[torch.Tensor, torch.Tensor]:
    datamodule = instantiate(compose_config(list(overrides)).data, _convert_="all")
    datamodule.setup("fit")
    return datamodule.splits["train"]


def make_net(overrides: tuple[str, ...]) -> torch.nn.Module:
    torch.manual_seed(0)
    return instantiate(compose_config(list(overrides)).model.net, _convert_="all")


def batch_size(overrides: tuple[str, ...]) -> int:
    return int(compose_config(list(overrides)).data.batch_size)


def _optimizer(net: torch.nn.Module, steps: int):
    groups = param_groups(net, WEIGHT_DECAY)
    optimizer = torch.optim.AdamW(groups, lr=LR, **kernel_arguments(torch.optim.AdamW, groups))
    return optimizer, torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=steps)


def raw(workload: Workload) -> float:
    """The hand-written loop: shuffle the tensors once per epoch, then slice batches."""
    x, y = training_split(workload.overrides)
    net, size = make_net(workload.overrides), batch_size(workload.overrides)
    optimizer, scheduler = _optimizer(net, workload.steps)
    generator = torch.Generator().manual_seed(0)
    step = 0
    started = time.perf_counter()
    while step < workload.steps:
        order = torch.randperm(len(x), generator=generator)
        xs, ys = x[order], y[order]
        for start in range(0, len(x), size):
            loss = F.cross_entropy(net(xs[start : start + size]), ys[start : start + size])
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            scheduler.step()
            step += 1
            if step == workload.steps:
                break
    return time.perf_counter() - started


class LoopTimer(L.Callback):
    """Seconds from the start to the end of the training loop."""

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self.started = time.perf_counter()

    def on_train_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        LoopTimer.last = time.perf_counter() - self.started


class _PlainModule(L.LightningModule):
    def __init__(self, net: torch.nn.Module, steps: int) -> None:
        super().__init__()
        self.net, self.steps = net, steps

    def training_step(self, batch, batch_idx):
        x, y = batch
        loss = F.cross_entropy(self.net(x), y)
        self.log("train_loss", loss)
        return loss

    def configure_optimizers(self):
        optimizer, scheduler = _optimizer(self.net, self.steps)
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "step"}}


def plain_lightning(workload: Workload) -> float:
    """Lightning as the docs show it: DataLoader(TensorDataset), default Trainer, no validation."""
    x, y = training_split(workload.overrides)
    loader = DataLoader(TensorDataset(x, y), batch_size=batch_size(workload.overrides), shuffle=True)
    module = _PlainModule(make_net(workload.overrides), workload.steps)
    with tempfile.TemporaryDirectory() as root:
        trainer = L.Trainer(max_steps=workload.steps, limit_val_batches=0, accelerator="cpu", devices=1,
                            default_root_dir=root, enable_checkpointing=False, callbacks=[LoopTimer()],
                            enable_model_summary=False)
        with contextlib.redirect_stdout(io.StringIO()):  # the progress bar, as for lit_train below
            trainer.fit(module, train_dataloaders=loader)
    return LoopTimer.last


class _SilentModule(_PlainModule):
    def training_step(self, batch, batch_idx):
        x, y = batch
        return F.cross_entropy(self.net(x), y)


def lightning_floor(workload: Workload) -> float:
    """Lightning's own loop and nothing else: what any Trainer-based step costs at least."""
    x, y = training_split(workload.overrides)
    loader = TensorLoader(x, y, batch_size=batch_size(workload.overrides), shuffle=True)
    module = _SilentModule(make_net(workload.overrides), workload.steps)
    with tempfile.TemporaryDirectory() as root:
        trainer = L.Trainer(max_steps=workload.steps, limit_val_batches=0, accelerator="cpu", devices=1,
                            default_root_dir=root, logger=False, enable_checkpointing=False, enable_progress_bar=False,
                            enable_model_summary=False, profiler=NoProfiler(), callbacks=[LoopTimer()])
        trainer.fit(module, train_dataloaders=loader)
    return LoopTimer.last


def lit_train(workload: Workload, validate: bool = False) -> float:
    """``lit_train.training.run.run`` with the default callbacks, logger and progress bar, testing off.

    Without ``validate``, validation and the checkpoint save are off too: they are
    per-epoch costs the raw loop does not have, measured on their own.
    """
    from lit_train.training.run import run

    per_epoch = [] if validate else ["trainer.limit_val_batches=0", "++callbacks.model_checkpoint=null"]
    with tempfile.TemporaryDirectory() as root:
        cfg = compose_config([
            *workload.overrides, *workload.lit_overrides, *per_epoch, f"run_dir={root}", "trainer.accelerator=cpu",
            "trainer.devices=1", f"trainer.max_steps={workload.steps}", "trainer.max_epochs=-1", "test=false",
            f"optimizer.lr={LR}", f"optimizer.weight_decay={WEIGHT_DECAY}",
        ])
        OmegaConf.set_struct(cfg, False)
        cfg.callbacks.loop_timer = {"_target_": f"{__name__}.LoopTimer"}
        with contextlib.redirect_stdout(io.StringIO()):  # the run's summary
            run(cfg)
    return LoopTimer.last
