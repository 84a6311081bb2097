"""lit_train's LearningRateMonitor logs what Lightning's does, at the same steps."""

import pytest
import torch
from lightning.pytorch.callbacks import LearningRateMonitor as LightningLearningRateMonitor
from test_modules import _data, _trainer

from lit_train.data.loader import TensorLoader
from lit_train.models import MLP
from lit_train.modules import Classifier
from lit_train.training.lr_monitor import LearningRateMonitor


class Scheduled(Classifier):
    """A classifier whose learning rate falls every step, with momentum to log."""

    def configure_optimizers(self):
        optimizer = torch.optim.SGD(self.parameters(), lr=0.1, momentum=0.9)
        return {"optimizer": optimizer,
                "lr_scheduler": {"scheduler": torch.optim.lr_scheduler.ExponentialLR(optimizer, 0.9), "interval": "step"}}


def _logged(monitor: type, **kwargs) -> list:
    torch.manual_seed(0)
    module = Scheduled(MLP(4, 3, hidden=[8]), num_classes=3)
    trainer = _trainer(max_epochs=2, log_every_n_steps=3, limit_val_batches=0, callbacks=[monitor(**kwargs)])
    trainer.fit(module, TensorLoader(*_data(50), batch_size=4))
    return [(step, {k: v for k, v in row.items() if k.startswith("lr-")}) for step, row in trainer.logger.rows
            if any(k.startswith("lr-") for k in row)]


@pytest.mark.parametrize("kwargs", [{"logging_interval": "step", "log_momentum": True}, {"logging_interval": None},
                                    {"logging_interval": "epoch"}])
def test_logs_what_lightnings_monitor_logs_at_the_same_steps(kwargs):
    ours, theirs = _logged(LearningRateMonitor, **kwargs), _logged(LightningLearningRateMonitor, **kwargs)
    assert ours == theirs
    assert len(ours) >= 2
