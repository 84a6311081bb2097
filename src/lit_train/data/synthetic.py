"""Synthetic problems: lines, cubics and XOR to learn on, Gaussian blobs of any size to measure with."""

import torch

from lit_train.data.tensor_datamodule import TensorDataModule


class RegressionDataModule(TensorDataModule):
    """1-D regression: ``linear`` is y = 2x + 1 + noise on x in [-1, 1]; ``cubic`` is y = x^3 - x^2 + noise on [-2, 2].

    Args:
        function: ``linear`` or ``cubic``.
        num_features: Must be 1.
        num_samples: Number of (x, y) pairs.
        noise: Standard deviation of the Gaussian noise on y.
        **kwargs: Split, batch size and seed, see :class:`TensorDataModule`.
    """

    FUNCTIONS = ("cubic", "linear")

    def __init__(self, function: str = "linear", num_features: int = 1, num_samples: int = 1000, noise: float = 0.1, **kwargs) -> None:
        super().__init__(**kwargs)
        if function not in self.FUNCTIONS:
            raise ValueError(f"`function` must be one of {self.FUNCTIONS}, got {function!r}")
        if num_features != 1:
            raise ValueError(f"regression data has 1 feature, got num_features={num_features}")
        self.function, self.num_samples, self.noise = function, num_samples, noise

    def make_tensors(self) -> tuple[torch.Tensor, torch.Tensor]:
        g = torch.Generator().manual_seed(self.seed)
        if self.function == "linear":
            x = torch.rand(self.num_samples, 1, generator=g) * 2 - 1
            y = 2 * x + 1
        else:
            x = torch.rand(self.num_samples, 1, generator=g) * 4 - 2
            y = x**3 - x**2
        return x, y + self.noise * torch.randn(y.shape, generator=g)


class XorDataModule(TensorDataModule):
    """Noisy XOR: points around the four corners of the unit square, class = x1 XOR x2.

    Args:
        num_features: Must be 2.
        num_classes: Must be 2.
        num_samples: Number of points.
        noise: Standard deviation of the Gaussian jitter around each corner.
        **kwargs: Split, batch size and seed, see :class:`TensorDataModule`.
    """

    def __init__(self, num_features: int = 2, num_classes: int = 2, num_samples: int = 1000, noise: float = 0.1, **kwargs) -> None:
        super().__init__(**kwargs)
        if (num_features, num_classes) != (2, 2):
            raise ValueError(f"xor has 2 features and 2 classes, got num_features={num_features}, num_classes={num_classes}")
        self.num_samples, self.noise = num_samples, noise

    def make_tensors(self) -> tuple[torch.Tensor, torch.Tensor]:
        g = torch.Generator().manual_seed(self.seed)
        bits = torch.randint(0, 2, (self.num_samples, 2), generator=g)
        x = bits.float() + self.noise * torch.randn(self.num_samples, 2, generator=g)
        return x, (bits[:, 0] ^ bits[:, 1]).long()


class BlobsDataModule(TensorDataModule):
    """Gaussian class blobs: one random center per class, samples scattered around it.

    Any size and shape, generated in memory from the seed: the problem for measuring
    throughput and scaling, where the data must be large and the answer does not matter.

    Args:
        num_features: Features per sample.
        num_classes: Number of classes (one center each).
        num_samples: Number of samples.
        noise: Standard deviation of the samples around their center (centers are N(0, 1)).
        **kwargs: Split, batch size and seed, see :class:`TensorDataModule`.
    """

    def __init__(self, num_features: int = 64, num_classes: int = 10, num_samples: int = 10000, noise: float = 1.0,
                 **kwargs) -> None:
        super().__init__(**kwargs)
        if num_features < 1 or num_classes < 2 or num_samples < 1:
            raise ValueError(f"blobs need num_features >= 1, num_classes >= 2 and num_samples >= 1, got "
                             f"{num_features}, {num_classes} and {num_samples}")
        self.num_features, self.num_classes, self.num_samples, self.noise = num_features, num_classes, num_samples, noise

    def make_tensors(self) -> tuple[torch.Tensor, torch.Tensor]:
        g = torch.Generator().manual_seed(self.seed)
        centers = torch.randn(self.num_classes, self.num_features, generator=g)
        y = torch.randint(0, self.num_classes, (self.num_samples,), generator=g)
        return centers[y] + self.noise * torch.randn(self.num_samples, self.num_features, generator=g), y
