"""A no-op profiler whose ``profile()`` costs nothing."""

import contextlib

from lightning.pytorch.profilers import PassThroughProfiler

_NO_OP = contextlib.nullcontext()


class NoProfiler(PassThroughProfiler):
    """What ``Trainer(profiler=None)`` means, without the per-call generator.

    Lightning wraps every hook call in ``with trainer.profiler.profile(name):`` —
    about a hundred per training step. Its default profiler does nothing, but each
    ``profile()`` still builds a generator-based context manager; on a small model
    that is a measurable share of the step. This one hands out one shared
    ``nullcontext`` instead.
    """

    def profile(self, action_name: str) -> contextlib.nullcontext:
        return _NO_OP
