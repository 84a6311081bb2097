"""A trial's side of pruning, for any app: report a value at a step, and ask whether to stop.

The sweeper tells each trial's job which trial it is (through its environment,
set with ``hydra.job.env_set``), whether the job runs in the sweeper's process
(``n_jobs: 1``) or in one of its own. The app's code reports what it measures
and stops when the sweep's pruner says so::

    from hydra_plugins.lit_train_optuna_sweeper import trial

    def train(cfg):
        t = trial.current()  # None when the job is not a trial of a sweep
        for epoch in range(cfg.epochs):
            loss = run_epoch()
            if t is not None:
                t.report(loss, epoch)
                if t.should_prune():
                    return loss  # the sweeper records the trial as pruned, whatever the job returns
        return loss

Optuna is imported when a trial is opened, not when this module is imported.
"""

import math
import os
from typing import Any

from hydra.utils import instantiate

from hydra_plugins.lit_train_optuna_sweeper.app import NUMBER_ENV, STORAGE_ENV, STUDY_ENV
from hydra_plugins.lit_train_optuna_sweeper.storage import (
    DIVERGED_ATTR, ERROR_ATTR, PRUNED_ATTR, PRUNER_ATTR, open_storage,
)

_opened: dict[tuple[str, str, int], "Trial"] = {}


def open_trial(storage: str, study: str, number: int) -> Any:
    """Re-opens trial ``number`` of ``study`` as a live :class:`optuna.trial.Trial`, with the sweep's pruner.

    Raises:
        ValueError: If the study or the trial is not in the storage.
    """
    import optuna

    backend = open_storage(storage)
    try:
        study_id = backend.get_study_id_from_name(study)
        trial_id = backend.get_trial_id_from_study_id_trial_number(study_id, number)
    except KeyError as e:
        raise ValueError(f"trial: no trial {number} of study {study!r} in {storage}") from e
    spec = backend.get_study_user_attrs(study_id).get(PRUNER_ATTR, {"target": "optuna.pruners.NopPruner", "args": {}})
    pruner = instantiate({"_target_": spec["target"], **spec["args"]})
    return optuna.trial.Trial(optuna.load_study(study_name=study, storage=backend, pruner=pruner), trial_id)


class Trial:
    """One trial of a sweep, as its job sees it: report values, learn whether to stop.

    Args:
        storage: The study's storage URL or journal file.
        study: The study's name.
        number: The trial's number in the study.

    Raises:
        ValueError: If the study or the trial is not in the storage.
    """

    def __init__(self, storage: str, study: str, number: int) -> None:
        self.number = number
        self._trial = open_trial(storage, study, number)
        self._step: int | None = None

    def report(self, value: float, step: int) -> None:
        """Reports ``value`` at ``step`` (an epoch, a validation: the same for every trial of the sweep).

        A NaN or infinite value is not reported: the trial is recorded as diverged at ``step``, and
        the sweeper records it as failed whatever the job returns.
        """
        self._step = step
        if not math.isfinite(value):
            self._trial.set_user_attr(DIVERGED_ATTR, step)
            return
        self._trial.report(float(value), step)

    def should_prune(self) -> bool:
        """Whether the sweep's pruner stops this trial at its last report; if so, the sweeper records it as pruned."""
        if self._step is None or not self._trial.should_prune():
            return False
        self._trial.set_user_attr(PRUNED_ATTR, self._step)
        return True

    def record_error(self, text: str) -> None:
        """Records why the job failed (``"<Type>: <message>"``), which the sweeper shows for the trial."""
        self._trial.set_user_attr(ERROR_ATTR, text)


def current() -> Trial | None:
    """The trial that the running job is, or ``None`` when it is not a trial of a ``lit_optuna`` sweep."""
    if not all(name in os.environ for name in (STORAGE_ENV, STUDY_ENV, NUMBER_ENV)):
        return None
    key = (os.environ[STORAGE_ENV], os.environ[STUDY_ENV], int(os.environ[NUMBER_ENV]))
    if key not in _opened:
        _opened[key] = Trial(*key)
    return _opened[key]
