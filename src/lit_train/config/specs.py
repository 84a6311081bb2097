"""What lit_train knows about each optimizer and scheduler target, without importing torch.

Config validation reads these tables to check argument names and ranges before
any heavy import; the optimizer wiring reads them to fill a scheduler's length
from the run. A target missing here (your own class) is passed through as is.
"""

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from lit_train.config.rules import COUNT, FLAG, FRACTION, KERNEL, NON_NEGATIVE, POSITIVE, ListOf, Number, OneOf

#: Constructor arguments no spec lists: the ones lit_train passes itself (the parameters, the optimizer),
#: a scheduler's resume position, callables (which a config cannot hold), and ``**kwargs``.
UNLISTED_ARGUMENTS = frozenset({"params", "optimizer", "last_epoch", "scale_fn", "kwargs"})


@dataclass(frozen=True)
class OptimizerSpec:
    """An optimizer class: every constructor argument a config may set, with the rule its value must pass."""

    params: Mapping[str, Any]


@dataclass(frozen=True)
class SchedulerSpec:
    """An LR scheduler and how lit_train wires it.

    Attributes:
        params: Every constructor argument a config may set (besides the
            optimizer), with the rule its value must pass.
        length_arg: The argument that takes the run's length (total steps, or
            epochs with ``interval: epoch``); lit_train fills it unless set.
        needs_monitor: Whether it steps on a monitored metric (plateau): the run's ``monitor``.
        interval: What its arguments count, and so when it steps: ``step`` or ``epoch``.
    """

    params: Mapping[str, Any]
    length_arg: str | None = None
    needs_monitor: bool = False
    interval: str = "epoch"


#: Arguments every PyTorch optimizer takes.
_TORCH_OPTIMIZER = {"lr": POSITIVE, "weight_decay": NON_NEGATIVE, "foreach": KERNEL, "maximize": FLAG,
                    "differentiable": FLAG}
_BETAS = ListOf(FRACTION, lengths=(2,))

OPTIMIZERS: dict[str, OptimizerSpec] = {
    "torch.optim.SGD": OptimizerSpec({
        **_TORCH_OPTIMIZER, "momentum": FRACTION, "dampening": FRACTION, "nesterov": FLAG, "fused": KERNEL,
    }),
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
    }, interval="step"),
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
        length_arg="total_steps",
        interval="step",
    ),
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


@dataclass(frozen=True)
class ModuleSpec:
    """A LightningModule of lit_train: the data it fits and the metric names it logs."""

    task: str
    metrics: tuple[str, ...] = field(default=())

    def logged(self) -> list[str]:
        names = ("loss", *self.metrics)
        return [f"{stage}/{name}" for stage in ("train", "val", "test") for name in names]


MODULES: dict[str, ModuleSpec] = {
    "lit_train.modules.Classifier": ModuleSpec("classification", ("acc",)),
    "lit_train.modules.Regressor": ModuleSpec("regression", ("mae",)),
    "lit_train.modules.LanguageModel": ModuleSpec("language_model", ("ppl",)),
}
