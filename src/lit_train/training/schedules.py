"""LR schedules that PyTorch does not ship as one scheduler."""

import math

from torch.optim import Optimizer
from torch.optim.lr_scheduler import LambdaLR


def warmup_cosine(
    optimizer: Optimizer,
    total_steps: int,
    warmup_ratio: float | None = 0.05,
    warmup_steps: int | None = None,
    start_factor: float = 0.0,
    eta_min_ratio: float = 0.0,
) -> LambdaLR:
    """Linear warmup, then cosine decay; the LR is ``base_lr * factor(step)``.

    ``factor`` rises linearly from ``start_factor`` at step 0 to 1 at step
    ``warmup`` and then follows ``eta_min_ratio + (1 - eta_min_ratio) *
    (1 + cos(pi * t)) / 2`` with ``t`` going from 0 to 1 at ``total_steps``.

    Args:
        optimizer: The optimizer whose param groups' LRs are scheduled.
        total_steps: Length of the run in scheduler steps.
        warmup_ratio: Warmup as a fraction of ``total_steps`` (ignored if ``warmup_steps`` is set).
        warmup_steps: Warmup length in steps.
        start_factor: LR factor at step 0.
        eta_min_ratio: Final LR as a fraction of the base LR.

    Raises:
        ValueError: If the warmup is not shorter than the run.

    Example::

        >>> import torch
        >>> opt = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=1.0)
        >>> sched = warmup_cosine(opt, total_steps=10, warmup_steps=2)
        >>> [round(sched.lr_lambda(s), 3) for s in (0, 1, 2, 10)] == [0.0, 0.5, 1.0, 0.0]
        True
    """
    warmup = warmup_steps if warmup_steps is not None else int(round((warmup_ratio or 0.0) * total_steps))
    if warmup >= total_steps:
        raise ValueError(
            f"the warmup ({warmup} steps) must be shorter than the run ({total_steps} steps): "
            "lower scheduler.warmup_steps / scheduler.warmup_ratio or train longer"
        )

    def factor(step: int) -> float:
        if step < warmup:
            return start_factor + (1.0 - start_factor) * step / warmup
        progress = min(1.0, (step - warmup) / (total_steps - warmup))
        return eta_min_ratio + (1.0 - eta_min_ratio) * 0.5 * (1.0 + math.cos(math.pi * progress))

    return LambdaLR(optimizer, factor)
