"""Classification with cross-entropy and accuracy."""

import torch
from torch import nn
from torch.nn import functional as F
from torchmetrics import MetricCollection
from torchmetrics.classification import MulticlassAccuracy

from lit_train.modules.task import TaskModule


class Classifier(TaskModule):
    """Cross-entropy classifier over ``net``'s logits.

    Logs ``<stage>/loss`` and ``<stage>/acc`` (micro accuracy) for stages
    ``train``, ``val`` and ``test``.

    Args:
        net: Maps a batch of inputs to ``(batch, num_classes)`` logits.
        num_classes: Number of classes.
        label_smoothing: Cross-entropy label smoothing in [0, 1).
    """

    METRICS = ("acc",)

    def __init__(self, net: nn.Module, num_classes: int, label_smoothing: float = 0.0) -> None:
        super().__init__(net)
        self.label_smoothing = label_smoothing
        self.metrics = MetricCollection(
            {f"{stage}_acc": MulticlassAccuracy(num_classes, average="micro") for stage in ("train", "val", "test")}
        )

    def step(self, batch: tuple[torch.Tensor, torch.Tensor], stage: str) -> torch.Tensor:
        x, y = batch
        logits = self.net(x)
        self.metrics[f"{stage}_acc"].update(logits.detach(), y)
        return F.cross_entropy(logits, y, label_smoothing=self.label_smoothing)
