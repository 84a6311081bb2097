"""Lightning data modules for the built-in datasets, all held in memory as tensors."""

from lit_train.data.digits import DigitsDataModule
from lit_train.data.loader import TensorLoader
from lit_train.data.synthetic import BlobsDataModule, RegressionDataModule, XorDataModule
from lit_train.data.tensor_datamodule import TensorDataModule
from lit_train.data.text import TextDataModule

__all__ = [
    "BlobsDataModule",
    "DigitsDataModule",
    "RegressionDataModule",
    "TensorDataModule",
    "TensorLoader",
    "TextDataModule",
    "XorDataModule",
]
