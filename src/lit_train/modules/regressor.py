"""Regression with mean squared error."""

from torch import Tensor, nn
from torch.nn import functional as F

from lit_train.modules.task import TaskModule


class Regressor(TaskModule):
    """Mean-squared-error regression of ``net``'s output on the targets.

    Logs ``<stage>/loss`` (MSE) and ``<stage>/mae`` for stages ``train``, ``val`` and ``test``.

    Args:
        net: Maps a batch of inputs to outputs shaped like the targets.
    """

    METRICS = ("mae",)

    def step(self, batch: tuple[Tensor, Tensor]) -> tuple[Tensor, dict[str, Tensor]]:
        x, y = batch
        prediction = self.net(x).reshape(y.shape)
        return F.mse_loss(prediction, y), {"mae": (prediction.detach() - y).abs().mean()}
