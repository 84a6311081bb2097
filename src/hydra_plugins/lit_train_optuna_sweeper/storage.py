"""The Optuna storage that a sweep and its trials share.

``hydra.sweeper.storage`` takes three forms: a file path ending in
``.journal`` (Optuna's journal file, safe on shared and network filesystems),
an SQLAlchemy URL (``postgresql://...``, ``mysql://...``, ``sqlite:///...``),
or ``null`` for ``optuna.db`` (SQLite) in the sweep directory.

Imports no Lightning: the sweeper opens it before any job runs, and reads the
attributes its jobs leave in it by the names below.
"""

import time
from typing import Any

#: How a journal file's path ends.
JOURNAL_SUFFIX = ".journal"
#: Tries at opening a database, a second apart, while another worker may be creating its tables.
OPEN_TRIES = 3
#: Study user attribute where the sweeper leaves its pruner for the jobs: ``{"target": class path, "args": {...}}``.
PRUNER_ATTR = "lit_train.pruner"
#: Trial user attributes a job sets (:class:`hydra_plugins.lit_train_optuna_sweeper.trial.Trial`) for the sweeper to
#: read: the step at which the trial was pruned / diverged, and ``"<type>: <message>"`` when the job raised.
PRUNED_ATTR = "lit_train.pruned_at"
DIVERGED_ATTR = "lit_train.diverged_at"
ERROR_ATTR = "lit_train.error"
FORMS = (f"a file path ending in {JOURNAL_SUFFIX} (Optuna's journal file, for workers on several machines "
         "sharing a filesystem), an SQLAlchemy URL such as postgresql://user:password@host/db or "
         "sqlite:///path/optuna.db, or null for optuna.db in the sweep directory")


def is_journal(storage: str) -> bool:
    """Whether ``storage`` names a journal file rather than a database URL."""
    return storage.endswith(JOURNAL_SUFFIX) and "://" not in storage


def storage_problem(storage: Any) -> str | None:
    """What is wrong with the ``hydra.sweeper.storage`` value ``storage`` (one line), or ``None``.

    A URL must parse, name a database SQLAlchemy knows, have its Python driver
    installed, and not be an in-memory database, which the trials could not share.
    """
    if storage is None or (isinstance(storage, str) and is_journal(storage)):
        return None
    prefix = f"hydra.sweeper.storage: must be {FORMS}; got {storage!r}"
    if not isinstance(storage, str) or "://" not in storage:
        return prefix
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError, NoSuchModuleError

    try:
        url = make_url(storage)
        dialect = url.get_dialect()
    except (ArgumentError, NoSuchModuleError, ValueError) as e:
        return f"{prefix} ({e})"
    shown = url.render_as_string(hide_password=True)
    if url.get_backend_name() == "sqlite" and url.database in (None, "", ":memory:"):
        return f"hydra.sweeper.storage: {shown} is an in-memory database, which the trials cannot share; use a file"
    try:
        dialect.import_dbapi()
    except ImportError as e:
        return f"hydra.sweeper.storage: {shown} needs its Python driver, which is not installed ({e})"
    return None


def open_storage(url: str) -> Any:
    """The study storage at ``url``: a journal file (``*.journal``) or an SQLAlchemy URL.

    Parallel trials write to one SQLite file: each connection waits up to a
    minute for the file's lock instead of failing at once. Workers that open a
    new database together all create its tables; on PostgreSQL all but one of
    them fail (a duplicate key in its catalog), and open it again once the
    tables are there.
    """
    import optuna
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import IntegrityError, ProgrammingError

    if is_journal(url):
        from optuna.storages.journal import JournalFileBackend

        return optuna.storages.JournalStorage(JournalFileBackend(url))
    # sqlite3's own argument: a server's driver refuses it (psycopg: invalid connection option "timeout").
    connect_args = {"timeout": 60} if make_url(url).get_backend_name() == "sqlite" else {}
    for tries_left in reversed(range(OPEN_TRIES)):
        try:
            return optuna.storages.RDBStorage(url, engine_kwargs={"connect_args": connect_args})
        except (IntegrityError, ProgrammingError):
            if not tries_left:
                raise
            time.sleep(1.0)
