"""Data modules whose data is bad in ways only a run can find: no samples, NaN features, an empty loader."""

import lightning.pytorch as L
import torch
from torch.utils.data import DataLoader, TensorDataset

from lit_train.data import DigitsDataModule


class EmptyDigits(DigitsDataModule):
    """The digits option's data module, with every sample filtered away."""

    def make_tensors(self):
        x, y = super().make_tensors()
        return x[:0], y[:0]


class NaNDigits(DigitsDataModule):
    """The digits, with two NaN pixels and one infinite one."""

    def make_tensors(self):
        x, y = super().make_tensors()
        x[5, 3] = x[7, 0] = float("nan")
        x[9, 9] = float("inf")
        return x, y


class EmptyTrainLoader(L.LightningDataModule):
    """Plain DataLoaders whose training set has no sample (validation has some)."""

    def __init__(self, batch_size: int = 32, **ignored) -> None:
        super().__init__()
        self.batch_size = batch_size

    def _loader(self, n: int) -> DataLoader:
        g = torch.Generator().manual_seed(0)
        return DataLoader(TensorDataset(torch.randn(n, 64, generator=g), torch.randint(0, 10, (n,), generator=g)),
                          batch_size=self.batch_size)

    def train_dataloader(self):
        return self._loader(0)

    def val_dataloader(self):
        return self._loader(32)

    def test_dataloader(self):
        return self._loader(32)
