"""Small convolutional classifier."""

from collections.abc import Sequence

import torch
from torch import nn

from lit_train.models._layers import activation as make_activation
from lit_train.models._layers import initialize


class CNN(nn.Module):
    """Conv-BN-activation-pool blocks, then a hidden layer and class logits.

    Inputs may be flat (``(batch, C*H*W)``, as tabular datasets give them) or
    images (``(batch, C, H, W)``); flat inputs are viewed as ``image_shape``.

    Args:
        image_shape: ``(channels, height, width)`` of one input image.
        num_classes: Number of output logits.
        channels: Output channels of each conv block; each block halves H and W.
        hidden: Width of the fully connected layer before the logits.
        activation: One of ``gelu``, ``relu``, ``sigmoid``, ``silu``, ``tanh``.
        dropout: Dropout probability before the logits.
        init: ``default``, ``he`` or ``xavier``.

    Example::

        >>> CNN((1, 8, 8), 10)(torch.zeros(2, 64)).shape
        torch.Size([2, 10])
    """

    def __init__(
        self,
        image_shape: Sequence[int],
        num_classes: int,
        channels: Sequence[int] = (16, 32),
        hidden: int = 64,
        activation: str = "relu",
        dropout: float = 0.0,
        init: str = "default",
    ) -> None:
        super().__init__()
        in_channels, height, width = image_shape
        self.image_shape = tuple(image_shape)
        blocks: list[nn.Module] = []
        for out_channels in channels:
            blocks += [
                nn.Conv2d(in_channels, out_channels, kernel_size=3, padding=1),
                nn.BatchNorm2d(out_channels),
                make_activation(activation),
                nn.MaxPool2d(2),
            ]
            in_channels, height, width = out_channels, height // 2, width // 2
        self.features = nn.Sequential(*blocks)
        self.head = nn.Sequential(
            nn.Flatten(),
            nn.Linear(in_channels * height * width, hidden),
            make_activation(activation),
            nn.Dropout(dropout),
            nn.Linear(hidden, num_classes),
        )
        initialize(self, init, activation)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() == 2:
            x = x.view(x.shape[0], *self.image_shape)
        return self.head(self.features(x))
