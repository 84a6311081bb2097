"""What a run prints besides its progress and summary: Lightning's messages worth reading, the model in one line."""

import contextlib
import logging
import re
import warnings
from collections.abc import Iterable, Iterator
from typing import Any

import lightning.pytorch as L
from lightning.fabric.utilities.warnings import PossibleUserWarning
from lightning.pytorch.callbacks import Callback
from lightning.pytorch.callbacks import ModelSummary as LightningModelSummary
from lightning.pytorch.utilities.model_summary import get_human_readable_count
from typing_extensions import override

#: The logger Lightning's rank-zero messages (``rank_zero_info``) are sent to.
LIGHTNING_INFO_LOGGER = "lightning.pytorch.utilities.rank_zero"

#: Lightning's messages that tell a lit_train user nothing they can act on, matched from their start.
DROPPED_MESSAGES = (
    # An advert for Lightning's cloud logger.
    re.compile(r"\W*Tip: .*\blitlogger\b"),
    # ModelSummary's line says which devices train; "GPU available but not used" stays, as a warning.
    re.compile(r"(GPU|TPU) available: "),
    # How a scheduler's length is found, said at every run with cosine or one-cycle.
    re.compile(r"Loading `train_dataloader` to estimate number of stepping batches"),
    # The run's summary says why fitting stopped (`stopped: max_epochs`), after the last epoch's line.
    re.compile(r"`Trainer.fit` stopped: "),
    # The test stage's reload of the best checkpoint, whose path summary.json holds; a resume's line stays.
    re.compile(r"(Restoring states from|Loaded model weights from) the checkpoint (path )?at "),
)

#: Lightning's warnings of the same kind: (message regex, category).
DROPPED_WARNINGS = (
    # Lightning's own use of a torch name torch deprecated; fixed in Lightning, nothing to do here.
    (r"`isinstance\(treespec, LeafSpec\)` is deprecated", FutureWarning),
    # The built-in modules log exact epoch means, so a logging interval longer than an epoch loses nothing there.
    (r"The number of training batches \(\d+\) is smaller than the logging interval", Warning),
)


class _DropMessages(logging.Filter):
    @override
    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        return not any(pattern.match(message) for pattern in DROPPED_MESSAGES)


@contextlib.contextmanager
def quiet_lightning(reduced_metrics: Iterable[str] = ()) -> Iterator[None]:
    """Within the block, Lightning's :data:`DROPPED_MESSAGES` and :data:`DROPPED_WARNINGS` are not shown.

    Everything else Lightning says is shown as usual, and all of it is back after the block.

    Args:
        reduced_metrics: Metric names the module logs already reduced over ranks (the built-in
            modules' epoch means); Lightning's advice to log them with ``sync_dist=True`` is not shown.
            A module of the user's own gets it as usual. Default: none.
    """
    names = "|".join(re.escape(name) for name in reduced_metrics)
    log = logging.getLogger(LIGHTNING_INFO_LOGGER)
    dropper = _DropMessages()
    with warnings.catch_warnings():
        for message, category in DROPPED_WARNINGS:
            warnings.filterwarnings("ignore", message=message, category=category)
        if names:
            warnings.filterwarnings(
                "ignore", message=rf"It is recommended to use `self\.log\('({names})', \.\.\., sync_dist=True\)`",
                category=PossibleUserWarning,
            )
        log.addFilter(dropper)
        try:
            yield
        finally:
            log.removeFilter(dropper)


class QuietLightning(Callback):
    """:func:`quiet_lightning` from each process's ``setup`` to its ``teardown``.

    For the processes Lightning starts itself (``ddp_spawn``), which begin with
    Python's default warning filters and logging.

    Args:
        reduced_metrics: As for :func:`quiet_lightning`. Default: none.
    """

    def __init__(self, reduced_metrics: Iterable[str] = ()) -> None:
        self.reduced_metrics = tuple(reduced_metrics)
        self._quiet: contextlib.ExitStack | None = None

    @override
    def setup(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        self._quiet = contextlib.ExitStack()
        self._quiet.enter_context(quiet_lightning(self.reduced_metrics))

    @override
    def teardown(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        self._restore()

    @override
    def on_exception(self, trainer: L.Trainer, pl_module: L.LightningModule, exception: BaseException) -> None:
        self._restore()  # Lightning calls no teardown after an exception

    def _restore(self) -> None:
        if self._quiet is not None:
            self._quiet.close()
            self._quiet = None


def describe_module(module: L.LightningModule) -> str:
    """The module's class, with its network's when it has exactly one child with parameters: ``Classifier(MLP)``."""
    children = [child for child in module.children() if next(child.parameters(), None) is not None]
    name = type(module).__name__
    return f"{name}({type(children[0]).__name__})" if len(children) == 1 else name


class ModelSummary(LightningModelSummary):
    """Lightning's model summary in one line: the module, its trainable parameters and the devices.

    Lightning's table lists each layer down to ``max_depth``, and a FLOPs column and
    total that stay 0 unless the module sets an ``example_input_array``. This prints,
    on rank zero when fitting starts::

        model: Classifier(MLP), 85.0 K trainable params, on 1 cpu device

    Lightning counts the parameters, so a sharded or lazily built model counts as in its table.

    Example::

        trainer = L.Trainer(callbacks=[ModelSummary()], enable_model_summary=False)
    """

    def __init__(self) -> None:
        super().__init__(max_depth=1)
        self.model = ""
        self.devices = ""

    @override
    def on_fit_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self.model = describe_module(pl_module)
        count = trainer.num_devices * trainer.num_nodes
        nodes = f" ({trainer.num_nodes} nodes)" if trainer.num_nodes > 1 else ""
        self.devices = f"{count} {trainer.strategy.root_device.type} device{'s' if count > 1 else ''}{nodes}"
        super().on_fit_start(trainer, pl_module)  # counts, and calls summarize on rank zero

    @override
    def summarize(  # an instance method here: Lightning calls it on the callback
        self,
        summary_data: list[tuple[str, list[str]]],
        total_parameters: int,
        trainable_parameters: int,
        model_size: float,
        total_training_modes: dict[str, int],
        total_flops: int,
        **summarize_kwargs: Any,
    ) -> None:
        frozen = total_parameters - trainable_parameters
        frozen_text = f" (+{get_human_readable_count(frozen)} frozen)" if frozen else ""
        print(f"model: {self.model}, {get_human_readable_count(trainable_parameters)} trainable params{frozen_text}, "
              f"on {self.devices}", flush=True)
