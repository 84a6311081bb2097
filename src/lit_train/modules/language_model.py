"""Next-token language modelling."""

import torch
from torch import nn
from torch.nn import functional as F
from torchmetrics import MetricCollection
from torchmetrics.text import Perplexity

from lit_train.modules.task import TaskModule


class LanguageModel(TaskModule):
    """Next-token cross-entropy over ``net``'s ``(batch, time, vocab)`` logits.

    Logs ``<stage>/loss`` (mean per-token cross-entropy, nats) and ``<stage>/ppl``
    (perplexity) for stages ``train``, ``val`` and ``test``.

    Args:
        net: Maps ``(batch, time)`` token ids to ``(batch, time, vocab)`` logits.
    """

    METRICS = ("ppl",)

    def __init__(self, net: nn.Module) -> None:
        super().__init__(net)
        self.metrics = MetricCollection({f"{stage}_ppl": Perplexity() for stage in ("train", "val", "test")})

    def step(self, batch: tuple[torch.Tensor, torch.Tensor], stage: str) -> torch.Tensor:
        x, y = batch
        logits = self.net(x)
        self.metrics[f"{stage}_ppl"].update(logits.detach(), y)
        return F.cross_entropy(logits.flatten(0, 1), y.flatten())
