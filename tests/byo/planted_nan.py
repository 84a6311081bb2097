"""A classifier that gets NaN inputs at chosen optimizer steps, as a bad batch in the data would give it."""

from lit_train.modules import Classifier


class PoisonedClassifier(Classifier):
    """lit_train's classifier, whose training batch at each step in ``poison_steps`` has NaN features.

    Args:
        poison_steps: Optimizer steps (``global_step``) whose batch is poisoned.
        **kwargs: Passed to :class:`~lit_train.modules.Classifier` (``net``, ``num_classes``).
    """

    def __init__(self, poison_steps: list[int], **kwargs) -> None:
        super().__init__(**kwargs)
        self.poison_steps = set(poison_steps)

    def training_step(self, batch, batch_idx):
        x, y = batch
        if self.global_step in self.poison_steps:
            x = x.clone()
            x[0] = float("nan")
        return super().training_step((x, y), batch_idx)
