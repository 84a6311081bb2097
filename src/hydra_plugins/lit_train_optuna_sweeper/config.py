"""The sweeper's settings, registered in Hydra's ConfigStore as ``hydra/sweeper=lit_optuna``."""

from dataclasses import dataclass, field
from typing import Any, Optional

from hydra.core.config_store import ConfigStore

#: Sampler names and the Optuna class each stands for (its keyword arguments go in ``sampler_args``).
SAMPLERS = {
    "cmaes": "optuna.samplers.CmaEsSampler",
    "gp": "optuna.samplers.GPSampler",
    "random": "optuna.samplers.RandomSampler",
    "tpe": "optuna.samplers.TPESampler",
}
#: Pruner names and the Optuna class each stands for (its keyword arguments go in ``pruner_args``).
PRUNERS = {
    "hyperband": "optuna.pruners.HyperbandPruner",
    "median": "optuna.pruners.MedianPruner",
    "none": "optuna.pruners.NopPruner",
    "successive_halving": "optuna.pruners.SuccessiveHalvingPruner",
}


@dataclass
class LitOptunaSweeperConf:
    """Settings of ``hydra/sweeper=lit_optuna``.

    Attributes:
        n_trials: Trials the study holds when the sweep ends, counting those a
            previous sweep in the same storage ran (complete, pruned or failed).
        n_jobs: Trials launched together (a parallel launcher runs them at once;
            the basic launcher runs one trial at a time whatever this says).
        sampler: One of :data:`SAMPLERS`; ``tpe`` by default.
        seed: Seeds the sampler (``null``: not seeded).
        sampler_args: More keyword arguments for the sampler.
        pruner: One of :data:`PRUNERS`; ``none`` by default.
        pruner_args: Keyword arguments for the pruner.
        study_name: The study's name in the storage.
        storage: Optuna storage URL; ``null`` means ``sqlite:///<sweep dir>/optuna.db``.
        params: The search space, one override per key: ``interval(a,b)``,
            ``tag(log,interval(a,b))``, ``choice(x,y,...)``, ``range(a,b,step)``,
            or a plain value for every trial.
    """

    _target_: str = "hydra_plugins.lit_train_optuna_sweeper.optuna_sweeper.LitOptunaSweeper"
    n_trials: int = 20
    n_jobs: int = 1
    sampler: str = "tpe"
    seed: Optional[int] = None
    sampler_args: dict[str, Any] = field(default_factory=dict)
    pruner: str = "none"
    pruner_args: dict[str, Any] = field(default_factory=dict)
    study_name: str = "lit_train"
    storage: Optional[str] = None
    params: dict[str, Any] = field(default_factory=dict)


ConfigStore.instance().store(group="hydra/sweeper", name="lit_optuna", node=LitOptunaSweeperConf, provider="lit_train")
