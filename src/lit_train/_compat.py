"""The one door to private names of Hydra, Lightning and torch that lit_train relies on.

Each private name is looked up here and nowhere else, so that a release that
renames one fails loudly, naming the name and the installed version, instead of
changing behaviour silently. Hydra's names resolve when this module is imported
(the CLI's checks run before torch); Lightning's on first use, as importing
Lightning costs seconds. ``tests/test_compat.py`` resolves every one of them.
"""

import functools
import importlib
import importlib.metadata
from types import ModuleType
from typing import Any

#: The distribution that owns each top-level package named below.
_DISTRIBUTIONS = {"hydra": "hydra-core", "lightning": "lightning", "torch": "torch"}


class CompatError(ImportError):
    """A private name lit_train relies on is missing from the installed version of its package."""


def private(module: str, name: str) -> Any:
    """``module.name``, a private name of another package.

    Raises:
        CompatError: If the installed version has no such name.
    """
    try:
        return getattr(importlib.import_module(module), name)
    except (ImportError, AttributeError) as error:
        distribution = _DISTRIBUTIONS[module.partition(".")[0]]
        raise CompatError(
            f"lit_train relies on {module}.{name}, which {distribution} "
            f"{importlib.metadata.version(distribution)} does not have; install a version that lit_train's "
            "pyproject.toml allows"
        ) from error


def require_attribute(owner: Any, name: str, where: str) -> None:
    """Checks that ``owner`` (a class) still has the private attribute ``name`` that lit_train reads or overrides.

    Raises:
        CompatError: If it does not.
    """
    if not hasattr(owner, name):
        package = owner.__module__.partition(".")[0]
        distribution = _DISTRIBUTIONS[package]
        raise CompatError(
            f"lit_train relies on {owner.__module__}.{owner.__qualname__}.{name} ({where}), which {distribution} "
            f"{importlib.metadata.version(distribution)} does not have; install a version that lit_train's "
            "pyproject.toml allows"
        )


# --- Hydra --------------------------------------------------------------------------------------------------

#: Where Hydra keeps its built-in plugins (launchers, sweepers), which configs name as targets.
HYDRA_CORE_PLUGINS = "hydra._internal.core_plugins"


def initialize_hydra_as_main(config_path: str, config_dir: str | None) -> None:
    """Initializes Hydra's global instance with the search path ``hydra.main`` builds from the same arguments.

    Args:
        config_path: The primary config path (``pkg://...`` or ``file://...``).
        config_dir: The folder of ``--config-dir``, which Hydra adds after the primary path and plugins' paths.
    """
    from hydra.core.config_search_path import SearchPathQuery

    search_path = private("hydra._internal.utils", "create_config_search_path")(config_path)
    if config_dir is not None:
        search_path.prepend(provider="command-line", path=f"file://{config_dir}", anchor=SearchPathQuery(provider="schema"))
    private("hydra._internal.hydra", "Hydra").create_main_hydra2(task_name="lit_train", config_search_path=search_path)


# --- Lightning ----------------------------------------------------------------------------------------------

#: The function Lightning's DDP launcher builds a rank's command with, in the modules that call it.
RANK_COMMAND = "_hydra_subprocess_cmd"


@functools.cache
def rank_command_modules() -> tuple[ModuleType, ...]:
    """Lightning's modules whose ``_hydra_subprocess_cmd`` builds the command of a DDP rank under Hydra.

    Fabric defines the builder; the Trainer's launcher imports it by name, so
    both modules' references are replaced.
    """
    modules = tuple(importlib.import_module(name) for name in (
        "lightning.fabric.strategies.launchers.subprocess_script",
        "lightning.pytorch.strategies.launchers.subprocess_script",
    ))
    for module in modules:
        private(module.__name__, RANK_COMMAND)
    return modules


#: The attribute Lightning sets on a LightningModule around every hook call (about fifty times a step).
CURRENT_HOOK_ATTRIBUTE = "_current_fx_name"


def training_logging_step(trainer: Any) -> bool:
    """Whether Lightning sends step metrics to the loggers at this training batch (a logging step, or the last).

    Lightning's ``should_update_logs`` rule for the fit loop, without its search for the running
    loop through the trainer's state properties, which costs more than the rule on every call:
    read inside a training batch, that loop is the fit loop.
    """
    every = trainer.log_every_n_steps
    if every == 0:
        return False
    return (trainer.fit_loop.epoch_loop._batches_that_stepped + 1) % every == 0 or trainer.should_stop


def accumulating(trainer: Any) -> bool:
    """Whether this training batch only accumulates gradients, without an optimizer step after it."""
    return trainer.fit_loop._should_accumulate()


#: The callback hooks Lightning calls at every batch.
BATCH_HOOKS = (
    "on_train_batch_start", "on_train_batch_end", "on_before_backward", "on_after_backward",
    "on_before_optimizer_step", "on_before_zero_grad", "on_validation_batch_start", "on_validation_batch_end",
    "on_test_batch_start", "on_test_batch_end", "on_predict_batch_start", "on_predict_batch_end",
)


def skip_unused_batch_hooks(callbacks: list[Any]) -> None:
    """Lets Lightning pass over the batch hooks that each of ``callbacks`` leaves as ``Callback``'s no-op.

    Lightning calls every hook on every callback, overridden or not, each call inside a
    profiler context named from the callback's state key: about a microsecond per callback
    and hook, seven hooks a training step. It skips a hook whose attribute is not callable,
    so an instance attribute ``None`` over an inherited no-op takes it out of the loop.
    Hooks a callback's class overrides, or its instance sets, stay as they are, and so do all
    hooks of a callback that refuses new attributes (a frozen dataclass).
    """
    from lightning.pytorch.callbacks import Callback

    for callback in callbacks:
        unused = [hook for hook in BATCH_HOOKS
                  if hook not in vars(callback) and getattr(type(callback), hook) is getattr(Callback, hook)]
        try:
            for hook in unused:
                setattr(callback, hook, None)
        except AttributeError:
            continue  # nothing was set: the first assignment is the one refused


def metric_dicts(trainer: Any) -> tuple[dict[str, Any], dict[str, Any], dict[str, Any]]:
    """The dicts behind ``trainer.callback_metrics``, ``logged_metrics`` and ``progress_bar_metrics``.

    Each of those properties first recomputes every value logged through ``self.log`` into its dict.
    """
    connector = trainer._logger_connector
    return connector._callback_metrics, connector._logged_metrics, connector._progress_bar_metrics


def epoch_logging_step(trainer: Any) -> int:
    """The step Lightning logs a training or validation epoch's metrics at, read in that epoch's end hooks.

    Lightning counts the batches that stepped an optimizer; its validation epochs log at that
    count, and a training epoch's end steps the count back by one while it logs, so that both
    land on the epoch's last step.
    """
    stepped = trainer.fit_loop.epoch_loop._batches_that_stepped
    return stepped - 1 if trainer.training else stepped


def state_key(callback: Any, **identity: Any) -> str:
    """Lightning's checkpoint key for ``callback`` with ``identity`` (``Callback._generate_state_key``)."""
    return callback._generate_state_key(**identity)


# ``ModelCheckpoint`` internals that lit_train's subclass reuses to write ``last.ckpt`` on schedule.

def checkpoint_interval(callback: Any) -> int:
    """The ``every_n_train_steps`` a ``ModelCheckpoint`` was built with (0: none)."""
    return callback._every_n_train_steps


def monitor_candidates(callback: Any, trainer: Any) -> dict[str, Any]:
    """The metrics a ``ModelCheckpoint`` would choose the best from now."""
    return callback._monitor_candidates(trainer)


def should_skip_saving_checkpoint(callback: Any, trainer: Any) -> bool:
    """Whether a ``ModelCheckpoint`` would skip a save now (sanity check, fast_dev_run, already saved this step)."""
    return callback._should_skip_saving_checkpoint(trainer)


def save_topk_checkpoint(callback: Any, trainer: Any, candidates: dict[str, Any]) -> None:
    """Lets a ``ModelCheckpoint`` weigh a save as one of its best ``save_top_k``, as Lightning does."""
    callback._save_topk_checkpoint(trainer, candidates)


def save_last_checkpoint(callback: Any, trainer: Any, candidates: dict[str, Any]) -> None:
    """Writes a ``ModelCheckpoint``'s ``last.ckpt`` (or link) as Lightning does."""
    callback._save_last_checkpoint(trainer, candidates)


def joins_process_group(strategy: Any) -> bool:
    """Whether the process that runs ``strategy``'s fit joins its process group itself.

    Not so when Lightning starts the run's processes with multiprocessing (``ddp_spawn``, ``ddp_fork``,
    XLA): the process then waits for its children, which join.
    """
    launcher = getattr(strategy, "launcher", None)
    return not isinstance(launcher, private("lightning.pytorch.strategies.launchers", "_MultiProcessingLauncher"))


def validation_follows(trainer: Any) -> bool:
    """Whether the fit loop validates right after the training batch that just ended (Lightning's own decision)."""
    return trainer.fit_loop.epoch_loop._should_check_val_fx(trainer.fit_loop._data_fetcher)


# --- torch --------------------------------------------------------------------------------------------------


def fused_or_foreach(params: list[Any], differentiable: bool, use_fused: bool) -> tuple[bool, bool]:
    """torch's own choice between an optimizer's fused and foreach kernels for ``params`` (``(fused, foreach)``).

    Fused only with ``use_fused`` and every parameter a floating-point tensor on a device with fused kernels;
    else foreach where every parameter's device has foreach kernels; neither for a differentiable optimizer.
    """
    choose = private("torch.optim.optimizer", "_default_to_fused_or_foreach")
    return choose(params, differentiable, use_fused=use_fused)
