"""Lightning's learning-rate monitor, without its per-batch search for the running loop."""

from typing import Any

import lightning.pytorch as L
from lightning.pytorch.callbacks import LearningRateMonitor as LightningLearningRateMonitor

from lit_train._compat import training_logging_step


class LearningRateMonitor(LightningLearningRateMonitor):
    """Lightning's ``LearningRateMonitor``, logging the same values at the same steps.

    Its per-batch check of whether this is a logging step looks for the running loop through
    the trainer's state properties first, which costs more on a small model's step than the
    rest of the callback; this one asks the training-batch rule first, and Lightning's only
    on logging steps.
    """

    def on_train_batch_start(self, trainer: L.Trainer, *args: Any, **kwargs: Any) -> None:
        if training_logging_step(trainer):
            super().on_train_batch_start(trainer, *args, **kwargs)
