"""A mixin that makes Lightning's per-hook bookkeeping on a LightningModule cheap.

Lightning sets an attribute on the module around every hook call, about fifty
times a training step. ``nn.Module.__setattr__`` checks each assignment for
parameters, modules and buffers, which for this plain string is wasted: with
small models at high step rates it is a measurable share of the step. The
built-in modules use the mixin; put it first in your own module's bases to get
the same, or leave it out: nothing else depends on it.

Example::

    class MyModule(QuickHooks, L.LightningModule):
        ...
"""

from typing import Any

from torch import nn

from lit_train._compat import CURRENT_HOOK_ATTRIBUTE


class QuickHooks(nn.Module):
    """Sets Lightning's current-hook attribute without ``nn.Module``'s checks; every other attribute as usual."""

    def __setattr__(self, name: str, value: Any) -> None:
        if name == CURRENT_HOOK_ATTRIBUTE:
            object.__setattr__(self, name, value)
        else:
            super().__setattr__(name, value)
