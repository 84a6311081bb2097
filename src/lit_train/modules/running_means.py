"""Weighted means of per-batch values, summed where the values live."""

from collections.abc import Callable, Sequence

import torch
from torch import Tensor


class RunningMeans:
    """Batch-size-weighted means of named per-batch values, accumulated on their device.

    :meth:`update` only adds to a device tensor, so the training loop never waits on
    the host for a metric; the means are read (one transfer) when logged. Every
    built-in metric is a mean over samples or tokens (loss, accuracy, absolute error),
    so summing ``value * weight`` and dividing by the summed weight is exact, also
    across ranks: ``reduce`` sums numerators and the denominator in one collective.

    Args:
        names: Names of the values passed to :meth:`update`, in order.

    Example::

        >>> means = RunningMeans(("loss", "acc"))
        >>> means.update([torch.tensor(1.0), torch.tensor(0.5)], weight=2)
        >>> means.update([torch.tensor(4.0), torch.tensor(1.0)], weight=1)
        >>> {name: round(value.item(), 4) for name, value in means.compute().items()}
        {'loss': 2.0, 'acc': 0.6667}
    """

    def __init__(self, names: Sequence[str]) -> None:
        self.names = tuple(names)
        self.reset()

    def reset(self) -> None:
        self.sums: Tensor | None = None
        self.weight = 0

    def update(self, values: Sequence[Tensor], weight: int) -> None:
        """Adds one batch's means, each counted ``weight`` times (its samples or tokens)."""
        with torch.no_grad():  # cheaper than detaching each value: a few fewer ops on every step
            batch = torch.stack(tuple(values))  # promotes mixed precisions to the widest
            if self.sums is None:
                self.sums = batch.float() * weight
            else:
                if self.sums.device != batch.device:  # restored from a checkpoint loaded on the CPU
                    self.sums = self.sums.to(batch.device)
                self.sums.add_(batch, alpha=weight)
        self.weight += weight

    def merge_into(self, other: "RunningMeans") -> None:
        """Adds these sums to ``other`` and resets these."""
        if self.sums is not None:
            other.sums = self.sums if other.sums is None else other.sums.add_(self.sums)
            other.weight += self.weight
        self.reset()

    def compute(self, reduce: Callable[[Tensor], Tensor] | None = None) -> dict[str, Tensor]:
        """The means by name (empty before any update); ``reduce`` sums a tensor over ranks."""
        if self.sums is None:
            return {}
        totals = torch.cat([self.sums, self.sums.new_tensor([self.weight])])
        if reduce is not None:
            totals = reduce(totals)
        return dict(zip(self.names, totals[:-1] / totals[-1]))

    def state_dict(self) -> dict[str, Tensor | int | None]:
        return {"sums": self.sums, "weight": self.weight}

    def load_state_dict(self, state: dict[str, Tensor | int | None]) -> None:
        self.sums, self.weight = state["sums"], int(state["weight"])
