"""The training loops that the benchmarks compare, each timed over the same optimizer steps.

* ``raw``: a hand-written PyTorch loop over slices of tensors shuffled once per epoch.
* ``plain_lightning``: a LightningModule as Lightning's docs write one, logging its loss and
  accuracy with ``self.log`` (per step and epoch means), fed by ``DataLoader(TensorDataset)``,
  with Lightning's default Trainer settings.
* ``plain_lightning_batched``: the same, fed by a ``DataLoader`` over a ``BatchSampler``: one
  index per batch instead of one ``__getitem__`` per sample and a collate.
* ``lightning_floor``: the least a Lightning Trainer can run per step: a minimal module on
  lit_train's tensor loader, no callbacks, logger, progress bar or profiler.
* ``lit_train``: the real ``lit_train.training.run.run`` on a composed config, as a user runs it.

The math is the same for all of them: the same network (same init), the same loss and
accuracy, summed on the device as lit_train's modules sum them (:class:`EpochMetrics`,
read every ``LOG_EVERY`` steps and at each epoch's end; plain Lightning through
``self.log``), AdamW over the same parameter groups run by the same kernel (lit_train's
default ``optimization.kernel=auto``), a per-step cosine schedule, on the same training
split, with validation off. ``raw_no_metrics`` is the raw loop without the metrics: a
labelled reference, not a contender.

Each returns the seconds of the same window (:class:`WindowTimer`): from the start of step
``warmup`` to the end of the last step, so set-up (imports, data, Trainer construction) is
not part of the comparison.
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
from torch.utils.data import BatchSampler, DataLoader, RandomSampler, TensorDataset

from lit_train.config.compose import compose_config
from lit_train.data.loader import TensorLoader
from lit_train.modules.running_means import RunningMeans
from lit_train.training.optim import kernel_arguments, param_groups
from lit_train.training.profiler import NoProfiler

LR, WEIGHT_DECAY = 1e-3, 0.01
#: lit_train logs the training loss every ``trainer.log_every_n_steps`` steps (Lightning's default, 50).
LOG_EVERY = 50
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
    #: Steps run before the timed window opens (compilation, allocator warm-up); ``steps`` includes them.
    warmup: int = 0
    #: Lightning's accelerator: ``cpu`` or ``gpu``.
    accelerator: str = "cpu"


def synchronize() -> None:
    """Waits for the GPU's queued work, so that a clock read counts it (nothing to wait for on CPU)."""
    if torch.cuda.is_available():
        torch.cuda.synchronize()


class WindowTimer:
    """The window every contender is timed over: from the start of step ``warmup`` to the end of the last step.

    ``warmup_seconds``: from the loop's start to the window's (the first steps, with any compilation).
    """

    #: The timer of the last contender that ran (for what a contender's seconds do not say).
    last: "WindowTimer"

    def __init__(self, warmup: int = 0) -> None:
        self.warmup, self.step = warmup, 0
        self.started = self.opened = self.seconds = self.warmup_seconds = 0.0

    def begin_loop(self) -> None:
        synchronize()
        self.started = self.opened = time.perf_counter()

    def before_step(self) -> None:
        if self.step == self.warmup and self.warmup:
            synchronize()
            self.opened = time.perf_counter()
        self.step += 1

    def end_loop(self) -> float:
        synchronize()
        self.seconds = time.perf_counter() - self.opened
        self.warmup_seconds = self.opened - self.started
        WindowTimer.last = self
        return self.seconds


class LoopTimer(L.Callback):
    """A :class:`WindowTimer` driven by Lightning's hooks.

    Each contender lists it first among its callbacks, so that its window opens and closes
    before the other callbacks' hooks of the same call run, as the raw loop's does.
    """

    def __init__(self, warmup: int = 0) -> None:
        self.timer = WindowTimer(warmup)

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self.timer.begin_loop()

    def on_train_batch_start(self, trainer: L.Trainer, pl_module: L.LightningModule, batch, batch_idx: int) -> None:
        self.timer.before_step()

    def on_train_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self.timer.end_loop()


class EpochMetrics:
    """lit_train's training metrics without Lightning: loss and accuracy summed on the device, read as it reads them.

    The window since the last read is read (one host transfer) every ``LOG_EVERY`` steps and
    merged into the epoch's sums, which are read at the epoch's end.
    """

    def __init__(self) -> None:
        self.window, self.epoch, self.steps = RunningMeans(("loss", "acc")), RunningMeans(("loss", "acc")), 0
        self.read: list[float] = []

    def step(self, logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """The batch's loss, with its loss and accuracy added to the sums."""
        accuracy = (logits.argmax(dim=-1) == y).float().mean()
        loss = F.cross_entropy(logits, y)
        self.window.update([loss, accuracy], len(y))
        self.steps += 1
        if self.steps % LOG_EVERY == 0:
            self.read.append(self.window.compute()["loss"].item())
            self.window.merge_into(self.epoch)
        return loss

    def end_epoch(self) -> None:
        self.window.merge_into(self.epoch)
        self.read += [value.item() for value in self.epoch.compute().values()]
        self.epoch.reset()


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


def _raw(workload: Workload, metrics: EpochMetrics | None) -> float:
    x, y = training_split(workload.overrides)
    net, size = make_net(workload.overrides), batch_size(workload.overrides)
    optimizer, scheduler = _optimizer(net, workload.steps)
    generator = torch.Generator().manual_seed(0)
    timer = WindowTimer(workload.warmup)
    timer.begin_loop()
    while timer.step < workload.steps:
        order = torch.randperm(len(x), generator=generator)
        xs, ys = x[order], y[order]
        for start in range(0, len(x), size):
            timer.before_step()
            logits, targets = net(xs[start : start + size]), ys[start : start + size]
            loss = metrics.step(logits, targets) if metrics else F.cross_entropy(logits, targets)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            scheduler.step()
            if timer.step == workload.steps:
                break
        if metrics:
            metrics.end_epoch()
    return timer.end_loop()


def raw(workload: Workload) -> float:
    """The hand-written loop: shuffle the tensors once per epoch, slice batches, keep lit_train's metrics."""
    return _raw(workload, EpochMetrics())


def raw_no_metrics(workload: Workload) -> float:
    """The raw loop without the loss and accuracy sums: a reference for what the metrics cost."""
    return _raw(workload, None)


class _Module(L.LightningModule):
    def __init__(self, net: torch.nn.Module, steps: int) -> None:
        super().__init__()
        self.net, self.steps = net, steps

    def configure_optimizers(self):
        optimizer, scheduler = _optimizer(self.net, self.steps)
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "step"}}


class _PlainModule(_Module):
    """Metrics as Lightning's docs log them: per step, and averaged over the epoch by Lightning."""

    def training_step(self, batch, batch_idx):
        x, y = batch
        logits = self.net(x)
        loss = F.cross_entropy(logits, y)
        self.log("train/loss", loss, on_step=True, on_epoch=True, prog_bar=True)
        self.log("train/acc", (logits.argmax(dim=-1) == y).float().mean(), on_step=False, on_epoch=True)
        return loss


def _plain(workload: Workload, loader: DataLoader) -> float:
    module = _PlainModule(make_net(workload.overrides), workload.steps)
    timer = LoopTimer(workload.warmup)
    with tempfile.TemporaryDirectory() as root:
        trainer = L.Trainer(max_steps=workload.steps, limit_val_batches=0, accelerator=workload.accelerator, devices=1,
                            default_root_dir=root, enable_checkpointing=False, callbacks=[timer],
                            enable_model_summary=False)
        with contextlib.redirect_stdout(io.StringIO()):  # the progress bar, as for lit_train below
            trainer.fit(module, train_dataloaders=loader)
    return timer.timer.seconds


def plain_lightning(workload: Workload) -> float:
    """Lightning as the docs show it: DataLoader(TensorDataset), default Trainer, no validation."""
    x, y = training_split(workload.overrides)
    return _plain(workload, DataLoader(TensorDataset(x, y), batch_size=batch_size(workload.overrides), shuffle=True))


def plain_lightning_batched(workload: Workload) -> float:
    """Plain Lightning with a stock batched loader: the sampler hands the dataset one index list per batch."""
    x, y = training_split(workload.overrides)
    sampler = BatchSampler(RandomSampler(range(len(x))), batch_size(workload.overrides), drop_last=False)
    return _plain(workload, DataLoader(TensorDataset(x, y), sampler=sampler, batch_size=None))


class _FloorModule(_Module):
    """lit_train's metrics (:class:`EpochMetrics`) and nothing else: no ``self.log``."""

    def __init__(self, net: torch.nn.Module, steps: int) -> None:
        super().__init__(net, steps)
        self.metrics = EpochMetrics()

    def training_step(self, batch, batch_idx):
        x, y = batch
        return self.metrics.step(self.net(x), y)

    def on_train_epoch_end(self) -> None:
        self.metrics.end_epoch()


def lightning_floor(workload: Workload) -> float:
    """Lightning's own loop and nothing else: what any Trainer-based step costs at least."""
    x, y = training_split(workload.overrides)
    loader = TensorLoader(x, y, batch_size=batch_size(workload.overrides), shuffle=True)
    module = _FloorModule(make_net(workload.overrides), workload.steps)
    timer = LoopTimer(workload.warmup)
    with tempfile.TemporaryDirectory() as root:
        trainer = L.Trainer(max_steps=workload.steps, limit_val_batches=0, accelerator=workload.accelerator, devices=1,
                            default_root_dir=root, logger=False, enable_checkpointing=False, enable_progress_bar=False,
                            enable_model_summary=False, profiler=NoProfiler(), callbacks=[timer])
        trainer.fit(module, train_dataloaders=loader)
    return timer.timer.seconds


def lit_train_config(workload: Workload, root: str, validate: bool = False):
    """The composed config of the ``lit_train`` contender, with the window's timer as its first callback."""
    per_epoch = [] if validate else ["trainer.limit_val_batches=0", "++callbacks.model_checkpoint=null"]
    cfg = compose_config([
        f"optimizer.lr={LR}", f"optimizer.weight_decay={WEIGHT_DECAY}", f"trainer.accelerator={workload.accelerator}",
        *workload.overrides, *workload.lit_overrides, *per_epoch, f"run_dir={root}", "trainer.devices=1",
        f"trainer.max_steps={workload.steps}", "trainer.max_epochs=-1", "test=false",
    ])
    OmegaConf.set_struct(cfg, False)
    timer = {"_target_": f"{__name__}.LoopTimer", "warmup": workload.warmup}
    cfg.callbacks = {"loop_timer": timer, **OmegaConf.to_container(cfg.callbacks)}
    return cfg


def lit_train(workload: Workload, validate: bool = False) -> float:
    """``lit_train.training.run.run`` with the default callbacks, logger and progress bar, testing off.

    Without ``validate``, validation and the checkpoint save are off too: they are
    per-epoch costs the raw loop does not have, measured on their own.
    """
    from lit_train.training.run import run

    with tempfile.TemporaryDirectory() as root:
        cfg = lit_train_config(workload, root, validate)
        with contextlib.redirect_stdout(io.StringIO()):  # the run's summary
            run(cfg)
    return WindowTimer.last.seconds
