"""The sweeper's settings, registered in Hydra's ConfigStore.

``hydra/sweeper=lit_optuna`` selects the sweeper; its sampler and pruner are
config groups of their own, so that switching one resets its arguments:
``hydra/sweeper/sampler=random``, ``hydra/sweeper/pruner=hyperband``, and
``hydra.sweeper.sampler.seed=1`` or ``hydra.sweeper.pruner.n_warmup_steps=2``
to change an argument.

The keys, groups and options of hydra-optuna-sweeper's ``hydra/sweeper=optuna``
mean the same here, so an app written for it runs with ``lit_optuna`` instead.
"""

from dataclasses import dataclass, field
from typing import Any, Optional

from hydra.core.config_store import ConfigStore
from omegaconf import MISSING

PROVIDER = "lit_train"


@dataclass
class TPESamplerConf:
    """Tree-structured Parzen Estimator (Bayesian optimization), the default."""

    _target_: str = "optuna.samplers.TPESampler"
    seed: Optional[int] = None
    consider_prior: Optional[bool] = None
    prior_weight: Optional[float] = None
    consider_magic_clip: Optional[bool] = None
    consider_endpoints: Optional[bool] = None
    n_startup_trials: int = 10
    n_ei_candidates: int = 24
    multivariate: bool = False
    warn_independent_sampling: Optional[bool] = None


@dataclass
class RandomSamplerConf:
    """Independent uniform (or log-uniform) draws: random search."""

    _target_: str = "optuna.samplers.RandomSampler"
    seed: Optional[int] = None


@dataclass
class CmaEsSamplerConf:
    """CMA-ES for continuous and integer parameters (choices are sampled at random)."""

    _target_: str = "optuna.samplers.CmaEsSampler"
    seed: Optional[int] = None
    n_startup_trials: int = 1
    warn_independent_sampling: bool = False
    x0: Optional[dict[str, Any]] = None
    sigma0: Optional[float] = None
    independent_sampler: Optional[Any] = None
    consider_pruned_trials: bool = False
    restart_strategy: Optional[str] = None
    inc_popsize: int = -1
    use_separable_cma: bool = False
    source_trials: Optional[Any] = None


@dataclass
class GPSamplerConf:
    """Gaussian-process Bayesian optimization (needs scipy and torch)."""

    _target_: str = "optuna.samplers.GPSampler"
    seed: Optional[int] = None
    n_startup_trials: int = 10
    deterministic_objective: bool = False
    independent_sampler: Optional[Any] = None
    constraints_func: Optional[Any] = None
    warn_independent_sampling: bool = True


@dataclass
class NSGAIISamplerConf:
    """NSGA-II, a genetic algorithm."""

    _target_: str = "optuna.samplers.NSGAIISampler"
    seed: Optional[int] = None
    population_size: int = 50
    mutation_prob: Optional[float] = None
    crossover_prob: float = 0.9
    swapping_prob: float = 0.5
    constraints_func: Optional[Any] = None


@dataclass
class QMCSamplerConf:
    """Quasi-Monte Carlo: low-discrepancy points that cover the space evenly."""

    _target_: str = "optuna.samplers.QMCSampler"
    seed: Optional[int] = None
    qmc_type: str = "sobol"
    scramble: bool = False
    independent_sampler: Optional[Any] = None
    warn_asynchronous_seeding: bool = True
    warn_independent_sampling: bool = True


@dataclass
class NopPrunerConf:
    """No pruning: every trial runs to its end."""

    _target_: str = "optuna.pruners.NopPruner"


@dataclass
class MedianPrunerConf:
    """Stops a trial whose value is worse than the median of earlier trials at the same step.

    Not before 5 trials have finished, nor at a trial's first validation (``n_warmup_steps: 1``).
    """

    _target_: str = "optuna.pruners.MedianPruner"
    n_startup_trials: int = 5
    n_warmup_steps: int = 1
    interval_steps: int = 1
    n_min_trials: int = 1


@dataclass
class PercentilePrunerConf:
    """Like the median pruner, but keeps only trials within the best ``percentile`` percent at each step."""

    _target_: str = "optuna.pruners.PercentilePruner"
    percentile: float = 25.0
    n_startup_trials: int = 5
    n_warmup_steps: int = 1
    interval_steps: int = 1
    n_min_trials: int = 1


@dataclass
class SuccessiveHalvingPrunerConf:
    """Asynchronous successive halving: keeps the best 1/reduction_factor of trials at each rung."""

    _target_: str = "optuna.pruners.SuccessiveHalvingPruner"
    min_resource: Any = "auto"
    reduction_factor: int = 4
    min_early_stopping_rate: int = 0
    bootstrap_count: int = 0


@dataclass
class HyperbandPrunerConf:
    """Hyperband: successive halving over several brackets of minimum resource."""

    _target_: str = "optuna.pruners.HyperbandPruner"
    min_resource: int = 1
    max_resource: Any = "auto"
    reduction_factor: int = 3
    bootstrap_count: int = 0


@dataclass
class GridSamplerConf:
    """Every combination of the searched values (``choice()`` and ``range()`` only), each once.

    The sweeper gives it the grid, and runs at most as many trials as the grid holds.
    """

    _target_: str = "optuna.samplers.GridSampler"
    _partial_: bool = True
    seed: Optional[int] = None


#: Options of the hydra/sweeper/sampler and hydra/sweeper/pruner groups.
SAMPLERS = {"cmaes": CmaEsSamplerConf, "gp": GPSamplerConf, "grid": GridSamplerConf, "nsgaii": NSGAIISamplerConf,
            "qmc": QMCSamplerConf, "random": RandomSamplerConf, "tpe": TPESamplerConf}
PRUNERS = {"hyperband": HyperbandPrunerConf, "median": MedianPrunerConf, "none": NopPrunerConf,
           "percentile": PercentilePrunerConf, "successive_halving": SuccessiveHalvingPrunerConf}


@dataclass
class LitOptunaSweeperConf:
    """Settings of ``hydra/sweeper=lit_optuna``.

    Attributes:
        sampler: One of :data:`SAMPLERS` (``tpe`` by default), or any config with
            a ``_target_`` that builds an Optuna sampler; seed it with ``sampler.seed``.
        pruner: One of :data:`PRUNERS` (``none`` by default), or any config with a
            ``_target_`` that builds an Optuna pruner.
        n_trials: Trials the study holds when the sweep ends, counting those a
            previous sweep in the same storage ran (complete, pruned or failed).
        n_jobs: Trials run at once. With the basic launcher, above 1 runs each
            trial in its own process and starts the next as soon as any ends;
            other launchers (joblib, submitit) get ``n_jobs`` trials per batch.
        warm_start: For lit_train, with ``n_jobs`` above 1 on Linux, fork each trial's
            process from a parent that imported torch and Lightning once for the sweep,
            so that a trial starts in about a second; ``false`` starts each as ``python
            -m lit_train`` (seconds of imports each). Other apps' trials start with
            the app's own command.
        direction: ``minimize`` or ``maximize`` what the jobs return; ``null`` follows
            the app's top-level ``mode`` (``min`` or ``max``) if it has one, else
            minimizes.
        study_name: The study's name in the storage; ``null`` names it after the app
            (``lit_train``, else ``hydra.job.name``).
        storage: Where the study lives: a file path ending in ``.journal`` (Optuna's
            journal file, for workers on several machines sharing a filesystem), an
            SQLAlchemy URL (``postgresql://...``, ``mysql://...``, ``sqlite:///...``),
            or ``null`` for ``sqlite:///<sweep dir>/optuna.db`` (one machine). Sweeps
            started with the same storage, study name and ``hydra.sweep.dir`` are
            workers of one study and run ``n_trials`` trials together.
        heartbeat_interval: Seconds between the heartbeats a worker records for each
            trial it runs; ``null`` records none, and a dead worker's trial then stays
            running in the study.
        grace_period: Seconds without a heartbeat after which any worker of the study
            records a running trial as failed (its worker died); above ``heartbeat_interval``.
        max_retries: Times a trial failed that way is run again with the same
            parameters, as a new trial that takes its place in ``n_trials``.
        max_failure_rate: The fraction of each batch of ``n_jobs`` trials that may fail
            before the sweep fails; ``null`` is 0.0 (any failure ends the sweep, as in
            hydra-optuna-sweeper), except for lit_train, where it is 1.0.
        params: The search space, one override per key: ``interval(a,b)``,
            ``tag(log,interval(a,b))``, ``choice(x,y,...)``, ``range(a,b,step)``,
            or a plain value for every trial. The command line adds to it.
        custom_search_space: The dotted path of a function ``(cfg, trial)`` called for
            each trial after the params are drawn: each param it suggests on the Optuna
            ``trial`` (``trial.suggest_float("z", ...)``) and each item of the dict it
            may return becomes an override of the trial's job.
    """

    defaults: list[Any] = field(default_factory=lambda: [{"sampler": "tpe"}, {"pruner": "none"}])
    _target_: str = "hydra_plugins.lit_train_optuna_sweeper.optuna_sweeper.LitOptunaSweeper"
    # The sampler and pruner reach the sweeper as configs: it seeds, builds and records them itself.
    _recursive_: bool = False
    sampler: Any = MISSING
    pruner: Any = MISSING
    n_trials: int = 20
    n_jobs: int = 1
    warm_start: bool = True
    direction: Optional[str] = None
    study_name: Optional[str] = None
    storage: Optional[str] = None
    heartbeat_interval: Optional[int] = 60
    grace_period: int = 180
    max_retries: int = 0
    max_failure_rate: Optional[float] = None
    params: Optional[dict[str, Any]] = field(default_factory=dict)
    custom_search_space: Optional[str] = None


store = ConfigStore.instance()
store.store(group="hydra/sweeper", name="lit_optuna", node=LitOptunaSweeperConf, provider=PROVIDER)
for name, node in SAMPLERS.items():
    store.store(group="hydra/sweeper/sampler", name=name, node=node, provider=PROVIDER)
for name, node in PRUNERS.items():
    store.store(group="hydra/sweeper/pruner", name=name, node=node, provider=PROVIDER)
