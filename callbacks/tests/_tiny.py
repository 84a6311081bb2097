"""Tiny models, data and a recording logger shared by the callback tests."""

from __future__ import annotations

import sys
from typing import Any

import lightning.pytorch as L
import torch
from lightning.pytorch.loggers import Logger
from torch import nn
from torch.utils.data import DataLoader, TensorDataset


class TinyModule(L.LightningModule):
    """``Linear(4, 8) -> ReLU -> Linear(8, 1)`` (49 parameters) on a regression loss."""

    def __init__(self, optimizer: str = "sgd", lr: float = 0.1) -> None:
        super().__init__()
        self.net = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 1))
        self.optimizer = optimizer
        self.lr = lr

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)

    def training_step(self, batch: Any, batch_idx: int) -> torch.Tensor:
        x, y = batch
        loss = nn.functional.mse_loss(self(x), y)
        self.log("train_loss", loss)
        return loss

    def validation_step(self, batch: Any, batch_idx: int) -> None:
        x, y = batch
        self.log("val_loss", nn.functional.mse_loss(self(x), y))

    def configure_optimizers(self) -> torch.optim.Optimizer:
        if self.optimizer == "adam":
            return torch.optim.Adam(self.parameters(), lr=self.lr)
        return torch.optim.SGD(self.parameters(), lr=self.lr)


def tiny_loader(samples: int = 32, batch_size: int = 8, seed: int = 0) -> DataLoader:
    generator = torch.Generator().manual_seed(seed)
    x = torch.randn(samples, 4, generator=generator)
    y = torch.randn(samples, 1, generator=generator)
    return DataLoader(TensorDataset(x, y), batch_size=batch_size)


def tiny_trainer(**kwargs: Any) -> L.Trainer:
    """A CPU Trainer with everything off that the tests do not need; ``kwargs`` override."""
    options: dict[str, Any] = {
        "accelerator": "cpu",
        "devices": 1,
        "max_epochs": 1,
        "logger": False,
        "enable_checkpointing": False,
        "enable_progress_bar": False,
        "enable_model_summary": False,
        "num_sanity_val_steps": 0,
        "log_every_n_steps": 1,
    }
    options.update(kwargs)
    return L.Trainer(**options)


class MemoryLogger(Logger):
    """Keeps every ``log_metrics`` call as ``(step, metrics)``."""

    def __init__(self) -> None:
        super().__init__()
        self.records: list[tuple[int, dict[str, float]]] = []

    @property
    def name(self) -> str:
        return "memory"

    @property
    def version(self) -> int:
        return 0

    def log_hyperparams(self, params: Any, *args: Any, **kwargs: Any) -> None:
        pass

    def log_metrics(self, metrics: dict[str, float], step: int | None = None) -> None:
        self.records.append((step, dict(metrics)))

    def steps_with(self, key: str) -> list[int]:
        return [step for step, metrics in self.records if key in metrics]

    def values(self, key: str) -> list[float]:
        return [float(metrics[key]) for _, metrics in self.records if key in metrics]


HOST_SYNC_METHODS = ("tolist", "item", "cpu", "numpy", "__bool__", "__float__", "__int__", "__index__")


def count_host_syncs(monkeypatch: Any, module_name: str) -> list[int]:
    """Count tensor-to-host conversions called from code in ``module_name``.

    Returns a one-element list holding the running count; ``monkeypatch`` undoes the patch.
    """
    count = [0]

    def counting(original: Any) -> Any:
        def method(self: torch.Tensor, *args: Any, **kwargs: Any) -> Any:
            if sys._getframe(1).f_globals.get("__name__") == module_name:
                count[0] += 1
            return original(self, *args, **kwargs)

        return method

    for name in HOST_SYNC_METHODS:
        monkeypatch.setattr(torch.Tensor, name, counting(getattr(torch.Tensor, name)))
    return count
