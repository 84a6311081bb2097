"""Every training run's health record: the doctor's vocabulary, read from the curves the run logged.

After a training run, rank 0 reads the run's ``metrics.csv`` (the training and
validation losses, and the gradient monitor's ``grad_norm/*``) and
``summary.json``'s stop, and checks them (:func:`~.record.examine`):
``loss_not_decreasing``, ``divergence``, ``overfitting`` and ``oscillation``
on the loss curves (:mod:`.curve_checks`), ``exploding_gradient``,
``vanishing_gradient``, ``no_gradient`` and ``nonfinite_gradient`` on the
logged gradient norms (:mod:`.gradient_checks`). Each finding goes to the
run's log file, to ``summary.json``'s ``health`` list and to the summary printed
at the end; the run's ``report.png`` marks it (:mod:`lit_train.training.run_report`).

Why after the run, from ``metrics.csv``, and not a callback (in lit-callbacks or here):

- Nothing runs during training: the default callbacks already measure and log
  everything the checks read, so the record adds no work to any step, not even
  at logging steps, and no host sync.
- ``metrics.csv`` holds the rows of the uninterrupted run after any number of
  resumes (:class:`~lit_train.training.loggers.ResumableCSVLogger`): a record
  read from it at the end loses nothing from before an interruption and counts
  nothing twice, where a callback would have to carry its findings through
  checkpoints and drop those a resume replays.
- Under DDP the loss curves are already reduced over ranks and rank 0 writes
  the file, so rank 0 alone reads it, as it alone writes ``summary.json``.
- The vocabulary (:data:`~lit_train.training.doctor.findings.CHECKS`) and
  every fix, phrased as a lit_train override (``optimizer.lr=...``), are
  lit_train's; lit-callbacks knows neither.

The cost: the record needs the CSV logger (``logger=csv``, the default). With
another logger it has only what the run's stop tells (a divergence, non-finite
gradients).
"""

from pathlib import Path
from typing import Any

from lightning.pytorch.loggers import Logger
from omegaconf import DictConfig, OmegaConf

from lit_train.training.curves import Curves, read_curves
from lit_train.training.doctor.findings import TrainingFinding
from lit_train.training.health.levers import Levers
from lit_train.training.health.record import chance_loss, examine, log_record
from lit_train.training.health.settings import HealthSettings
from lit_train.training.loggers import metrics_file

__all__ = ["HealthSettings", "Levers", "examine", "record_health"]


def record_health(cfg: DictConfig, loggers: list[Logger], summary: dict[str, Any],
                  own_optimizer: bool) -> tuple[Curves, list[TrainingFinding]]:
    """Checks the run's logged curves and its stop, and logs each finding.

    Args:
        cfg: The run's config (``health`` holds the thresholds).
        loggers: The run's loggers; the first CSV logger's ``metrics.csv`` is read.
        summary: The run's summary so far.
        own_optimizer: Whether the module has its own ``configure_optimizers`` (the fixes then name no
            ``optimizer.lr``).

    Returns:
        The curves read, and the findings in step order.
    """
    path = metrics_file(loggers)
    curves = read_curves(path) if path is not None else Curves()
    settings = HealthSettings(**OmegaConf.to_container(cfg.health))
    findings = examine(curves, summary, settings, Levers.of(cfg, own_optimizer), chance_loss(cfg))
    log_record(findings, Path(cfg.run_dir))
    return curves, findings
