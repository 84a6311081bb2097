"""What lit_train knows about each optimizer and scheduler target, without importing torch.

Config validation reads these tables to check argument names and ranges before
any heavy import; the optimizer wiring reads them to fill a scheduler's length
from the run. A target missing here (your own class) is passed through as is.
"""

from dataclasses import dataclass, field

_COMMON_OPTIMIZER = frozenset({"lr", "weight_decay", "foreach", "maximize", "differentiable"})


@dataclass(frozen=True)
class OptimizerSpec:
    """An optimizer class and the keyword arguments it accepts."""

    params: frozenset[str]


@dataclass(frozen=True)
class SchedulerSpec:
    """An LR scheduler and how lit_train wires it.

    Attributes:
        params: Keyword arguments the scheduler accepts (besides the optimizer).
        length_arg: The argument that takes the run's length (total steps, or
            epochs with ``interval: epoch``); lit_train fills it unless set.
        needs_monitor: Whether it steps on a monitored metric (plateau).
    """

    params: frozenset[str]
    length_arg: str | None = None
    needs_monitor: bool = False


OPTIMIZERS: dict[str, OptimizerSpec] = {
    "torch.optim.SGD": OptimizerSpec(_COMMON_OPTIMIZER | {"momentum", "dampening", "nesterov", "fused"}),
    "torch.optim.Adagrad": OptimizerSpec(
        _COMMON_OPTIMIZER | {"lr_decay", "initial_accumulator_value", "eps", "fused"}
    ),
    "torch.optim.RMSprop": OptimizerSpec(_COMMON_OPTIMIZER | {"alpha", "eps", "momentum", "centered", "capturable"}),
    "torch.optim.Adam": OptimizerSpec(
        _COMMON_OPTIMIZER | {"betas", "eps", "amsgrad", "capturable", "fused", "decoupled_weight_decay"}
    ),
    "torch.optim.AdamW": OptimizerSpec(_COMMON_OPTIMIZER | {"betas", "eps", "amsgrad", "capturable", "fused"}),
    "pytorch_optimizer.Lamb": OptimizerSpec(
        _COMMON_OPTIMIZER
        | {"betas", "eps", "weight_decouple", "fixed_decay", "rectify", "degenerated_to_sgd", "n_sma_threshold"}
        | {"grad_averaging", "max_grad_norm", "adam", "pre_norm"}
    ),
}

_SCHED = "torch.optim.lr_scheduler."
SCHEDULERS: dict[str, SchedulerSpec] = {
    _SCHED + "StepLR": SchedulerSpec(frozenset({"step_size", "gamma"})),
    _SCHED + "MultiStepLR": SchedulerSpec(frozenset({"milestones", "gamma"})),
    _SCHED + "ExponentialLR": SchedulerSpec(frozenset({"gamma"})),
    _SCHED + "CosineAnnealingLR": SchedulerSpec(frozenset({"T_max", "eta_min"}), length_arg="T_max"),
    _SCHED + "CosineAnnealingWarmRestarts": SchedulerSpec(frozenset({"T_0", "T_mult", "eta_min"})),
    _SCHED + "ReduceLROnPlateau": SchedulerSpec(
        frozenset({"mode", "factor", "patience", "threshold", "threshold_mode", "cooldown", "min_lr", "eps"}),
        needs_monitor=True,
    ),
    _SCHED + "OneCycleLR": SchedulerSpec(
        frozenset({"max_lr", "total_steps", "pct_start", "anneal_strategy", "cycle_momentum", "base_momentum"})
        | {"max_momentum", "div_factor", "final_div_factor", "three_phase"},
        length_arg="total_steps",
    ),
    _SCHED + "CyclicLR": SchedulerSpec(
        frozenset({"base_lr", "max_lr", "step_size_up", "step_size_down", "mode", "gamma", "scale_fn", "scale_mode"})
        | {"cycle_momentum", "base_momentum", "max_momentum"}
    ),
    _SCHED + "LinearLR": SchedulerSpec(frozenset({"start_factor", "end_factor", "total_iters"}), length_arg="total_iters"),
    "lit_train.training.schedules.warmup_cosine": SchedulerSpec(
        frozenset({"total_steps", "warmup_steps", "warmup_ratio", "start_factor", "eta_min_ratio"}),
        length_arg="total_steps",
    ),
}

#: Keys of the ``optimizer`` group that lit_train reads itself (never passed to the optimizer).
OPTIMIZER_KEYS = frozenset({"decay_norm_and_bias", "scale_lr", "base_batch_size"})
#: Keys of the ``scheduler`` group that lit_train reads itself (Lightning's scheduler config).
SCHEDULER_KEYS = frozenset({"interval", "frequency", "monitor"})
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
