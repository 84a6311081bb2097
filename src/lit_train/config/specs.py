"""What lit_train knows about each class a built-in config names, without importing torch.

One :class:`Spec` per ``_target_``: every constructor argument a config may
set, the rule its value must pass, and the rules between arguments. Config
validation checks a node against the spec of its target before any heavy
import; the optimizer wiring reads a scheduler's spec to fill its length from
the run. A target without a spec (your own class) is left to its constructor,
and ``tests/test_specs.py`` holds every spec against its class's signature.
"""

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from lit_train.config.rules import (
    COUNT, FLAG, FRACTION, KERNEL, NON_NEGATIVE, POSITIVE, SEED, Built, Flag, ListOf, Number, OneOf, Text,
)

#: Constructor arguments no spec lists: the ones lit_train passes itself (the parameters, the optimizer),
#: a scheduler's resume position, and callables (which a config cannot hold).
UNLISTED_ARGUMENTS = frozenset({"params", "optimizer", "last_epoch", "scale_fn"})

#: A rule between arguments: given a node's values (each already passing its own rule), its config path and the
#: whole config, it returns one line per problem.
Check = Callable[[Mapping[str, Any], str, Mapping[str, Any]], list[str]]


@dataclass(frozen=True)
class Spec:
    """A class that a config node names in ``_target_``.

    Attributes:
        params: Every constructor argument a config may set, with the rule its value must pass.
        checks: The rules between arguments (see :data:`Check`).
        fixed: Arguments of a base class that this class passes itself, so a config cannot set them.
    """

    params: Mapping[str, Any]
    checks: tuple[Check, ...] = field(default=(), kw_only=True)
    fixed: frozenset[str] = field(default=frozenset(), kw_only=True)


@dataclass(frozen=True)
class OptimizerSpec(Spec):
    """An optimizer class (its parameters are passed by lit_train)."""


@dataclass(frozen=True)
class SchedulerSpec(Spec):
    """An LR scheduler and how lit_train wires it.

    Attributes:
        length_arg: The argument that takes the run's length (total steps, or
            epochs with ``interval: epoch``); lit_train fills it unless set.
        needs_monitor: Whether it steps on a monitored metric (plateau): the run's ``monitor``.
        interval: What its arguments count, and so when it steps: ``step`` or ``epoch``.
    """

    length_arg: str | None = None
    needs_monitor: bool = False
    interval: str = "epoch"


@dataclass(frozen=True)
class DataSpec(Spec):
    """A data module of lit_train and the task its data is for (a :class:`ModuleSpec`'s ``task``)."""

    task: str = field(kw_only=True)


@dataclass(frozen=True)
class ModuleSpec(Spec):
    """A LightningModule of lit_train: the data it fits and the metric names it logs."""

    task: str = field(kw_only=True)
    metrics: tuple[str, ...] = field(default=(), kw_only=True)

    def logged(self) -> list[str]:
        """Every metric key it logs: the loss and its metrics, per stage (``val/loss``)."""
        names = ("loss", *self.metrics)
        return [f"{stage}/{name}" for stage in ("train", "val", "test") for name in names]


def _numbers(*values: Any) -> bool:
    return all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in values)


def below(low: str, high: str) -> Check:
    """The rule that argument ``low`` is below argument ``high`` when both are set."""

    def check(node: Mapping[str, Any], at: str, run: Mapping[str, Any]) -> list[str]:
        if low in node and high in node and _numbers(node[low], node[high]) and not node[low] < node[high]:
            return [f"{at}.{low}: must be below {at}.{high} ({node[high]}), got {node[low]}"]
        return []

    return check


def _nesterov_momentum(node: Mapping[str, Any], at: str, run: Mapping[str, Any]) -> list[str]:
    # SGD refuses Nesterov without momentum, or with dampening, only at its construction.
    if node.get("nesterov") is not True:
        return []
    problems = []
    if not node.get("momentum"):
        problems.append(f"{at}.nesterov: Nesterov needs {at}.momentum > 0, got momentum={node.get('momentum')!r}")
    if node.get("dampening", 0) != 0:
        problems.append(f"{at}.nesterov: Nesterov needs {at}.dampening=0, got dampening={node['dampening']!r}")
    return problems


#: Arguments every PyTorch optimizer takes.
_TORCH_OPTIMIZER = {"lr": POSITIVE, "weight_decay": NON_NEGATIVE, "foreach": KERNEL, "maximize": FLAG,
                    "differentiable": FLAG}
_BETAS = ListOf(FRACTION, lengths=(2,))

OPTIMIZERS: dict[str, OptimizerSpec] = {
    "torch.optim.SGD": OptimizerSpec({
        **_TORCH_OPTIMIZER, "momentum": FRACTION, "dampening": FRACTION, "nesterov": FLAG, "fused": KERNEL,
    }, checks=(_nesterov_momentum,)),
    "torch.optim.Adagrad": OptimizerSpec({
        **_TORCH_OPTIMIZER, "lr_decay": NON_NEGATIVE, "initial_accumulator_value": NON_NEGATIVE, "eps": POSITIVE,
        "fused": KERNEL,
    }),
    "torch.optim.RMSprop": OptimizerSpec({
        **_TORCH_OPTIMIZER, "alpha": Number(0, 1, low_open=True), "eps": POSITIVE, "momentum": FRACTION,
        "centered": FLAG, "capturable": FLAG,
    }),
    "torch.optim.Adam": OptimizerSpec({
        **_TORCH_OPTIMIZER, "betas": _BETAS, "eps": POSITIVE, "amsgrad": FLAG, "capturable": FLAG, "fused": KERNEL,
        "decoupled_weight_decay": FLAG,
    }),
    "torch.optim.AdamW": OptimizerSpec({
        **_TORCH_OPTIMIZER, "betas": _BETAS, "eps": POSITIVE, "amsgrad": FLAG, "capturable": FLAG, "fused": KERNEL,
    }),
    "pytorch_optimizer.Lamb": OptimizerSpec({
        "lr": POSITIVE, "weight_decay": NON_NEGATIVE, "foreach": KERNEL, "maximize": FLAG,
        # Its signature admits three betas, but its step unpacks two.
        "betas": _BETAS, "eps": POSITIVE, "weight_decouple": FLAG, "fixed_decay": FLAG,
        "rectify": FLAG, "degenerated_to_sgd": FLAG, "n_sma_threshold": COUNT, "grad_averaging": FLAG,
        "max_grad_norm": NON_NEGATIVE, "adam": FLAG, "pre_norm": FLAG,
    }),
}

def _warmup_within_run(node: Mapping[str, Any], at: str, run: Mapping[str, Any]) -> list[str]:
    warmup, max_steps = node.get("warmup_steps"), run.get("trainer", {}).get("max_steps", -1)
    if isinstance(warmup, int) and isinstance(max_steps, int) and max_steps > 0 and warmup >= max_steps:
        return [f"{at}.warmup_steps: the warmup ({warmup}) must be shorter than the run (trainer.max_steps={max_steps})"]
    return []


_SCHED = "torch.optim.lr_scheduler."
_MOMENTUM_CYCLE = {"cycle_momentum": FLAG, "base_momentum": FRACTION, "max_momentum": FRACTION}
SCHEDULERS: dict[str, SchedulerSpec] = {
    _SCHED + "StepLR": SchedulerSpec({"step_size": COUNT, "gamma": POSITIVE}),
    _SCHED + "MultiStepLR": SchedulerSpec({
        "milestones": ListOf(Number(0, integer=True), increasing=True), "gamma": POSITIVE,
    }),
    _SCHED + "ExponentialLR": SchedulerSpec({"gamma": POSITIVE}),
    _SCHED + "CosineAnnealingLR": SchedulerSpec(
        {"T_max": COUNT, "eta_min": NON_NEGATIVE}, length_arg="T_max", interval="step",
    ),
    _SCHED + "CosineAnnealingWarmRestarts": SchedulerSpec(
        {"T_0": COUNT, "T_mult": COUNT, "eta_min": NON_NEGATIVE}, interval="step",
    ),
    _SCHED + "ReduceLROnPlateau": SchedulerSpec(
        {
            "mode": OneOf(("max", "min")), "factor": Number(0, 1, low_open=True, high_open=True),
            "patience": Number(0, integer=True), "threshold": NON_NEGATIVE, "threshold_mode": OneOf(("abs", "rel")),
            "cooldown": Number(0, integer=True), "min_lr": NON_NEGATIVE, "eps": NON_NEGATIVE,
        },
        needs_monitor=True,
    ),
    _SCHED + "OneCycleLR": SchedulerSpec(
        {
            "max_lr": POSITIVE, "total_steps": Number(1, integer=True, nullable=True), "epochs": Number(1, integer=True, nullable=True),
            "steps_per_epoch": Number(1, integer=True, nullable=True),
            "pct_start": Number(0, 1, low_open=True, high_open=True), "anneal_strategy": OneOf(("cos", "linear")),
            **_MOMENTUM_CYCLE, "div_factor": POSITIVE, "final_div_factor": POSITIVE, "three_phase": FLAG,
        },
        length_arg="total_steps",
        interval="step",
    ),
    _SCHED + "CyclicLR": SchedulerSpec({
        "base_lr": POSITIVE, "max_lr": POSITIVE, "step_size_up": COUNT,
        "step_size_down": Number(1, integer=True, nullable=True),
        "mode": OneOf(("exp_range", "triangular", "triangular2")), "gamma": POSITIVE,
        "scale_mode": OneOf(("cycle", "iterations")), **_MOMENTUM_CYCLE,
    }, checks=(below("base_lr", "max_lr"),), interval="step"),
    _SCHED + "LinearLR": SchedulerSpec(
        {"start_factor": Number(0, 1, low_open=True), "end_factor": Number(0, 1), "total_iters": COUNT},
        length_arg="total_iters",
        interval="step",
    ),
    "lit_train.training.schedules.warmup_cosine": SchedulerSpec(
        {
            "total_steps": COUNT, "warmup_ratio": Number(0, 1, high_open=True, nullable=True),
            "warmup_steps": Number(0, integer=True, nullable=True), "start_factor": Number(0, 1),
            "eta_min_ratio": Number(0, 1),
        },
        checks=(_warmup_within_run,),
        length_arg="total_steps",
        interval="step",
    ),
}

def _splits_leave_training_data(node: Mapping[str, Any], at: str, run: Mapping[str, Any]) -> list[str]:
    held_out = node.get("val_fraction"), node.get("test_fraction")
    if _numbers(*held_out) and sum(held_out) >= 1:
        return [f"{at}.val_fraction: {at}.val_fraction + {at}.test_fraction must be below 1 to leave training data, "
                f"got {held_out[0]} + {held_out[1]}"]
    return []


def _text_file_exists(node: Mapping[str, Any], at: str, run: Mapping[str, Any]) -> list[str]:
    path = node.get("path")
    return [f"{at}.path: no such file {path!r}"] if isinstance(path, str) and not Path(path).is_file() else []


#: The split, batch and seed arguments of ``lit_train.data.TensorDataModule``, which every built-in data module
#: passes on through its ``**kwargs``.
_SPLIT = {"batch_size": COUNT, "val_fraction": FRACTION, "test_fraction": FRACTION, "seed": SEED}
_TENSOR_DATA = {**_SPLIT, "standardize": FLAG}
_SAMPLES = {"num_samples": COUNT, "noise": NON_NEGATIVE}
_DATA_CHECKS = (_splits_leave_training_data,)
#: The GPT's attention holds a block_size x block_size causal mask, and batch x heads times that in scores: past
#: this the first step needs gigabytes (the mask alone 2.7e8 bytes at the limit). The text data caps it too, as
#: model=gpt takes its block_size from there, where the user sets it.
_BLOCK_SIZE = Number(1, 16384, integer=True)

DATA_MODULES: dict[str, DataSpec] = {
    "lit_train.data.DigitsDataModule": DataSpec(
        {**_SPLIT, "num_features": OneOf((64,)), "num_classes": OneOf((10,))},
        fixed=frozenset({"standardize"}), checks=_DATA_CHECKS, task="classification",
    ),
    "lit_train.data.BlobsDataModule": DataSpec(
        {**_TENSOR_DATA, **_SAMPLES, "num_features": COUNT, "num_classes": Number(2, integer=True)},
        checks=_DATA_CHECKS, task="classification",
    ),
    "lit_train.data.XorDataModule": DataSpec(
        {**_TENSOR_DATA, **_SAMPLES, "num_features": OneOf((2,)), "num_classes": OneOf((2,))},
        checks=_DATA_CHECKS, task="classification",
    ),
    "lit_train.data.RegressionDataModule": DataSpec(
        {**_TENSOR_DATA, **_SAMPLES, "function": OneOf(("cubic", "linear")), "num_features": OneOf((1,))},
        checks=_DATA_CHECKS, task="regression",
    ),
    "lit_train.data.TextDataModule": DataSpec(
        {
            "path": Text(nullable=True), "vocab_size": COUNT, "block_size": _BLOCK_SIZE,
            "stride": Number(1, integer=True, nullable=True), "val_fraction": FRACTION, "batch_size": COUNT,
            "seed": SEED, "standardize": FLAG,
        },
        fixed=frozenset({"test_fraction"}), checks=(_text_file_exists,), task="language_model",
    ),
}


def _heads_divide_width(node: Mapping[str, Any], at: str, run: Mapping[str, Any]) -> list[str]:
    heads, width = node.get("n_head"), node.get("n_embd")
    if isinstance(heads, int) and isinstance(width, int) and heads > 0 and width % heads:
        return [f"{at}.n_head: must divide {at}.n_embd ({width}), got {heads}"]
    return []


_ACTIVATION = OneOf(("gelu", "relu", "sigmoid", "silu", "tanh"))
_INIT = OneOf(("default", "he", "xavier"))

#: The networks of ``lit_train.models``.
NETWORKS: dict[str, Spec] = {
    "lit_train.models.MLP": Spec({
        "in_features": COUNT, "out_features": COUNT, "hidden": ListOf(COUNT), "activation": _ACTIVATION,
        "dropout": FRACTION, "init": _INIT,
    }),
    "lit_train.models.CNN": Spec({
        "image_shape": ListOf(COUNT, lengths=(3,)), "num_classes": COUNT, "channels": ListOf(COUNT), "hidden": COUNT,
        "activation": _ACTIVATION, "dropout": FRACTION, "init": _INIT,
    }),
    "lit_train.models.GPT": Spec(
        {"vocab_size": COUNT, "block_size": _BLOCK_SIZE, "n_layer": COUNT, "n_head": COUNT, "n_embd": COUNT,
         "dropout": FRACTION},
        checks=(_heads_divide_width,),
    ),
}

#: The arguments of ``lit_train.modules.TaskModule``: the network and torch.compile's switches.
_TASK_MODULE = {
    "net": Built(),
    "compile": FLAG,
    "compile_mode": OneOf(("default", "max-autotune", "max-autotune-no-cudagraphs", "reduce-overhead")),
    "compile_dynamic": Flag(nullable=True),
}
MODULES: dict[str, ModuleSpec] = {
    "lit_train.modules.Classifier": ModuleSpec(
        {**_TASK_MODULE, "num_classes": Number(2, integer=True), "label_smoothing": FRACTION},
        task="classification", metrics=("acc",),
    ),
    "lit_train.modules.Regressor": ModuleSpec(_TASK_MODULE, task="regression", metrics=("mae",)),
    "lit_train.modules.LanguageModel": ModuleSpec(_TASK_MODULE, task="language_model", metrics=("ppl",)),
}

#: The arguments of ``lightning.pytorch.Trainer`` (a test holds them to its signature).
TRAINER_ARGUMENTS = frozenset({
    "accelerator", "strategy", "devices", "num_nodes", "precision", "logger", "callbacks", "fast_dev_run",
    "max_epochs", "min_epochs", "max_steps", "min_steps", "max_time", "limit_train_batches", "limit_val_batches",
    "limit_test_batches", "limit_predict_batches", "overfit_batches", "val_check_interval",
    "check_val_every_n_epoch", "num_sanity_val_steps", "log_every_n_steps", "enable_checkpointing",
    "enable_progress_bar", "enable_model_summary", "accumulate_grad_batches", "gradient_clip_val",
    "gradient_clip_algorithm", "deterministic", "benchmark", "inference_mode", "use_distributed_sampler",
    "profiler", "detect_anomaly", "barebones", "plugins", "sync_batchnorm", "reload_dataloaders_every_n_epochs",
    "default_root_dir", "enable_autolog_hparams", "model_registry",
})
#: Trainer arguments that lit_train sets from its own groups and run directory, never from ``trainer.*``.
TRAINER_SET_BY_LIT_TRAIN = frozenset({"logger", "callbacks", "plugins", "default_root_dir"})

#: lit_train's own settings of the optimizer and scheduler, and the key each sits at: outside the groups' nodes,
#: so that any Hydra app instantiates the groups as they are.
OWN_SETTINGS = {
    **{key: f"optimization.{key}" for key in ("decay_norm_and_bias", "scale_lr", "base_batch_size", "interval",
                                              "frequency", "kernel")},
    "monitor": "monitor",  # a plateau scheduler steps on the run's monitor
}
#: Hydra's instantiation keys, never constructor arguments.
HYDRA_KEYS = frozenset({"_target_", "_partial_", "_args_", "_recursive_", "_convert_"})
