"""Plain ``nn.Module`` networks; they know nothing of Lightning or Hydra."""

from lit_train.models.cnn import CNN
from lit_train.models.gpt import GPT
from lit_train.models.mlp import MLP

__all__ = ["CNN", "GPT", "MLP"]
