"""Next-token language modelling."""

import torch
from torch import Tensor
from torch.nn import functional as F

from lit_train.modules.task import TaskModule


class LanguageModel(TaskModule):
    """Next-token cross-entropy over ``net``'s ``(batch, time, vocab)`` logits.

    Logs ``<stage>/loss`` (mean per-token cross-entropy, nats) and ``<stage>/ppl``
    (perplexity: the exponential of the epoch's mean per-token loss) for stages
    ``train``, ``val`` and ``test``. Epoch means weigh every token equally.

    Args:
        net: Maps ``(batch, time)`` token ids to ``(batch, time, vocab)`` logits.
    """

    METRICS = ("ppl",)
    DERIVED = ("ppl",)

    def step(self, batch: tuple[Tensor, Tensor]) -> tuple[Tensor, dict[str, Tensor]]:
        x, y = batch
        return F.cross_entropy(self.net(x).flatten(0, 1), y.flatten()), {}

    def batch_weight(self, batch: tuple[Tensor, Tensor]) -> int:
        return batch[1].numel()

    def derived_metrics(self, means: dict[str, Tensor]) -> dict[str, Tensor]:
        return {"ppl": torch.exp(means["loss"])}
