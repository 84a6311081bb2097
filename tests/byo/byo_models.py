"""A user's own LightningModules and data module, as lit_train's bring-your-own tests use them."""

import lightning.pytorch as L
import torch
from torch import nn
from torch.nn import functional as F
from torch.utils.data import DataLoader, TensorDataset


class NoOptimizerModule(L.LightningModule):
    """Takes the ``net`` of lit_train's mlp option and defines no configure_optimizers."""

    def __init__(self, net: nn.Module, num_classes: int) -> None:
        super().__init__()
        self.net = net

    def training_step(self, batch, batch_idx):
        x, y = batch
        loss = F.cross_entropy(self.net(x), y)
        self.log("train/loss", loss)
        return loss

    def validation_step(self, batch, batch_idx):
        x, y = batch
        self.log("val/loss", F.cross_entropy(self.net(x), y))


class OwnOptimizerModule(NoOptimizerModule):
    """Brings its own optimizer, which lit_train must leave alone."""

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.0123)


class BlobsDataModule(L.LightningDataModule):
    """Two Gaussian blobs with 64 features, served by plain DataLoaders."""

    def __init__(self, batch_size: int = 32, **ignored) -> None:
        super().__init__()
        self.batch_size = batch_size

    def setup(self, stage=None):
        g = torch.Generator().manual_seed(0)
        y = torch.randint(0, 2, (256,), generator=g)
        x = torch.randn(256, 64, generator=g) + 2 * y[:, None].float()
        self.train_set = self.val_set = self.test_set = TensorDataset(x, y)

    def train_dataloader(self):
        return DataLoader(self.train_set, batch_size=self.batch_size, shuffle=True)

    def val_dataloader(self):
        return DataLoader(self.val_set, batch_size=self.batch_size)

    def test_dataloader(self):
        return DataLoader(self.test_set, batch_size=self.batch_size)


class FailingModule(NoOptimizerModule):
    """Raises in its second training step, as a bug in user code would."""

    def training_step(self, batch, batch_idx):
        if self.global_step == 1:
            raise RuntimeError("shapes do not match\n(a second line)")
        return super().training_step(batch, batch_idx)
