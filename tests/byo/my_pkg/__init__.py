"""A user's package as the README's bring-your-own command names it: constructors with their own arguments only."""

import lightning.pytorch as L
import torch
from sklearn.datasets import load_digits
from torch import nn
from torch.nn import functional as F
from torch.utils.data import DataLoader, TensorDataset, random_split


class MyClassifier(L.LightningModule):
    """A classifier of 8x8 digits with no configure_optimizers: the optimizer comes from the trainer's caller."""

    def __init__(self, hidden: int = 64) -> None:
        super().__init__()
        self.net = nn.Sequential(nn.Linear(64, hidden), nn.ReLU(), nn.Linear(hidden, 10))

    def training_step(self, batch, batch_idx):
        x, y = batch
        loss = F.cross_entropy(self.net(x), y)
        self.log("train/loss", loss)
        return loss

    def validation_step(self, batch, batch_idx):
        x, y = batch
        self.log("val/loss", F.cross_entropy(self.net(x), y))


class MyLitModule(MyClassifier):
    """The same classifier with its own optimizer, and a test step."""

    def __init__(self, lr: float = 0.01) -> None:
        super().__init__()
        self.lr = lr

    def test_step(self, batch, batch_idx):
        x, y = batch
        self.log("test/acc", (self.net(x).argmax(-1) == y).float().mean())

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=self.lr, momentum=0.9)


class MyFineTuner(MyClassifier):
    """Trains only its head, with the optimizer and schedule of lit_train's groups: it takes them as arguments."""

    def __init__(self, hidden: int = 64, optimizer=None, scheduler=None) -> None:
        super().__init__(hidden)
        self.optimizer, self.scheduler = optimizer, scheduler

    def configure_optimizers(self):
        optimizer = self.optimizer(self.net[2].parameters())
        if self.scheduler is None:  # scheduler=none
            return optimizer
        return {"optimizer": optimizer, "lr_scheduler": self.scheduler(optimizer)}


class MyRecordedFineTuner(MyFineTuner):
    """Saves every argument as a hyperparameter, the builders too."""

    def __init__(self, hidden: int = 64, optimizer=None, scheduler=None) -> None:
        super().__init__(hidden, optimizer, scheduler)
        self.save_hyperparameters()


class MyDataModule(L.LightningDataModule):
    """scikit-learn's digits, scaled to [0, 1], split 80/10/10."""

    def __init__(self, batch_size: int = 32) -> None:
        super().__init__()
        self.batch_size = batch_size

    def setup(self, stage=None):
        x, y = load_digits(return_X_y=True)
        data = TensorDataset(torch.tensor(x / 16, dtype=torch.float32), torch.tensor(y))
        self.train, self.val, self.test = random_split(data, [0.8, 0.1, 0.1], torch.Generator().manual_seed(0))

    def train_dataloader(self):
        return DataLoader(self.train, batch_size=self.batch_size, shuffle=True)

    def val_dataloader(self):
        return DataLoader(self.val, batch_size=self.batch_size)

    def test_dataloader(self):
        return DataLoader(self.test, batch_size=self.batch_size)
