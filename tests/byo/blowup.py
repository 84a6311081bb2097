"""A classifier whose validation loss blows up, finite, after the first epoch: a run going wrong without NaN."""

from lit_train.modules import Classifier


class BlowUpClassifier(Classifier):
    """lit_train's classifier, whose validation loss is multiplied by ``10 ** (6 * epoch)``."""

    def step(self, batch):
        loss, metrics = super().step(batch)
        if not self.training:
            loss = loss * 10.0 ** (6 * self.current_epoch)
        return loss, metrics
