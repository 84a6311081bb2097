"""The Optuna storage that a sweep and its trials share.

Imports no Lightning: the sweeper opens it before any job runs.
"""

from typing import Any


def open_storage(url: str) -> Any:
    """The study storage at ``url`` (an SQLAlchemy URL).

    Parallel trials write to one SQLite file: each connection waits up to a
    minute for the file's lock instead of failing at once.
    """
    import optuna

    return optuna.storages.RDBStorage(url, engine_kwargs={"connect_args": {"timeout": 60}})
