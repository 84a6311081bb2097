"""scikit-learn's handwritten digits."""

import torch

from lit_train.data.tensor_datamodule import TensorDataModule


class DigitsDataModule(TensorDataModule):
    """The 1797 8x8 digit images from ``sklearn.datasets.load_digits``, flattened to 64 features.

    Pixels are standardized with the training split's mean and standard deviation.

    Args:
        num_features: Must be 64; stated so that model configs can refer to it.
        num_classes: Must be 10.
        **kwargs: Split, batch size and seed, see :class:`TensorDataModule`.
    """

    def __init__(self, num_features: int = 64, num_classes: int = 10, **kwargs) -> None:
        super().__init__(standardize=True, **kwargs)
        if (num_features, num_classes) != (64, 10):
            raise ValueError(f"digits has 64 features and 10 classes, got num_features={num_features}, num_classes={num_classes}")

    def make_tensors(self) -> tuple[torch.Tensor, torch.Tensor]:
        from sklearn.datasets import load_digits

        x, y = load_digits(return_X_y=True)
        return torch.as_tensor(x, dtype=torch.float32), torch.as_tensor(y, dtype=torch.long)
