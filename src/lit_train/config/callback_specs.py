"""The spec of each callback that lit_train's ``conf/callbacks`` options name, without importing torch.

Checked here rather than by the constructors, which would raise only once torch
is imported and the run directory exists. A ``monitor`` whose rule is
:class:`~lit_train.config.rules.Metric` must be a metric the model logs.
"""

from collections.abc import Mapping
from typing import Any

from lit_train.config.rules import (
    COUNT, FLAG, FRACTION, NON_NEGATIVE, POSITIVE, Built, Flag, ListOf, Metric, Number, OneOf, Text, Union,
)
from lit_train.config.specs import Spec, below


def _warmup_length(node: Mapping[str, Any], at: str, run: Mapping[str, Any]) -> list[str]:
    # Both default to None, so a key left out counts as null.
    if (node.get("steps") is None) == (node.get("ratio") is None):
        return [f"{at}.steps: give exactly one of {at}.steps and {at}.ratio (set the other to null), "
                f"got steps={node.get('steps')!r}, ratio={node.get('ratio')!r}"]
    return []


def _exponential_warmup_start(node: Mapping[str, Any], at: str, run: Mapping[str, Any]) -> list[str]:
    # An exponential ramp multiplies its way up from start_factor, so it cannot start at 0 (the default).
    if node.get("mode") == "exponential" and node.get("start_factor", 0.0) == 0:
        return [f"{at}.start_factor: must be > 0 with {at}.mode=exponential, got {node.get('start_factor', 0.0)!r}"]
    return []


def _one_checkpoint_trigger(node: Mapping[str, Any], at: str, run: Mapping[str, Any]) -> list[str]:
    # Lightning's ModelCheckpoint takes one of these; 0 and null switch a count off.
    given = [key for key in ("every_n_train_steps", "every_n_epochs", "train_time_interval")
             if node.get(key) not in (None, 0)]
    if len(given) > 1:
        return [f"{at}.{given[1]}: checkpoints are saved on one trigger, and {at}.{given[0]} is set too; "
                f"set all but one of {', '.join(given)} to null"]
    return []


#: Layer types (``hydra.utils.get_class`` nodes) and name patterns, one or a list (``lit_callbacks._modules``).
_MODULE_TYPES = Union((Text(), Built(), ListOf(Union((Text(), Built())))))
#: A sampling interval: ``None`` takes the trainer's ``log_every_n_steps``.
_LOG_INTERVAL = Number(1, integer=True, nullable=True)
_MODE = OneOf(("max", "min"))

_LR_MONITOR = Spec({
    "logging_interval": OneOf(("epoch", "step"), nullable=True), "log_momentum": FLAG, "log_weight_decay": FLAG,
})

_CHECKPOINT = Spec({
    "dirpath": Text(nullable=True),
    "filename": Text(nullable=True),
    "monitor": Metric(nullable=True),
    "verbose": FLAG,
    "save_last": Union((Flag(nullable=True), OneOf(("link",)))),
    "save_top_k": Number(-1, integer=True),
    "save_on_exception": FLAG,
    "save_weights_only": FLAG,
    "mode": _MODE,
    "auto_insert_metric_name": FLAG,
    "every_n_train_steps": Number(0, integer=True, nullable=True),
    "train_time_interval": Built(nullable=True),  # a datetime.timedelta
    "every_n_epochs": Number(0, integer=True, nullable=True),
    "save_on_train_epoch_end": Flag(nullable=True),
    "enable_version_counter": FLAG,
}, checks=(_one_checkpoint_trigger,))

CALLBACKS: dict[str, Spec] = {
    "lit_callbacks.ActivationMonitor": Spec({"log_every_n_steps": _LOG_INTERVAL, "modules": _MODULE_TYPES}),
    "lit_callbacks.Divergence": Spec({
        "monitors": Union((Text(), ListOf(Text()))), "factor": Number(1, low_open=True),
    }),
    "lit_callbacks.EarlyStopping": Spec({
        "monitor": Metric(),
        "min_delta": NON_NEGATIVE,
        "patience": Number(0, integer=True),
        "verbose": FLAG,
        "mode": _MODE,
        "strict": FLAG,
        "check_finite": FLAG,
        "stopping_threshold": Number(nullable=True),
        "divergence_threshold": Number(nullable=True),
        "check_on_train_epoch_end": Flag(nullable=True),
        "log_rank_zero_only": FLAG,
        "divergence_factor": Number(1, low_open=True, nullable=True),
        "min_lr": Number(0, nullable=True),
    }),
    "lit_callbacks.GradientMonitor": Spec(
        {
            "log_every_n_steps": _LOG_INTERVAL,
            "per": OneOf(("module", "parameter")),
            "on_nonfinite": OneOf(("skip", "stop", "warn")),
            "vanishing": Number(0, nullable=True),
            "exploding": Number(0, low_open=True, nullable=True),
            "patience": COUNT,
            "skip_on_device": Flag(nullable=True),
            "max_skipped_fraction": Number(0, 1, low_open=True, nullable=True),
        },
        checks=(below("vanishing", "exploding"),),
    ),
    "lit_callbacks.LRFinder": Spec(
        {
            "min_lr": POSITIVE,
            "max_lr": POSITIVE,
            "num_training_steps": Number(10, integer=True),
            "mode": OneOf(("exponential", "linear")),
            "method": OneOf(("minimum", "steepest", "valley")),
            "apply": FLAG,
            "plot": FLAG,
            "smoothing": FRACTION,
            "early_stop_threshold": Number(1, low_open=True, nullable=True),
        },
        checks=(below("min_lr", "max_lr"),),
    ),
    "lit_callbacks.Warmup": Spec(
        {
            "steps": Number(1, integer=True, nullable=True),
            "ratio": Number(0, 1, low_open=True, high_open=True, nullable=True),
            "start_factor": Number(0, 1),
            "mode": OneOf(("cosine", "exponential", "linear")),
        },
        checks=(_warmup_length, _exponential_warmup_start),
    ),
    "lit_callbacks.WeightInit": Spec({
        "scheme": OneOf(("he", "normal", "orthogonal", "xavier", "zeros")),
        "distribution": OneOf(("normal", "uniform")),
        "bias": Number(nullable=True),
        "modules": _MODULE_TYPES,
        "nonlinearity": OneOf(("conv1d", "conv2d", "conv3d", "leaky_relu", "linear", "relu", "selu", "sigmoid",
                               "tanh")),
        "gain": Number(0, low_open=True, nullable=True),
        "mode": OneOf(("fan_in", "fan_out")),
        "std": NON_NEGATIVE,
        "seed": Number(0, integer=True, nullable=True),
    }),
    "lit_callbacks.WeightPenalty": Spec({"l1": NON_NEGATIVE, "l2": NON_NEGATIVE, "exclude_bias_and_norm": FLAG}),
    "lightning.pytorch.callbacks.LearningRateMonitor": _LR_MONITOR,
    "lit_train.training.lr_monitor.LearningRateMonitor": _LR_MONITOR,
    "lightning.pytorch.callbacks.ModelCheckpoint": _CHECKPOINT,
    "lit_train.training.checkpoint.ModelCheckpoint": _CHECKPOINT,
    "lit_train.training.progress.ProgressBar": Spec({"refresh_seconds": NON_NEGATIVE, "leave": FLAG}),
}
