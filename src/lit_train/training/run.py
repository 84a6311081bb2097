"""Turns a validated config into data, module, callbacks, logger and Trainer, and runs them.

This is the only module besides the CLI that reads the config; everything it
builds (networks, LightningModules, data modules, callbacks) is plain Python.
"""

import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import lightning.pytorch as L
from hydra.core.hydra_config import HydraConfig
from hydra.utils import instantiate
from lightning.fabric.utilities.rank_zero import rank_zero_only
from lightning.pytorch.callbacks import Callback, EarlyStopping, LearningRateMonitor, ModelCheckpoint, ProgressBar
from lightning.pytorch.callbacks import ModelSummary as LightningModelSummary
from lightning.pytorch.utilities.model_helpers import is_overridden
from lit_callbacks import Warmup
from omegaconf import DictConfig, OmegaConf

from lit_train._compat import joins_process_group, skip_unused_batch_hooks
from lit_train.config.checks import ConfigProblem
from lit_train.training.atomic import remove_stale_temporaries
from lit_train.training.checkpoint import check_checkpoint_fits
from lit_train.training.checkpoint_io import AtomicCheckpointIO
from lit_train.training.construct import construct, named_parameters_taken
from lit_train.training.console import ModelSummary, QuietLightning, quiet_lightning
from lit_train.training.loggers import ResumableCSVLogger
from lit_train.training.optim import GroupSchedule, Optimization, attach_optimizers
from lit_train.training.profiler import NoProfiler
from lit_train.training.rendezvous import RendezvousWatch
from lit_train.training.run_dir import Footprint
from lit_train.training.signals import StopAtStepEnd, StopRequested, StopSignals
from lit_train.training.resume import RngState, find_resume_checkpoint
from lit_train.config.specs import MODULES, SCHEDULERS
from lit_train.training.summary import EXIT_RUN_FAILED, format_summary, monitored_value, to_number, write_json_atomic
from lit_train.training.tune import find_lr, show_schedule, use_lr_command

if TYPE_CHECKING:
    from lit_train.training.curves import Curves
    from lit_train.training.doctor.findings import TrainingFinding

LAST_CHECKPOINT = "last.ckpt"


def build_optimization(cfg: DictConfig) -> Optimization:
    """The ``optimizer`` and ``scheduler`` groups as constructor partials, applied as ``optimization`` says."""
    settings = cfg.optimization
    target = cfg.scheduler.get("_target_")
    spec = SCHEDULERS.get(target)
    return Optimization(
        optimizer=instantiate(cfg.optimizer, _convert_="all"),
        scheduler=instantiate(cfg.scheduler, _convert_="all") if target is not None else None,
        interval=settings.interval or (spec.interval if spec else "epoch"),
        frequency=settings.frequency,
        monitor=cfg.monitor if spec is None or spec.needs_monitor else None,
        length_arg=spec.length_arg if spec else None,
        decay_norm_and_bias=settings.decay_norm_and_bias,
        scale_lr=settings.scale_lr,
        base_batch_size=settings.base_batch_size,
        batch_size=cfg.data.get("batch_size"),
        kernel=settings.kernel,
    )


def build_callbacks(callbacks_cfg: DictConfig) -> list[Callback]:
    """One callback per named entry of the ``callbacks`` group; entries set to ``null`` are switched off.

    Warmup goes first, whatever the config order: the LR monitor must see the warmed LR.
    """
    callbacks = [instantiate(entry, _convert_="all") for entry in callbacks_cfg.values() if entry is not None]
    return sorted(callbacks, key=lambda callback: not isinstance(callback, Warmup))


def build_logger(logger_cfg: DictConfig, resume_from: str | None = None) -> Any:
    """The configured logger, or ``False`` for ``logger=none``; ``resume_from``: the checkpoint training resumes from."""
    target = logger_cfg.get("_target_")
    if target is None:
        return False
    logger = instantiate(logger_cfg, _convert_="all")
    if resume_from is not None and isinstance(logger, ResumableCSVLogger):
        logger.continue_from(resume_from)  # keeps metrics.csv's rows from before the checkpoint
    return logger


#: Why a callback stops a run that failed numerically: the run's status is then "diverged".
DIVERGED_REASONS = ("non_finite_gradient", "too_many_skipped_steps", "diverged", "non_finite", "divergence")


class Diverged(Exception):
    """The run failed numerically (see :data:`DIVERGED_REASONS`); its summary is written.

    Args:
        reason: The ``stopped_reason``.
        value: What the run returns to sweepers (:func:`~lit_train.training.summary.monitored_value`).
    """

    def __init__(self, reason: str, value: float | None) -> None:
        super().__init__(f"the run diverged ({reason})")
        self.reason = reason
        self.value = value


def _stopped_reason(trainer: L.Trainer, status: str, action: str) -> str:
    """Why the run ended: a callback's own reason (early stopping, non-finite gradients) or the trainer's limit."""
    if status != "completed":
        return "error" if status == "failed" else status
    if action != "train":
        return action
    for callback in trainer.callbacks:
        if reason := getattr(callback, "stopped_reason", None):
            return reason
        if isinstance(callback, EarlyStopping) and callback.stopped_epoch > 0:
            return "early_stopping"
    if trainer.fast_dev_run:
        return "fast_dev_run"
    if trainer.max_steps != -1 and trainer.global_step >= trainer.max_steps:
        return "max_steps"
    if trainer.max_epochs is not None and trainer.current_epoch >= trainer.max_epochs:
        return "max_epochs"
    return "should_stop"


def _effective_batch_size(cfg: DictConfig, trainer: L.Trainer) -> int | None:
    batch_size = cfg.data.get("batch_size")
    return batch_size * trainer.world_size * trainer.accumulate_grad_batches if isinstance(batch_size, int) else None


def _initial_lr(trainer: L.Trainer) -> float | None:
    """The LR the first param group started from (after any LR scaling), before the schedule moved it."""
    if not trainer.optimizers:
        return None
    group = trainer.optimizers[0].param_groups[0]
    return group.get("initial_lr", group["lr"])


def _skipped_steps(trainer: L.Trainer) -> int | None:
    """Optimizer steps a gradient monitor dropped for non-finite gradients; ``None`` without such a monitor."""
    counts = [getattr(callback, "skipped_steps", None) for callback in trainer.callbacks]
    counts = [count for count in counts if isinstance(count, int)]
    return sum(counts) if counts else None


def _summarize(cfg: DictConfig, trainer: L.Trainer, status: str, started: float, results: dict) -> dict[str, Any]:
    checkpoint = trainer.checkpoint_callback
    run_dir = Path(cfg.run_dir)
    last = run_dir / "checkpoints" / LAST_CHECKPOINT
    fit_metrics = results.pop("final_metrics", {})
    return {
        "run_dir": str(run_dir),
        "status": status,
        "monitor": cfg.monitor,
        "mode": cfg.mode,
        "best_score": to_number(getattr(checkpoint, "best_model_score", None)),
        "best_checkpoint": getattr(checkpoint, "best_model_path", "") or None,
        "last_checkpoint": str(last) if last.exists() else None,
        "final_monitor_value": fit_metrics.get(cfg.monitor),
        "final_metrics": fit_metrics,
        "test_metrics": results.pop("test_metrics", {}),
        "stopped_reason": results.get("signal") or _stopped_reason(trainer, status, cfg.action),
        "skipped_steps": _skipped_steps(trainer),
        "wall_time_s": round(time.perf_counter() - started, 3),
        "global_step": trainer.global_step,
        "epoch": trainer.current_epoch,
        "lr": _initial_lr(trainer),
        "effective_batch_size": _effective_batch_size(cfg, trainer),
        "seed": cfg.seed,
        **results,
    }


def build_trainer(cfg: DictConfig, run_dir: Path, signals: StopSignals, resume_from: str | None = None) -> L.Trainer:
    """The Trainer with the configured callbacks and logger, writing into ``run_dir`` (resuming from ``resume_from``).

    ``signals`` end the run at the next optimizer step, after saving ``last.ckpt`` (see :mod:`lit_train.training.signals`).
    """
    logger = build_logger(cfg.logger, resume_from)
    last = run_dir / "checkpoints" / LAST_CHECKPOINT if cfg.action == "train" else None
    callbacks = [*build_callbacks(cfg.callbacks), RngState(), QuietLightning(_reduced_metrics(cfg)),
                 StopAtStepEnd(signals, last)]
    if "trial" in cfg:  # a trial of lit_train's Optuna sweeper: report to the study, stop when pruned
        from lit_train.sweep.pruning import TrialPruning

        callbacks.append(TrialPruning(**cfg.trial, monitor=cfg.monitor))
    # trainer.enable_checkpointing=false and trainer.enable_progress_bar=false win over the callbacks group.
    switched_off = tuple(kind for key, kind in (("enable_checkpointing", ModelCheckpoint),
                                                 ("enable_progress_bar", ProgressBar))
                         if cfg.trainer.get(key) is False)
    callbacks = [c for c in callbacks if not isinstance(c, switched_off)]
    if not logger and any(isinstance(c, LearningRateMonitor) for c in callbacks):
        print("lit_train: callbacks.lr_monitor is off, as logger=none gives it nowhere to log")
        callbacks = [c for c in callbacks if not isinstance(c, LearningRateMonitor)]
    # lit_train's one-line summary unless switched off or a summary callback is configured; Lightning's own
    # default stays off either way (with a configured one, it would only say that it skips).
    configured_summary = any(isinstance(c, LightningModelSummary) for c in callbacks)
    if cfg.trainer.get("enable_model_summary") is not False and not configured_summary:
        callbacks.append(ModelSummary())
    # Sharded strategies write checkpoint folders with their own IO.
    sharded = str(cfg.trainer.get("strategy", "")).startswith(("fsdp", "deepspeed"))
    trainer = instantiate(
        cfg.trainer,
        plugins=None if sharded else [AtomicCheckpointIO()],
        profiler=cfg.trainer.get("profiler") or NoProfiler(),
        callbacks=callbacks,
        logger=logger,
        default_root_dir=str(run_dir),
        enable_checkpointing=True,  # StopAtStepEnd is a Checkpoint: Lightning refuses it otherwise
        enable_progress_bar=any(isinstance(c, ProgressBar) for c in callbacks),
        enable_model_summary=False,
    )
    skip_unused_batch_hooks(trainer.callbacks)
    if logger:
        trainer.logger.log_hyperparams(OmegaConf.to_container(cfg, resolve=True))
    return trainer


def _pruned(trainer: L.Trainer) -> bool:
    """Whether a sweep's pruner stopped this run (see :mod:`lit_train.sweep.pruning`)."""
    return any(getattr(callback, "pruned", False) for callback in trainer.callbacks)


def _checkpoint_to_load(cfg: DictConfig, module: L.LightningModule) -> dict[str, Any]:
    """The checkpoint the run starts from (``ckpt_path``, or what ``resume=auto`` finds), checked against ``module``.

    Checked before the trainer and its logger exist, so a checkpoint that does
    not fit fails the run before anything touches the run directory (the CSV
    logger, for one, trims or replaces an existing metrics.csv).
    """
    results: dict[str, Any] = {"ckpt_path": cfg.ckpt_path}
    source = "ckpt_path"
    if cfg.action == "train" and cfg.resume == "auto":
        results.update(_resume_point(Path(cfg.run_dir)))
        results["ckpt_path"], source = results["resumed_from"], "resume=auto"
    if cfg.action == "train" and results["ckpt_path"] is not None:
        # One line naming the mismatched parameters, before Lightning's wall of missing and unexpected keys.
        check_checkpoint_fits(results["ckpt_path"], module, source)
    return results


def _train_and_test(
    cfg: DictConfig, trainer: L.Trainer, module: L.LightningModule, datamodule: L.LightningDataModule,
    start: dict[str, Any], test: bool,
) -> dict[str, Any]:
    results = dict(start)
    ckpt_path = results.pop("ckpt_path")
    if cfg.train:
        # weights_only: loading a checkpoint must not run code pickled into it (lit_train's hold tensors and plain values).
        trainer.fit(module, datamodule=datamodule, ckpt_path=ckpt_path, weights_only=True)
        _check_trained_on_something(cfg, trainer)
        results["final_metrics"] = {name: to_number(value) for name, value in sorted(trainer.callback_metrics.items())}
        # Now: the test stage reloads the best checkpoint, and with it the callbacks' state of that time.
        results["stopped_reason"] = _stopped_reason(trainer, "completed", cfg.action)
        # Whatever the callbacks did, the final state is always kept as last.ckpt.
        trainer.save_checkpoint(Path(cfg.run_dir) / "checkpoints" / LAST_CHECKPOINT, weights_only=False)
    if test and not _pruned(trainer) and results.get("stopped_reason") not in DIVERGED_REASONS:
        # The path rather than "best": Lightning would warn that StopAtStepEnd is a second Checkpoint callback.
        best = getattr(trainer.checkpoint_callback, "best_model_path", "")
        ckpt = (best or None) if cfg.train else cfg.ckpt_path
        # verbose=False: the run's summary shows the test metrics instead of Lightning's table.
        tested = trainer.test(module, datamodule=datamodule, ckpt_path=ckpt, weights_only=True, verbose=False)
        results["test_metrics"] = {name: to_number(value) for name, value in (tested[0] if tested else {}).items()}
    return results


def _check_trained_on_something(cfg: DictConfig, trainer: L.Trainer) -> None:
    """Fails a fit that had no training batch: Lightning only logs that and returns, as if it had trained."""
    if trainer.fit_loop.max_batches == 0 and trainer.limit_train_batches != 0:
        raise ValueError(f"data: the training data is empty: {cfg.data.get('_target_')} gave no training batch "
                         f"(data.batch_size={cfg.data.get('batch_size')!r}); nothing was trained")


def _resume_point(run_dir: Path) -> dict[str, Any]:
    skipped: list[str] = []
    found = find_resume_checkpoint(run_dir, skipped)
    for reason in skipped:
        print(f"lit_train: resume=auto skips {reason}", file=sys.stderr)
    if found is None:
        print(f"lit_train: resume=auto found no checkpoint in {run_dir / 'checkpoints'}; starting fresh")
        return {"resumed_from": None, "resumed_at_step": None}
    path, step = found
    print(f"lit_train: resume=auto continues from {path} (step {step})")
    return {"resumed_from": str(path), "resumed_at_step": step}


def run(cfg: DictConfig) -> float | None:
    """Does what ``cfg.action`` says (train and/or test, lr_find, show_schedule) and writes ``summary.json``.

    A single run that fails before it wrote a checkpoint writes no summary and
    takes back what it created in its directories (:mod:`lit_train.training.run_dir`).

    Returns:
        The best value of ``cfg.monitor`` (the last one if nothing checkpointed
        the best), for sweepers to optimize; ``None`` if it was never logged.
    """
    run_dir = Path(cfg.run_dir)
    checkpoint_folders = _checkpoint_folders(cfg)
    footprint = None
    if rank_zero_only.rank == 0:
        # Only rank 0 writes checkpoints and summary.json, and no other run writes here now.
        for folder in dict.fromkeys([run_dir, *checkpoint_folders]):
            if stale := remove_stale_temporaries(folder):
                print(f"lit_train: removed {len(stale)} temporary file(s) an interrupted save left in {folder}")
        # A sweeper's trial may run as a single run of its own process; the sweep keeps its failed jobs' directories.
        footprint = None if "trial" in cfg else Footprint.of_single_run(run_dir, checkpoint_folders)
    try:
        # quiet_lightning: and QuietLightning in the processes Lightning starts.
        with quiet_lightning(_reduced_metrics(cfg)), StopSignals() as signals:
            return _run(cfg, run_dir, footprint, signals)
    except BaseException:
        if footprint is not None and not footprint.wrote_checkpoint():
            footprint.take_back()
        raise


def _reduced_metrics(cfg: DictConfig) -> list[str]:
    """The metrics a built-in module logs already reduced over ranks: Lightning's sync_dist advice is for others."""
    spec = MODULES.get(cfg.model.get("_target_"))
    return spec.logged() if spec else []


def _task_overrides() -> list[str]:
    """The run's own command-line overrides, when Hydra runs it (not when ``run`` is called from Python)."""
    return list(HydraConfig.get().overrides.task) if HydraConfig.initialized() else []


def _groups_offered(node: DictConfig, optimization: Optimization) -> dict[str, Any]:
    """What a module asks for by taking an ``optimizer`` or ``scheduler`` argument that its config does not set.

    ``optimizer`` is the optimizer group's ``params -> Optimizer``; ``scheduler``
    the scheduler group as a :class:`GroupSchedule` (``None`` for ``scheduler=none``).
    """
    schedule = GroupSchedule(optimization) if optimization.scheduler is not None else None
    built = {"optimizer": optimization.optimizer, "scheduler": schedule}
    return {name: built[name] for name in named_parameters_taken(node, tuple(built))}


def _check_groups_taken(module: L.LightningModule, offered: dict[str, Any], overrides: list[str]) -> None:
    """A module with its own ``configure_optimizers`` uses only the groups it took as arguments: says which.

    Raises:
        ConfigProblem: If the command line set a group the module does not use, which would be silently
            ignored, or the module keeps a group's builder in its hyperparameters, which its checkpoints
            could then not be safely loaded with.
    """
    name = type(module).__qualname__
    if isinstance(offered.get("scheduler"), GroupSchedule):
        offered["scheduler"].module = module  # its trainer knows the run's length
    if kept := [group for group in offered if group in module.hparams]:
        raise ConfigProblem(f"model: {name} keeps {' and '.join(kept)} in its hyperparameters, so its checkpoints "
                            "would hold code that safe loading refuses; save them without: "
                            f"self.save_hyperparameters(ignore={kept!r})")
    unused = [group for group in ("optimizer", "scheduler") if group not in offered]
    are = "groups are" if len(unused) > 1 else "group is"
    if explicit := [o for o in overrides if unused and o.lstrip("+~").startswith(tuple(unused))]:
        raise ConfigProblem(f"{explicit[0].split('=')[0].lstrip('+~')}: {name} has its own configure_optimizers, "
                            f"so the {' and '.join(unused)} {are} not used; set its optimizer in the module "
                            "(through model.<its argument>=...), or take the group as an argument of that name")
    if offered:
        print(f"lit_train: {name} has its own configure_optimizers and takes its {' and '.join(offered)} from "
              f"lit_train's group{'s' if len(offered) > 1 else ''} of that name")
    if unused:
        print(f"lit_train: {name} has its own configure_optimizers; the {' and '.join(unused)} {are} not used")


def _has_test_stage(cfg: DictConfig, module: L.LightningModule) -> bool:
    """Whether the run tests: ``test=true``, and a module with a ``test_step`` (a user's may have none).

    Raises:
        ConfigProblem: If the run would only test (``train=false``) a module that cannot.
    """
    if not cfg.test or is_overridden("test_step", module, L.LightningModule):
        return cfg.test
    name = type(module).__qualname__
    if not cfg.train:
        raise ConfigProblem(f"test: {name} has no test_step, so train=false test=true has nothing to do")
    print(f"lit_train: {name} has no test_step; the test stage is skipped (test=false silences this line)")
    return False


def _health(cfg: DictConfig, trainer: L.Trainer, summary: dict[str, Any],
            own_optimizer: bool) -> "tuple[Curves, list[TrainingFinding]] | None":
    """A training run's health record (:mod:`lit_train.training.health`), also as ``summary["health"]``;
    ``None`` for the actions that only look and for a run that only tests."""
    if cfg.action != "train" or not cfg.train:
        return None
    from lit_train.training.health import record_health

    curves, findings = record_health(cfg, trainer.loggers, summary, own_optimizer)
    summary["health"] = [finding.to_dict() for finding in findings]
    return curves, findings


def _checkpoint_folders(cfg: DictConfig) -> list[Path]:
    """Where this run's checkpoints go: ``run_dir/checkpoints`` and any checkpoint callback's ``dirpath``."""
    folders = [Path(cfg.run_dir) / "checkpoints"]
    for entry in cfg.callbacks.values():
        if entry is not None and entry.get("dirpath"):
            folders.append(Path(entry.dirpath))
    return list(dict.fromkeys(folders))


def _rendezvous_watch(cfg: DictConfig, trainer: L.Trainer, footprint: Footprint | None) -> RendezvousWatch:
    """Bounds the wait for the run's other processes by ``rendezvous_timeout`` (see :mod:`lit_train.training.rendezvous`)."""
    environment = getattr(trainer.strategy, "cluster_environment", None)
    where = f"{environment.main_address}:{environment.main_port}" if environment is not None else "?"

    def abandon() -> None:
        if footprint is not None and not footprint.wrote_checkpoint():
            footprint.take_back()

    # A parent that starts the processes with multiprocessing waits for them rather than meeting them: no watch.
    processes = trainer.world_size if joins_process_group(trainer.strategy) else 1
    return RendezvousWatch(processes, cfg.rendezvous_timeout, where, abandon, EXIT_RUN_FAILED)


def _run(cfg: DictConfig, run_dir: Path, footprint: Footprint | None, signals: StopSignals) -> float | None:
    started = time.perf_counter()
    L.seed_everything(cfg.seed, workers=True, verbose=False)  # the seed is in the saved config
    datamodule = construct(cfg.data, "data")
    optimization = build_optimization(cfg)
    offered = _groups_offered(cfg.model, optimization)
    module = construct(cfg.model, "model", offered)
    attached = attach_optimizers(module, optimization)
    if not attached:
        _check_groups_taken(module, offered, _task_overrides())
    own_optimizer = not attached and "optimizer" not in offered  # whether optimizer.lr sets the LR
    test = cfg.action == "train" and _has_test_stage(cfg, module)
    start = _checkpoint_to_load(cfg, module)
    trainer = build_trainer(cfg, run_dir, signals, start["ckpt_path"] if cfg.action == "train" and cfg.train else None)

    status, results = "failed", {}
    try:
        with _rendezvous_watch(cfg, trainer, footprint):
            if cfg.action == "lr_find":
                results["lr_suggestion"] = suggestion = find_lr(trainer, module, datamodule)
                if suggestion is not None and trainer.is_global_zero:  # without one, the finder said why
                    # optimizer.lr is the LR before scale_lr multiplies it; the suggestion is the LR the test applied.
                    command = use_lr_command(suggestion / optimization.lr_factor(trainer), _task_overrides())
                    print(f"lit_train: suggested learning rate {suggestion:.4g}\n  use it: {command}")
            elif cfg.action == "show_schedule":
                results["lr_schedule"] = show_schedule(trainer, module, datamodule, optimization, run_dir / "lr_schedule.png",
                                                       log_scale=cfg.schedule_log_scale)
            elif cfg.action == "doctor":
                from lit_train.training.doctor import run_doctor

                report = run_doctor(trainer, module, datamodule, run_dir, optimization, cfg.doctor)
                results["doctor"] = {"verdict": report.verdict, "errors": report.count("error"),
                                     "warnings": report.count("warning")}
            else:
                results = _train_and_test(cfg, trainer, module, datamodule, start, test)
        status = "pruned" if _pruned(trainer) else "completed"
        if results.get("stopped_reason") in DIVERGED_REASONS:
            status = "diverged"
    except StopRequested as stop:
        status, results["signal"] = "interrupted", stop.name
        raise
    except (KeyboardInterrupt, SystemExit):
        # A second stop signal: Lightning turns the KeyboardInterrupt into SystemExit after its own shutdown.
        status = "interrupted"
        if signals.received is None:
            raise
        stop = signals.stop()
        results["signal"] = stop.name
        raise stop from None
    finally:
        summary = _summarize(cfg, trainer, status, started, results)
        # A failed run with no checkpoint is taken back (see run()): no summary of it either.
        worth_keeping = status in ("completed", "pruned") or footprint is None or footprint.wrote_checkpoint()
        if trainer.is_global_zero and worth_keeping:
            record = _health(cfg, trainer, summary, own_optimizer)
            write_json_atomic(run_dir / "summary.json", summary)
            print(format_summary(summary))
            if record is not None and cfg.health.report:
                # After the summary is out: the picture adds to the run's wall time, not to its summary's.
                from lit_train.training.run_report import write_run_report

                curves, findings = record
                write_run_report(run_dir, curves, summary, findings, " ".join(_task_overrides()) or "(defaults)")
    if status == "diverged":
        raise Diverged(summary["stopped_reason"], monitored_value(summary))
    return monitored_value(summary)
