"""Validation of a composed config, before torch or Lightning is imported.

:func:`validate` returns every problem at once, one line each, naming the
config path, the bad value and what is allowed, so a bad command fails in well
under a second instead of minutes into a run.
"""

import importlib.util
import os
import re
import tempfile
import zipfile
from pathlib import Path
from collections.abc import Mapping, Sequence
from typing import Any

from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig, ListConfig, OmegaConf
from omegaconf.errors import MissingMandatoryValue, OmegaConfBaseException

from lit_train.config.callback_specs import CALLBACKS
from lit_train.config.specs import (
    DATA_MODULES, HYDRA_KEYS, MODULES, NETWORKS, OPTIMIZERS, OWN_SETTINGS, SCHEDULERS, TRAINER_ARGUMENTS,
    TRAINER_SET_BY_LIT_TRAIN, ModuleSpec, SchedulerSpec, Spec,
)
from lit_train.config.messages import did_you_mean
from lit_train.config.rules import (
    COUNT, KERNEL, NON_NEGATIVE, POSITIVE, SEED, Built, Flag, ListOf, Metric, Number, OneOf, Text, Union,
)
from lit_train.config.targets import Site, TargetPolicy, entry_problem, sets_key, sites, typed

_BAD = object()  # stands for a value that could not be resolved (already reported)

#: Every spec of a ``_target_``, wherever its node sits (a user's own class has none).
SPEC_TABLES: tuple[Mapping[str, Spec], ...] = (OPTIMIZERS, SCHEDULERS, DATA_MODULES, NETWORKS, MODULES, CALLBACKS)

ROOT_RULES = {
    "action": OneOf(("doctor", "lr_find", "show_schedule", "train")),
    "seed": SEED,
    "deterministic": Union((Flag(), OneOf(("warn",)))),
    "train": Flag(),
    "test": Flag(),
    "ckpt_path": Text(nullable=True),
    "resume": OneOf(("auto",), nullable=True),
    "monitor": Text(),
    "mode": OneOf(("max", "min")),
    "run_dir": Text(),
    "verbose": Flag(),
    "rendezvous_timeout": Number(0, low_open=True, nullable=True),
    "overwrite": Flag(),
    "schedule_log_scale": Flag(nullable=True),
    "allowed_targets": ListOf(Text(), nullable=True),
}
GROUP_RULES: dict[str, dict[str, Any]] = {
    # lit_train's own settings of the optimizer and scheduler; each target's arguments are checked by its spec.
    "optimization": {
        "decay_norm_and_bias": Flag(),
        "scale_lr": OneOf(("linear", "none", "sqrt")),
        "base_batch_size": COUNT,
        "interval": OneOf(("epoch", "step"), nullable=True),
        "frequency": COUNT,
        "kernel": OneOf(("auto", "default")),
    },
    "trainer": {
        "max_epochs": Number(1, integer=True, nullable=True, also=(-1,)),
        "max_steps": Number(1, integer=True, also=(-1,)),
        "accumulate_grad_batches": COUNT,
        "gradient_clip_val": Number(0, nullable=True),
        "gradient_clip_algorithm": OneOf(("norm", "value"), nullable=True),
        "precision": OneOf(
            ("64-true", "32-true", "16-true", "bf16-true", "16-mixed", "bf16-mixed", "64", "32", "16", "bf16", 64, 32, 16),
        ),
        "num_nodes": COUNT,
        # Lightning's forms: a count (-1: all), device indices, or a string ("auto", "0,1").
        "devices": Union((Number(1, integer=True, also=(-1,)), ListOf(Number(0, integer=True)), Text())),
        "check_val_every_n_epoch": Number(1, integer=True, nullable=True),
        "log_every_n_steps": COUNT,
        "fast_dev_run": Union((Flag(), Number(0, integer=True))),
        "overfit_batches": NON_NEGATIVE,
        "limit_train_batches": Number(0, nullable=True),
        "limit_val_batches": Number(0, nullable=True),
        "limit_test_batches": Number(0, nullable=True),
        "detect_anomaly": Flag(),
        "min_epochs": Number(0, integer=True, nullable=True),
        "min_steps": Number(0, integer=True, nullable=True),
        "limit_predict_batches": Number(0, nullable=True),
        # A fraction of the training epoch, or a number of batches.
        "val_check_interval": Number(0, low_open=True, nullable=True),
        "num_sanity_val_steps": Number(0, integer=True, nullable=True, also=(-1,)),
        "enable_checkpointing": Flag(nullable=True),
        "enable_progress_bar": Flag(nullable=True),
        "enable_model_summary": Flag(nullable=True),
        "benchmark": Flag(nullable=True),
        "inference_mode": Flag(),
        "use_distributed_sampler": Flag(),
        "barebones": Flag(),
        "sync_batchnorm": Flag(),
        "reload_dataloaders_every_n_epochs": Number(0, integer=True),
        "enable_autolog_hparams": Flag(),
        "profiler": Union((OneOf(("advanced", "pytorch", "simple"), nullable=True), Built())),
    },
    # action=doctor's thresholds (lit_train.training.doctor.DoctorSettings).
    "doctor": {
        "data_batches": COUNT,
        "scale_limit": Number(1, low_open=True),
        "imbalance_ratio": Number(1, low_open=True),
        "overlap_fraction": Number(0, 1),
        "init_loss_tolerance": Number(0, 1, low_open=True, high_open=True),
        "init_mse_ratio": Number(1, low_open=True),
        "saturation_fraction": Number(0, 1),
        "dead_fraction": Number(0, 1),
        "exploding_norm": POSITIVE,
        "vanishing_ratio": Number(1, low_open=True),
        "overfit_steps": COUNT,
        "overfit_loss_ratio": Number(0, 1, low_open=True),
        "lr_low_factor": Number(1, low_open=True),
    },
    # The health record's thresholds (lit_train.training.health.HealthSettings).
    "health": {
        "report": Flag(),
        "judge_after": Number(0, 1, low_open=True, high_open=True),
        "not_decreasing_tolerance": Number(0, 1, low_open=True, high_open=True),
        "divergence_factor": Number(1, low_open=True),
        "overfitting_rise": POSITIVE,
        "overfitting_patience": COUNT,
        "oscillation_rise_share": Number(0, 1, low_open=True, high_open=True),
        "oscillation_jump": POSITIVE,
        "exploding_norm": POSITIVE,
        "vanishing_norm": NON_NEGATIVE,
        "gradient_patience": COUNT,
    },
}
#: Groups that hold lit_train's own settings and nothing else: a key no rule names is a typo, which would
#: otherwise fail the run only once it reads them (the health record, after training).
SETTINGS_GROUPS = ("doctor", "health")
#: Strategies that need a package beyond lit_train's own dependencies.
STRATEGY_PACKAGES = {"deepspeed": "deepspeed"}
#: Loggers and the package each needs.
LOGGER_PACKAGES = {
    "lightning.pytorch.loggers.TensorBoardLogger": "tensorboard",
    "lit_train.training.loggers.SingleFileTensorBoardLogger": "tensorboard",
    "lightning.pytorch.loggers.MLFlowLogger": "mlflow",
    "lightning.pytorch.loggers.WandbLogger": "wandb",
}
REQUIRED_GROUPS = ("data", "model", "optimizer", "scheduler", "trainer", "logger", "callbacks")
#: ``trial.*``: added to each job by lit_train's Optuna sweeper (hydra/sweeper=lit_optuna), read by lit_train.sweep.pruning.
TRIAL_RULES = {"storage": Text(), "study": Text(), "number": Number(0, integer=True)}


def _plain(node: Any, path: str, problems: list[str]) -> Any:
    """Resolves ``node`` into plain Python, reporting each missing or unresolvable value."""
    if isinstance(node, DictConfig):
        out = {}
        for key in node.keys():
            child = f"{path}.{key}" if path else str(key)
            try:
                value = node[key]
            except MissingMandatoryValue:
                problems.append(f"{child}: missing a required value (set {child}=...)")
                value = _BAD
            except OmegaConfBaseException as e:
                reference = OmegaConf.to_container(node, resolve=False)[key]
                problems.append(f"{child}: cannot resolve {reference!r}: {str(e).splitlines()[0]}")
                value = _BAD
            out[key] = value if value is _BAD else _plain(value, child, problems)
        return out
    if isinstance(node, ListConfig):
        return [_plain(node[i], f"{path}[{i}]", problems) for i in range(len(node))]
    return node


def _check_rules(values: dict, rules: dict, path: str, problems: list[str]) -> None:
    for key, rule in rules.items():
        if key in values and values[key] is not _BAD and (reason := rule.check(values[key])):
            problems.append(f"{path}{key}: {reason}, got {values[key]!r}")


def spec_of(target: Any) -> Spec | None:
    """The spec of ``target`` (a ``_target_``'s value), or ``None`` for a class lit_train does not ship."""
    return next((table[target] for table in SPEC_TABLES if target in table), None)


def _check_arguments(node: dict, path: str, spec: Spec, problems: list[str], own_settings: bool) -> None:
    target = node.get("_target_")
    for key in node:
        if key in spec.params or key in HYDRA_KEYS:
            continue
        if own_settings and key in OWN_SETTINGS:
            problems.append(f"{path}.{key}: lit_train's own setting, not an argument of {target}: set "
                            f"{OWN_SETTINGS[key]} instead")
        else:
            problems.append(f"{path}.{key}: not an argument of {target}{did_you_mean(key, sorted(spec.params))}")


def _check_node(node: dict, path: str, cfg: dict, problems: list[str], own_settings: bool = False) -> Spec | None:
    """Checks ``node`` against the spec of its ``_target_``, and each node with a ``_target_`` inside it.

    A target without a spec is a class lit_train does not know: its arguments
    are its own to check (lit_train passes it only those it takes).
    """
    spec = spec_of(node.get("_target_"))
    if spec is not None:
        _check_arguments(node, path, spec, problems, own_settings)
        reported = len(problems)
        _check_rules(node, spec.params, f"{path}.", problems)
        # Rules between values hold only between values that are each fine: one mistake, one line.
        if len(problems) == reported and _BAD not in node.values():
            for check in spec.checks:
                problems += check(node, path, cfg)
    for key, value in node.items():
        if isinstance(value, dict) and isinstance(value.get("_target_"), str):
            _check_node(value, f"{path}.{key}", cfg, problems)
    return spec


def _run_length_known(trainer: dict) -> bool:
    return trainer.get("max_steps", -1) not in (-1, None) or trainer.get("max_epochs") not in (-1, None)


def _check_optimizer(optimizer: dict, cfg: dict, problems: list[str]) -> None:
    if optimizer.get("_partial_") is not True:
        problems.append("optimizer._partial_: must be true (lit_train passes the parameters later), got "
                        f"{optimizer.get('_partial_')!r}")
    spec = spec_of(optimizer.get("_target_"))
    # PyTorch's kernel switches take no "auto": lit_train's own setting picks by device.
    automatic = [key for key, rule in (spec.params if spec else {}).items() if rule == KERNEL
                 and optimizer.get(key) == "auto"]
    for key in automatic:
        problems.append(f"optimizer.{key}: must be true or false (or null), got 'auto'; set "
                        "optimization.kernel=auto for the fastest kernel the parameters' devices have")
    checked = {key: value for key, value in optimizer.items() if key not in automatic}
    _check_node(checked, "optimizer", cfg, problems, own_settings=True)


def _check_scheduler(scheduler: dict, cfg: dict, problems: list[str]) -> None:
    spec = _check_node(scheduler, "scheduler", cfg, problems, own_settings=True)
    if not isinstance(spec, SchedulerSpec) or not spec.length_arg or spec.length_arg in scheduler:
        return
    trainer = cfg.get("trainer", {})
    interval = cfg.get("optimization", {}).get("interval") or spec.interval
    if interval == "epoch" and trainer.get("max_epochs") in (-1, None):
        problems.append(f"scheduler: {scheduler['_target_']} with interval=epoch needs a finite trainer.max_epochs, "
                        f"got {trainer.get('max_epochs')!r}")
    elif not _run_length_known(trainer):
        problems.append(f"scheduler: {scheduler['_target_']} needs a finite run; set trainer.max_epochs or "
                        "trainer.max_steps")


def _check_model(cfg: dict, problems: list[str]) -> list[str] | None:
    """Checks the model and its fit to the data; returns the metrics the model logs, if lit_train knows the model."""
    model, data = cfg.get("model", {}), cfg.get("data", {})
    spec = _check_node(model, "model", cfg, problems)
    if not isinstance(spec, ModuleSpec):
        return None
    data_spec = DATA_MODULES.get(data.get("_target_"))
    if data_spec is not None and data_spec.task != spec.task:
        problems.append(f"model: {model['_target_']} is for {spec.task} but data ({data['_target_']}) is "
                        f"{data_spec.task} data; pick a matching model or data option")
    return spec.logged()


def _check_monitors(cfg: dict, logged: list[str] | None, problems: list[str]) -> None:
    if logged is None:
        return
    where = [("monitor", cfg.get("monitor"))]
    for name, entry in (cfg.get("callbacks") or {}).items():
        spec = spec_of(entry.get("_target_")) if isinstance(entry, dict) else None
        where += [(f"callbacks.{name}.{key}", entry[key]) for key, rule in (spec.params if spec else {}).items()
                  if isinstance(rule, Metric) and key in entry]
    for path, metric in where:
        if isinstance(metric, str) and metric not in logged:
            problems.append(f"{path}: {metric!r} is never logged by the model{did_you_mean(metric, logged)} "
                            f"(it logs {', '.join(logged)})")


def _check_callbacks(callbacks: Any, cfg: dict, problems: list[str]) -> None:
    if not isinstance(callbacks, dict):
        problems.append(f"callbacks: must be a mapping of name -> callback config, got {callbacks!r}")
        return
    for name, entry in callbacks.items():
        if entry is not None and not (isinstance(entry, dict) and isinstance(entry.get("_target_"), str)):
            problems.append(f"callbacks.{name}: must be a callback config with a _target_ (or null to switch it off), "
                            f"got {entry!r}")
        elif entry is not None:
            _check_node(entry, f"callbacks.{name}", cfg, problems)


def _check_trainer_keys(trainer: dict, problems: list[str]) -> None:
    if trainer.get("_target_") != "lightning.pytorch.Trainer":
        return
    for key in trainer:
        if key in TRAINER_SET_BY_LIT_TRAIN:
            problems.append(f"trainer.{key}: set by lit_train (from its groups and the run directory), not here")
        elif key not in TRAINER_ARGUMENTS and key not in HYDRA_KEYS:
            problems.append(f"trainer.{key}: not an argument of lightning.pytorch.Trainer"
                            f"{did_you_mean(key, sorted(TRAINER_ARGUMENTS - TRAINER_SET_BY_LIT_TRAIN))}")


def _check_packages(cfg: dict, problems: list[str]) -> None:
    strategy = str(cfg.get("trainer", {}).get("strategy", ""))
    for prefix, package in STRATEGY_PACKAGES.items():
        if strategy.startswith(prefix) and importlib.util.find_spec(package) is None:
            problems.append(f"trainer.strategy: {strategy!r} needs the {package} package (pip install {package})")
    logger = cfg.get("logger", {}).get("_target_")
    package = LOGGER_PACKAGES.get(logger)
    if package and importlib.util.find_spec(package) is None:
        problems.append(f"logger: {logger} needs the {package} package (pip install {package}, "
                        "or lit-train[loggers])")


def _command_line_of_job() -> list[str] | None:
    """The overrides of the Hydra job now running that the user wrote: those a sweeper did not generate from
    ``hydra.sweeper.params`` (which a config file can set). ``None`` outside a Hydra job."""
    if not HydraConfig.initialized():
        return None
    hydra = HydraConfig.get()
    generated = set((hydra.sweeper.get("params") or {}).keys())
    record = OmegaConf.to_container(hydra.overrides, resolve=False)  # as typed: ${...} left unresolved
    overrides = [*record["task"], *record["hydra"]]
    return [o for o in overrides if o.lstrip("+~").partition("=")[0] not in generated]


def target_policy(cfg: dict, command_line: Sequence[str] | None, problems: list[str]) -> TargetPolicy:
    """The policy for ``cfg``'s targets: lit_train's packages plus ``allowed_targets`` if the user set it.

    With the command line known, only the command line may add to the allow-list: an ``allowed_targets`` that
    a config file sets is reported and not used.
    """
    additions = cfg.get("allowed_targets")
    if not isinstance(additions, list) or any(entry_problem(entry) for entry in additions):
        for entry in additions if isinstance(additions, list) else []:
            if reason := entry_problem(entry):
                problems.append(f"allowed_targets: {reason}")
        additions = []
    if additions and command_line is not None and not sets_key(command_line, "allowed_targets"):
        problems.append(f"allowed_targets: {additions!r} is set by a config file, not the command line; only the "
                        f"command line can allow more targets (add allowed_targets=[{','.join(additions)}] "
                        "if you trust that config)")
        additions = []
    return TargetPolicy(tuple(additions), typed(command_line or ()))


def _check_targets(cfg: DictConfig, plain: dict, command_line: Sequence[str] | None, problems: list[str]) -> None:
    """Every ``_target_`` (and the ``path`` a locator such as hydra.utils.get_class takes) must be importable
    (checked without importing it), not denied, and allowed: by lit_train's packages, ``allowed_targets``, or
    the user's own command line."""
    policy = target_policy(plain, command_line, problems)
    problems += policy.problems(sites(cfg))


def hydra_problems(cfg: DictConfig, command_line: Sequence[str]) -> list[str]:
    """Every problem with the targets of Hydra's node of a composed config: its callbacks, launcher, sweeper
    (and the targets its ``params`` may choose), and the handlers, formatters and filters of its logging.

    Checked once per command: a sweep's jobs share the node.
    """
    reported_by_validate: list[str] = []
    try:
        additions = _plain(cfg.get("allowed_targets"), "allowed_targets", reported_by_validate)
    except OmegaConfBaseException:
        additions = None
    policy = target_policy({"allowed_targets": additions}, command_line, reported_by_validate)
    hydra = cfg.hydra
    found = []
    for key in hydra.keys():
        node = None if OmegaConf.is_interpolation(hydra, key) else hydra[key]
        if isinstance(node, (DictConfig, ListConfig)):
            logging = key in ("hydra_logging", "job_logging")
            found += sites(node, f"hydra.{key}", ("_target_", "class", "()") if logging else ("_target_",))
    params = OmegaConf.to_container(hydra.sweeper, resolve=False).get("params") if "sweeper" in hydra else None
    for key, value in (params or {}).items():
        if str(key).endswith("_target_"):
            found += [Site(f"hydra.sweeper.params.{key}", target)
                      for _, target in typed([f"{key}={value}"]) if isinstance(target, str)]
    return policy.problems(found)


def _can_create_in(folder: Path) -> bool:
    """Whether a directory can be made in ``folder``, tried: ``os.access`` tells root yes everywhere, /proc too."""
    try:
        os.rmdir(tempfile.mkdtemp(prefix=".lit_train-check-", dir=folder))
    except OSError:
        return False
    return True


def _check_paths(cfg: dict, problems: list[str]) -> None:
    ckpt = cfg.get("ckpt_path")
    if isinstance(ckpt, str) and not Path(ckpt).is_file():
        problems.append(f"ckpt_path: no checkpoint file at {ckpt!r}")
    elif isinstance(ckpt, str) and not zipfile.is_zipfile(ckpt):
        # torch.save writes a zip archive; anything else is truncated, corrupt or not a checkpoint.
        problems.append(f"ckpt_path: {ckpt!r} is not a readable checkpoint (truncated or corrupt?)")
    if cfg.get("test") is True and cfg.get("train") is False and ckpt is None:
        problems.append("ckpt_path: test=true with train=false needs the checkpoint to test (ckpt_path=...)")
    if ckpt is not None and cfg.get("resume") == "auto":
        problems.append(f"resume: resume=auto finds the checkpoint itself; drop ckpt_path={ckpt!r} or resume=auto")
    if cfg.get("train") is False and cfg.get("test") is False:
        problems.append("train: nothing to do with train=false and test=false")
    if cfg.get("overwrite") is True and cfg.get("resume") == "auto":
        problems.append("overwrite: overwrite=true starts over and resume=auto continues; choose one")
    run_dir = cfg.get("run_dir")
    if isinstance(run_dir, str):
        existing = Path(os.path.abspath(run_dir))
        while not existing.exists():
            existing = existing.parent
        if not existing.is_dir() or not _can_create_in(existing):
            problems.append(f"run_dir: cannot write under {str(existing)!r} (for {run_dir!r}); "
                            "choose another with hydra.run.dir=...")


def _check_trial(trial: Any, problems: list[str]) -> None:
    if not isinstance(trial, dict):
        problems.append(f"trial: must be the sweeper's mapping of {', '.join(TRIAL_RULES)}, got {trial!r}")
        return
    _check_rules(trial, TRIAL_RULES, "trial.", problems)
    for key in sorted(TRIAL_RULES.keys() - trial.keys()):
        problems.append(f"trial.{key}: missing (the lit_optuna sweeper sets {', '.join(TRIAL_RULES)} together)")
    for key in sorted(trial.keys() - TRIAL_RULES.keys()):
        problems.append(f"trial.{key}: no such key{did_you_mean(key, TRIAL_RULES)} (keys: {', '.join(TRIAL_RULES)})")


def _echoed_key(cfg: DictConfig, path: str) -> str | None:
    """The key that ``path``'s value merely repeats (``${monitor}`` -> ``monitor``), else ``None``."""
    parent_path, _, leaf = path.rpartition(".")
    try:
        parent = OmegaConf.select(cfg, parent_path, throw_on_resolution_failure=False) if parent_path else cfg
    except OmegaConfBaseException:
        return None
    if not isinstance(parent, DictConfig) or leaf not in parent or not OmegaConf.is_interpolation(parent, leaf):
        return None
    echoed = re.fullmatch(r"\$\{([\w.]+)\}", str(OmegaConf.to_container(parent, resolve=False)[leaf]))
    return echoed.group(1) if echoed else None


def _drop_echoes(cfg: DictConfig, problems: list[str]) -> list[str]:
    """Drops the problems of keys that only repeat a key whose own problem is reported.

    ``monitor=val/los`` is one mistake, though checkpointing and early stopping
    read it as ``${monitor}`` too: it gets one line, not one per reader.
    """
    reported = {problem.split(":", 1)[0] for problem in problems}
    return [problem for problem in problems if _echoed_key(cfg, problem.split(":", 1)[0]) not in reported]


def validate(cfg: DictConfig, command_line: Sequence[str] | None = None) -> list[str]:
    """Returns every problem of a composed lit_train config (empty when it is fine).

    ``command_line``: the overrides the user wrote. The targets they set are the
    user's own and need no ``allowed_targets`` entry, and only they may set
    ``allowed_targets``. Inside a Hydra job they default to the job's overrides
    (less those a sweeper generated); elsewhere to unknown, which trusts no
    target and takes ``allowed_targets`` as given.

    Example::

        >>> from omegaconf import OmegaConf
        >>> validate(OmegaConf.create({"seed": -1.5}))[0]
        'seed: must be an integer in [0, 4294967295], got -1.5'
    """
    problems: list[str] = []
    plain = _plain(cfg, "", problems)
    _check_rules(plain, ROOT_RULES, "", problems)
    present = [g for g in REQUIRED_GROUPS if g in plain]
    for group in present:
        if not isinstance(plain[group], dict) and plain[group] is not _BAD:
            problems.append(f"{group}: must be a config mapping, got {plain[group]!r}")
            return problems
    if "data" in plain:
        _check_node(plain["data"], "data", plain, problems)
    for group in ("optimization", "trainer", "doctor", "health"):
        if group in plain:
            _check_rules(plain[group], GROUP_RULES[group], f"{group}.", problems)
    for group in (g for g in SETTINGS_GROUPS if isinstance(plain.get(g), dict)):
        for key in sorted(set(plain[group]) - set(GROUP_RULES[group])):
            problems.append(f"{group}.{key}: no such setting{did_you_mean(key, GROUP_RULES[group])} "
                            f"(settings: {', '.join(GROUP_RULES[group])})")
    if "trainer" in plain:
        _check_trainer_keys(plain["trainer"], problems)
    if "optimizer" in plain:
        _check_optimizer(plain["optimizer"], plain, problems)
    logged = _check_model(plain, problems) if "model" in plain else None
    if "scheduler" in plain:
        _check_scheduler(plain["scheduler"], plain, problems)
    if "callbacks" in plain:
        _check_callbacks(plain["callbacks"], plain, problems)
    _check_monitors(plain, logged, problems)
    if "trial" in plain:
        _check_trial(plain["trial"], problems)
    _check_packages(plain, problems)
    _check_targets(cfg, plain, command_line if command_line is not None else _command_line_of_job(), problems)
    _check_paths(plain, problems)
    return _drop_echoes(cfg, problems)
