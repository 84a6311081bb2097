"""Training-health callbacks for PyTorch Lightning.

Every callback here depends on Lightning and torch only, so any Lightning
project can use it with a plain ``lightning.Trainer``.
"""

from .activation_monitor import ActivationMonitor
from .divergence import Divergence
from .early_stopping import EarlyStopping
from .gradient_monitor import GradientMonitor
from .lr_finder import LRFinder, lr_find
from .lr_schedule import plot_lr, preview_lr
from .warmup import Warmup
from .weight_init import WeightInit
from .weight_penalty import WeightPenalty

__version__ = "0.1.0"

__all__ = [
    "ActivationMonitor",
    "Divergence",
    "EarlyStopping",
    "GradientMonitor",
    "LRFinder",
    "Warmup",
    "WeightInit",
    "WeightPenalty",
    "lr_find",
    "plot_lr",
    "preview_lr",
]
