"""Classification with cross-entropy and accuracy."""

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from lit_train.modules.task import TaskModule


class Classifier(TaskModule):
    """Cross-entropy classifier over ``net``'s logits.

    Logs ``<stage>/loss`` and ``<stage>/acc`` (share of samples whose top logit is
    the target) for stages ``train``, ``val`` and ``test``.

    Args:
        net: Maps a batch of inputs to ``(batch, num_classes)`` logits.
        num_classes: Number of classes.
        label_smoothing: Cross-entropy label smoothing in [0, 1).
        compile, compile_mode, compile_dynamic: Compile ``net``, as :class:`TaskModule` says.
    """

    METRICS = ("acc",)

    def __init__(self, net: nn.Module, num_classes: int, label_smoothing: float = 0.0, compile: bool = False,
                 compile_mode: str = "default", compile_dynamic: bool | None = None) -> None:
        super().__init__(net, compile, compile_mode, compile_dynamic)
        self.num_classes = num_classes
        self.label_smoothing = label_smoothing

    def step(self, batch: tuple[Tensor, Tensor]) -> tuple[Tensor, dict[str, Tensor]]:
        x, y = batch
        logits = self.net(x)
        accuracy = (logits.argmax(dim=-1) == y).float().mean()  # argmax is not differentiable: no graph
        return F.cross_entropy(logits, y, label_smoothing=self.label_smoothing), {"acc": accuracy}
