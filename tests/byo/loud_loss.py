"""A classifier whose gradients are all far too large while it trains well: gradient health from the logged norms."""

from lit_train.modules import Classifier


class LoudLossClassifier(Classifier):
    """lit_train's classifier with its training loss scaled by 10^4: Adam's steps do not change (they are
    invariant to the loss's scale), every gradient norm is 10^4 times larger."""

    def step(self, batch):
        loss, metrics = super().step(batch)
        return (loss * 1e4 if self.training else loss), metrics
