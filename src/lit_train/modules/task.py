"""The shared train/val/test step of the built-in tasks."""

import lightning.pytorch as L
import torch
from torch import nn


class TaskModule(L.LightningModule):
    """Runs ``net`` and logs ``<stage>/loss`` plus the subclass's metrics.

    Subclasses implement :meth:`step`, returning the loss and updating their
    metrics; this class does the logging so every task logs the same way:
    ``train/loss`` every step (and its epoch mean), ``val/loss`` and
    ``test/loss`` per epoch, each metric as ``<stage>/<name>`` per epoch.

    Args:
        net: The network (any ``nn.Module``).
    """

    #: Metric names every subclass logs per stage, besides ``loss``; read by config validation.
    METRICS: tuple[str, ...] = ()

    def __init__(self, net: nn.Module) -> None:
        super().__init__()
        self.net = net

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)

    def step(self, batch: tuple[torch.Tensor, torch.Tensor], stage: str) -> torch.Tensor:
        """Returns the batch loss and updates this stage's metrics."""
        raise NotImplementedError

    def _shared_step(self, batch: tuple[torch.Tensor, torch.Tensor], stage: str) -> torch.Tensor:
        loss = self.step(batch, stage)
        on_step = stage == "train"
        self.log(f"{stage}/loss", loss, on_step=on_step, on_epoch=True, prog_bar=True, batch_size=len(batch[0]))
        for name in self.METRICS:
            self.log(f"{stage}/{name}", self.metrics[f"{stage}_{name}"], on_step=False, on_epoch=True, prog_bar=True)
        return loss

    def training_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> torch.Tensor:
        return self._shared_step(batch, "train")

    def validation_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> torch.Tensor:
        return self._shared_step(batch, "val")

    def test_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> torch.Tensor:
        return self._shared_step(batch, "test")
