"""The settings a health finding's fix names, with the values to try: ``optimizer.lr=0.0003``."""

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Levers:
    """What a run's fixes may change, as the run's config set it.

    Args:
        lr: ``optimizer.lr``; ``None`` when the module builds its own optimizer (the groups are unused).
        weight_decay: ``optimizer.weight_decay``, where the optimizer has one.
        dropout: ``model.net.dropout``, where the network has one.
    """

    lr: float | None = None
    weight_decay: float | None = None
    dropout: float | None = None

    @classmethod
    def of(cls, cfg: Any, own_optimizer: bool) -> "Levers":
        """The levers of a composed run config; ``own_optimizer``: the module has its own ``configure_optimizers``."""
        optimizer = {} if own_optimizer else cfg.optimizer
        net = cfg.model.get("net")
        return cls(lr=optimizer.get("lr"), weight_decay=optimizer.get("weight_decay"),
                   dropout=net.get("dropout") if net is not None and "_target_" in net else None)

    def lr_times(self, factor: float) -> str:
        """The override that scales the learning rate by ``factor``."""
        if self.lr is None:
            return "the learning rate of the module's configure_optimizers"
        return f"optimizer.lr={self.lr * factor:.3g}"

    def regularize(self) -> str:
        """Overrides that regularize more than the run did, for the keys it has."""
        overrides = ["+callbacks=early_stopping"]
        if self.weight_decay is not None:
            overrides.append(f"optimizer.weight_decay={max(10 * self.weight_decay, 0.01):.3g}")
        if self.dropout is not None:
            overrides.append(f"model.net.dropout={min(self.dropout + 0.2, 0.5):.2g}")
        return ", ".join(overrides)
