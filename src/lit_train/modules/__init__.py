"""LightningModules that wrap the plain networks with a loss and metrics.

They define no ``configure_optimizers``: lit_train attaches one built from the
``optimizer`` and ``scheduler`` config groups (see :func:`lit_train.training.optim.attach_optimizers`).
"""

from lit_train.modules.classifier import Classifier
from lit_train.modules.language_model import LanguageModel
from lit_train.modules.quick_hooks import QuickHooks
from lit_train.modules.regressor import Regressor
from lit_train.modules.task import TaskModule

__all__ = ["Classifier", "LanguageModel", "QuickHooks", "Regressor", "TaskModule"]
