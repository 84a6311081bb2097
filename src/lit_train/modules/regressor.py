"""Regression with mean squared error."""

import torch
from torch import nn
from torch.nn import functional as F
from torchmetrics import MeanAbsoluteError, MetricCollection

from lit_train.modules.task import TaskModule


class Regressor(TaskModule):
    """Mean-squared-error regression of ``net``'s output on the targets.

    Logs ``<stage>/loss`` (MSE) and ``<stage>/mae`` for stages ``train``, ``val`` and ``test``.

    Args:
        net: Maps a batch of inputs to outputs shaped like the targets.
    """

    METRICS = ("mae",)

    def __init__(self, net: nn.Module) -> None:
        super().__init__(net)
        self.metrics = MetricCollection({f"{stage}_mae": MeanAbsoluteError() for stage in ("train", "val", "test")})

    def step(self, batch: tuple[torch.Tensor, torch.Tensor], stage: str) -> torch.Tensor:
        x, y = batch
        prediction = self.net(x).reshape(y.shape)
        self.metrics[f"{stage}_mae"].update(prediction.detach(), y)
        return F.mse_loss(prediction, y)
