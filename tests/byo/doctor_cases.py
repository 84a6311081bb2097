"""Planted problems for action=doctor: data modules and modules with one thing wrong each, as a user might write them.

Each takes a ``problem`` argument naming what is planted; ``"none"`` gives a healthy case.
"""

import lightning.pytorch as L
import torch
from torch import nn
from torch.nn import functional as F
from torch.utils.data import DataLoader, TensorDataset

from lit_train.modules import Classifier


class PlantedData(L.LightningDataModule):
    """640 training and 128 validation samples of 10 standardized Gaussian classes in 64 features.

    Problems: ``nonfinite`` (NaN and Inf features), ``scale`` (features x100 + 50), ``labels`` (some labels are 10, outside
    the 10 classes), ``imbalance`` (almost every sample in class 0), ``overlap`` (the validation set repeats
    training samples), ``no_val`` (no validation data).
    """

    PROBLEMS = ("none", "nonfinite", "scale", "labels", "imbalance", "overlap", "no_val")

    def __init__(self, problem: str = "none", batch_size: int = 64, **ignored) -> None:
        super().__init__()
        if problem not in self.PROBLEMS:
            raise ValueError(f"`problem` must be one of {self.PROBLEMS}, got {problem!r}")
        self.problem, self.batch_size = problem, batch_size

    def setup(self, stage=None):
        g = torch.Generator().manual_seed(0)
        centers = torch.randn(10, 64, generator=g)
        y = torch.randint(0, 10, (768,), generator=g)
        x = centers[y] + torch.randn(768, 64, generator=g)
        x = (x - x.mean()) / x.std()
        if self.problem == "nonfinite":
            x[5, 3] = float("nan")
            x[300, 0] = float("inf")
        elif self.problem == "scale":
            x = x * 100 + 50
        elif self.problem == "labels":
            y[::7] = 10
        elif self.problem == "imbalance":
            y[torch.rand(768, generator=g) < 0.97] = 0
        self.train_set = TensorDataset(x[:640], y[:640])
        self.val_set = TensorDataset(x[:128] if self.problem == "overlap" else x[640:], y[640:])

    def train_dataloader(self):
        return DataLoader(self.train_set, batch_size=self.batch_size, shuffle=True)

    def val_dataloader(self):
        if self.problem == "no_val":
            return []
        return DataLoader(self.val_set, batch_size=self.batch_size)


class _Broken(nn.Module):
    """Takes the log of its input minus 1: NaN wherever the input is below 1 (a bug in a custom layer)."""

    def forward(self, x):
        return torch.log(F.relu(x) - 1)


class _Detached(nn.Module):
    """A ReLU that cuts the graph: nothing before it gets a gradient."""

    def forward(self, x):
        return F.relu(x).detach()


class PlantedClassifier(Classifier):
    """lit_train's classifier over the mlp option's network, with one problem planted.

    Problems: ``overconfident`` (last layer x50), ``saturated`` (first layer x20; use a tanh network),
    ``dead`` (hidden biases -100), ``nan_layer`` (the first activation takes a log of negatives), ``detached`` (the
    first activation cuts the graph), ``vanishing`` (last layer x1e-5), ``exploding`` (loss x1e5),
    ``nonfinite_gradient`` (a sqrt at 0 in the loss), ``shuffled`` (each step's labels are shuffled).
    """

    PROBLEMS = ("none", "overconfident", "saturated", "dead", "nan_layer", "detached", "vanishing", "exploding",
                "nonfinite_gradient", "shuffled")

    def __init__(self, net: nn.Module, num_classes: int, problem: str = "none") -> None:
        super().__init__(net, num_classes)
        if problem not in self.PROBLEMS:
            raise ValueError(f"`problem` must be one of {self.PROBLEMS}, got {problem!r}")
        self.problem = problem
        linears = [layer for layer in net.modules() if isinstance(layer, nn.Linear)]
        with torch.no_grad():
            if problem == "overconfident":
                linears[-1].weight.mul_(50)
            elif problem == "saturated":
                linears[0].weight.mul_(20)
            elif problem == "dead":
                for layer in linears[:-1]:
                    layer.bias.fill_(-100)
            elif problem == "vanishing":
                linears[-1].weight.mul_(1e-5)
        if problem in ("nan_layer", "detached"):
            net.layers[1] = _Broken() if problem == "nan_layer" else _Detached()

    def step(self, batch):
        x, y = batch
        if self.problem == "shuffled":
            y = y[torch.randperm(len(y))]
        loss, metrics = super().step((x, y))
        if self.problem == "exploding":
            loss = loss * 1e5
        elif self.problem == "nonfinite_gradient":
            loss = loss + torch.sqrt((self.net.layers[0].weight * 0).abs()).sum()
        return loss, metrics
