"""The shared train/val/test step of the built-in tasks, and how they log."""

import inspect
from typing import Any

import lightning.pytorch as L
import torch
from lightning.pytorch.trainer.states import TrainerFn
from torch import Tensor, nn

from lit_train._compat import accumulating, training_logging_step
from lit_train.modules.epoch_log import log_epoch_means
from lit_train.modules.quick_hooks import QuickHooks
from lit_train.modules.running_means import RunningMeans

STAGES = ("train", "val", "test")


class TaskModule(QuickHooks, L.LightningModule):
    """Runs ``net``, returns the loss and logs ``<stage>/loss`` plus the subclass's metrics.

    Subclasses implement :meth:`step`, returning the batch's mean loss and the batch
    means of their :attr:`METRICS`. Logged keys:

    * ``train/loss_step``: mean training loss over the steps since the previous
      log (or the epoch's start), every ``trainer.log_every_n_steps`` steps;
    * ``<stage>/loss`` and ``<stage>/<metric>``: means over the stage's epoch,
      weighted by samples (:meth:`batch_weight`) and reduced over all ranks. During
      ``fit`` they bypass ``self.log``, which costs more per call than a small
      model's step (:mod:`lit_train.modules.epoch_log`).

    Values are summed on the device (:class:`RunningMeans`) and read once per
    log, so the training step never waits on the host for a metric. The training
    epoch's sums are checkpointed: a run resumed mid-epoch logs the same epoch means.

    With ``compile``, :meth:`configure_model` compiles ``net`` in place
    (``nn.Module.compile``): the loss, metrics and logging stay eager, and the
    state dict keeps its keys, so checkpoints load into a compiled module and an
    uncompiled one alike.

    Args:
        net: The network (any ``nn.Module``). ``nn.Module.compile`` traces a network
            class of your own (all built-in ones); a bare ``torch.nn`` container as the
            whole network runs uncompiled, so wrap it in a class.
        compile: Compile ``net`` with ``torch.compile`` before the first step.
        compile_mode: ``torch.compile``'s ``mode``: one of :attr:`COMPILE_MODES`.
        compile_dynamic: ``torch.compile``'s ``dynamic``: ``None`` compiles for the
            shapes seen and generalizes a shape once it changes.
    """

    #: Metric names every subclass logs per stage, besides ``loss``; read by config validation.
    METRICS: tuple[str, ...] = ()
    #: Those of :attr:`METRICS` that :meth:`derived_metrics` computes from the epoch means instead.
    DERIVED: tuple[str, ...] = ()
    #: The values ``torch.compile`` takes for ``mode``.
    COMPILE_MODES = ("default", "max-autotune", "max-autotune-no-cudagraphs", "reduce-overhead")

    def __init__(self, net: nn.Module, compile: bool = False, compile_mode: str = "default",
                 compile_dynamic: bool | None = None) -> None:
        super().__init__()
        if compile_mode not in self.COMPILE_MODES:
            raise ValueError(f"`compile_mode` must be one of {self.COMPILE_MODES}, got {compile_mode!r}")
        self.net = net
        self.compile_options = {"mode": compile_mode, "dynamic": compile_dynamic} if compile else None
        self._net_compiled = False
        self._averaged = tuple(name for name in self.METRICS if name not in self.DERIVED)
        names = ("loss", *self._averaged)
        self._epoch = {stage: RunningMeans(names) for stage in STAGES}
        self._window = RunningMeans(names)  # training steps since the last log
        self._train_epoch = -1  # the epoch the training sums belong to

    def forward(self, x: Tensor) -> Tensor:
        return self.net(x)

    def configure_model(self) -> None:
        # Here rather than in __init__: pickling (ddp_spawn) drops a module's compiled call, and Lightning
        # calls this hook in every process, once per stage; compiling once keeps the traced graphs.
        if self.compile_options is not None and not self._net_compiled:
            self.net.compile(**self.compile_options)
            self._net_compiled = True

    def step(self, batch: Any) -> tuple[Tensor, dict[str, Tensor]]:
        """Returns the batch's mean loss and the batch mean of each (non-derived) name in :attr:`METRICS`."""
        raise NotImplementedError

    def batch_weight(self, batch: Any) -> int:
        """How much a batch counts in the epoch means: its number of samples."""
        return len(batch[0])

    def derived_metrics(self, means: dict[str, Tensor]) -> dict[str, Tensor]:
        """Metrics computed from the means (e.g. perplexity from the loss); none by default."""
        return {}

    def _update(self, means: RunningMeans, batch: Any) -> Tensor:
        loss, metrics = self.step(batch)
        means.update([loss, *(metrics[name] for name in self._averaged)], self.batch_weight(batch))
        return loss

    def training_step(self, batch: Any, batch_idx: int) -> Tensor:
        # Reset here, not in on_train_epoch_start: Lightning skips that hook for an epoch it resumes.
        if self._train_epoch != self.current_epoch:
            self._window.reset()
            self._epoch["train"].reset()
            self._train_epoch = self.current_epoch
        loss = self._update(self._window, batch)
        # Lightning sends step metrics to the loggers only on its logging steps; read the sums only then.
        if self._logging_step():
            window = self._window.compute()
            self._window.merge_into(self._epoch["train"])
            self.log("train/loss_step", window["loss"], on_step=True, on_epoch=False, prog_bar=True, batch_size=1)
        return loss

    def _logging_step(self) -> bool:
        try:
            trainer = self.trainer
        except RuntimeError:  # not attached: a step called directly (tests, lit_train's doctor) has nowhere to log
            return False
        # Under gradient accumulation Lightning sends step metrics only after the batch that steps.
        return training_logging_step(trainer) and not (self.automatic_optimization and accumulating(trainer))

    def validation_step(self, batch: Any, batch_idx: int) -> Tensor:
        return self._update(self._epoch["val"], batch)

    def test_step(self, batch: Any, batch_idx: int) -> Tensor:
        return self._update(self._epoch["test"], batch)

    def on_validation_epoch_start(self) -> None:
        self._epoch["val"].reset()

    def on_test_epoch_start(self) -> None:
        self._epoch["test"].reset()

    def on_train_epoch_end(self) -> None:
        self._window.merge_into(self._epoch["train"])
        self._log_epoch("train")

    def on_validation_epoch_end(self) -> None:
        self._log_epoch("val")

    def on_test_epoch_end(self) -> None:
        self._log_epoch("test")

    def _sum_over_ranks(self, totals: Tensor) -> Tensor:
        return self.trainer.strategy.reduce(totals, reduce_op="sum") if self.trainer.world_size > 1 else totals

    def _log_epoch(self, stage: str) -> None:
        means = self._epoch[stage].compute(self._sum_over_ranks)
        if not means:
            return
        means.update(self.derived_metrics(means))
        metrics = {f"{stage}/{name}": value for name, value in means.items()}
        if self.trainer.state.fn == TrainerFn.FITTING:
            log_epoch_means(self.trainer, metrics)
        else:  # trainer.validate and trainer.test return what self.log collected
            # Already reduced over ranks: Lightning must not average them again.
            self.log_dict(metrics, prog_bar=True, batch_size=1)

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        checkpoint["train_means"] = {
            "epoch_index": self._train_epoch,
            "epoch": self._epoch["train"].state_dict(),
            "window": self._window.state_dict(),
        }

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        if "train_means" in checkpoint:
            self._epoch["train"].load_state_dict(checkpoint["train_means"]["epoch"])
            self._window.load_state_dict(checkpoint["train_means"]["window"])
            self._train_epoch = checkpoint["train_means"]["epoch_index"]


# Lightning reads training_step's signature on every batch and every self.log call; a precomputed
# signature turns that parse into a lookup. A subclass that overrides training_step is read as usual.
TaskModule.training_step.__signature__ = inspect.signature(TaskModule.training_step)
