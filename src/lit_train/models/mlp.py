"""Multi-layer perceptron."""

from collections.abc import Sequence

import torch
from torch import nn

from lit_train.models._layers import activation as make_activation
from lit_train.models._layers import initialize


class MLP(nn.Module):
    """Fully connected network: ``in_features -> hidden... -> out_features``.

    With ``hidden=[]`` it is a single linear layer (linear or logistic regression).

    Args:
        in_features: Size of each input sample.
        out_features: Size of each output (classes for classification, 1 for regression).
        hidden: Widths of the hidden layers. Default ``(256, 256)``.
        activation: One of ``gelu``, ``relu``, ``sigmoid``, ``silu``, ``tanh``.
        dropout: Dropout probability after each hidden activation.
        init: ``default`` (PyTorch's), ``he`` or ``xavier``.

    Example::

        >>> MLP(64, 10, hidden=[32])(torch.zeros(5, 64)).shape
        torch.Size([5, 10])
    """

    def __init__(
        self,
        in_features: int,
        out_features: int,
        hidden: Sequence[int] = (256, 256),
        activation: str = "relu",
        dropout: float = 0.0,
        init: str = "default",
    ) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        width = in_features
        for size in hidden:
            layers += [nn.Linear(width, size), make_activation(activation)]
            if dropout > 0:
                layers.append(nn.Dropout(dropout))
            width = size
        layers.append(nn.Linear(width, out_features))
        self.layers = nn.Sequential(*layers)
        initialize(self, init, activation)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.layers(x)
