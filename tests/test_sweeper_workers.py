"""lit_train's Optuna sweeper with several workers on one study: shared storage, count, heartbeat, storage forms."""

import glob
import os
import pwd
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import optuna
import pytest
import yaml
from omegaconf import OmegaConf
from sqlalchemy.exc import IntegrityError
from support import read_summary, run_cli
from test_sweeper import RANDOM, TINY

from hydra_plugins.lit_train_optuna_sweeper._impl import (
    FAILURE_ATTR,
    RETRIED_ATTR,
    LitOptunaSweeperImpl,
    SweeperConfigError,
)
from hydra_plugins.lit_train_optuna_sweeper.storage import open_storage, storage_problem

LR = "optimizer.lr=tag(log,interval(1e-4,1.0))"


def _start(tmp_path, *args: str) -> subprocess.Popen:
    command = [sys.executable, "-m", "lit_train", *RANDOM, LR, *TINY, *args]
    env = {**os.environ, "PYTHONWARNINGS": "ignore"}
    return subprocess.Popen(command, cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True)


def _trials(storage) -> list[optuna.trial.FrozenTrial]:
    return optuna.load_study(study_name="lit_train", storage=open_storage(str(storage))).trials


def _told(log: str) -> set[int]:
    """The trials a worker ran, from its log: ``Trial <n>: ...``."""
    return {int(line.split("Trial ")[1].split(":")[0]) for line in log.splitlines() if "] Trial " in line}


def _postgresql_bin() -> Path | None:
    """The folder of the newest PostgreSQL server's programs (Debian's layout first, then the PATH's)."""
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/pg_ctl"), key=lambda p: int(Path(p).parts[-3]))
    if found:
        return Path(found[-1]).parent
    on_path = shutil.which("pg_ctl")
    return Path(on_path).resolve().parent if on_path and shutil.which("initdb") else None


@pytest.fixture
def postgresql_url() -> Iterator[str]:
    """A database on a throwaway PostgreSQL server of the test's own, reached on a unix socket only.

    PostgreSQL refuses to run as root: as root, the server runs as the ``postgres`` user, in a folder of
    its own under the temporary directory (pytest's tmp_path lies in a folder only root may enter),
    which is short enough for the socket's path too.
    """
    bin_dir = _postgresql_bin()
    if bin_dir is None:
        pytest.skip("no PostgreSQL server programs (initdb, pg_ctl) under /usr/lib/postgresql/*/bin or on the PATH; "
                    "apt-get install postgresql")
    as_user: dict = {}
    if os.geteuid() == 0:
        try:
            server_user = pwd.getpwnam("postgres")
        except KeyError:
            pytest.skip("PostgreSQL refuses to run as root, and there is no postgres user to run it as")
        as_user = {"user": server_user.pw_uid, "group": server_user.pw_gid, "extra_groups": []}
    home = Path(tempfile.mkdtemp(prefix="lit_train-pg-"))
    if as_user:
        os.chown(home, as_user["user"], as_user["group"])
    data = home / "data"

    def server(program: str, *args: str) -> None:
        subprocess.run([str(bin_dir / program), *args], cwd=home, check=True, capture_output=True, **as_user)

    try:
        server("initdb", "-D", str(data), "-U", "lit_train", "--auth=trust", "--locale=C", "-E", "UTF8", "--no-sync")
        server("pg_ctl", "-D", str(data), "-l", str(home / "server.log"), "-w", "-o",
               f"-k {home} -c listen_addresses='' -c fsync=off", "start")
        try:
            import psycopg

            with psycopg.connect(host=str(home), user="lit_train", dbname="postgres", autocommit=True) as admin:
                admin.execute("CREATE DATABASE sweeps")
            yield f"postgresql+psycopg://lit_train@/sweeps?host={home}"
        finally:
            server("pg_ctl", "-D", str(data), "-m", "immediate", "-w", "stop")
    finally:
        shutil.rmtree(home, ignore_errors=True)


@pytest.fixture(params=["journal", "postgresql"])
def shared_storage(request, tmp_path) -> str:
    """What ``hydra.sweeper.storage`` the workers share: a journal file, or a database on a PostgreSQL server."""
    if request.param == "journal":
        return str(tmp_path / "sweep" / "study.journal")
    return request.getfixturevalue("postgresql_url")


@pytest.mark.slow
def test_two_workers_started_together_run_n_trials_between_them(tmp_path, shared_storage):
    sweep_dir = tmp_path / "sweep"
    args = [f"hydra.sweep.dir={sweep_dir}", f"hydra.sweeper.storage='{shared_storage}'", "hydra.sweeper.n_trials=4"]
    workers = [_start(tmp_path, *args) for _ in range(2)]
    logs = [worker.communicate(timeout=240)[0] for worker in workers]
    assert [worker.returncode for worker in workers] == [0, 0], logs[0][-3000:] + logs[1][-3000:]

    trials = _trials(shared_storage)
    assert [(t.number, t.state.name) for t in trials] == [(n, "COMPLETE") for n in range(4)]
    # The workers shared the study: each ran some of its trials, none ran a trial the other ran.
    ran = [_told(log) for log in logs]
    assert ran[0] and ran[1] and not ran[0] & ran[1] and ran[0] | ran[1] == {0, 1, 2, 3}, ran
    # A seeded sampler's seed moves on by the trials the study holds when a worker first asks: no repeats.
    assert len({t.params["optimizer.lr"] for t in trials}) == 4
    jobs = sorted(p.name for p in sweep_dir.iterdir() if p.is_dir())
    assert jobs == ["0", "1", "2", "3"]
    assert all(read_summary(sweep_dir / job)["status"] == "completed" for job in jobs)
    rows = [row.split(",") for row in (sweep_dir / "leaderboard.csv").read_text().splitlines()[1:]]
    assert sorted(row[1] for row in rows) == jobs
    best = yaml.safe_load((sweep_dir / "best.yaml").read_text())
    assert best["trial"] == min(trials, key=lambda t: t.value).number == int(rows[0][1])
    assert best["trials"] == {"complete": 4, "pruned": 0, "failed": 0}
    # Each worker ends with the whole study, whichever ran the best trial.
    line = f"lit_train: best of 4 trials (4 complete, 0 pruned, 0 failed): trial {best['trial']}"
    assert line in logs[0] and line in logs[1]


@pytest.mark.slow
def test_a_killed_workers_trial_fails_after_the_grace_period_and_runs_again(tmp_path):
    sweep_dir, journal = tmp_path / "sweep", tmp_path / "sweep" / "study.journal"
    args = [f"hydra.sweep.dir={sweep_dir}", f"hydra.sweeper.storage={journal}", "hydra.sweeper.n_trials=2",
            "hydra.sweeper.heartbeat_interval=1", "hydra.sweeper.grace_period=3", "hydra.sweeper.max_retries=1"]
    # A trial that would train for hours, and validate (report to the study) only at its end.
    worker = _start(tmp_path, *args, "trainer.max_epochs=100000", "trainer.check_val_every_n_epoch=100000")
    try:
        deadline = time.monotonic() + 120
        while not (sweep_dir / "0" / ".hydra").is_dir():
            assert worker.poll() is None and time.monotonic() < deadline, worker.communicate()[0][-3000:]
            time.sleep(0.2)
        time.sleep(1.5)  # trial 0 is training, and its worker has recorded its heartbeat
    finally:
        worker.send_signal(signal.SIGKILL)
        worker.communicate()
    assert [t.state.name for t in _trials(journal)] == ["RUNNING"]

    result = run_cli(*RANDOM, LR, *TINY, *args, cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    trials = _trials(journal)
    failed, *others = trials
    assert failed.state.name == "FAIL" and failed.user_attrs[FAILURE_ATTR].startswith("its worker stopped")
    assert "Trial 0: failed, its worker stopped (no heartbeat for" in result.stderr + result.stdout
    # Its retry takes its place: the study holds 2 trials that count, both complete.
    assert [t.state.name for t in others] == ["COMPLETE", "COMPLETE"]
    (retry,) = [t for t in others if t.system_attrs.get(RETRIED_ATTR) == 0]
    assert retry.params == failed.params
    assert read_summary(sweep_dir / str(retry.number))["status"] == "completed"
    assert "(2 complete, 0 pruned, 1 failed)" in result.stdout


FORMS = ("must be a file path ending in .journal (Optuna's journal file, for workers on several machines sharing a "
         "filesystem), an SQLAlchemy URL such as postgresql://user:password@host/db or sqlite:///path/optuna.db, or "
         "null for optuna.db in the sweep directory")


@pytest.mark.parametrize(("storage", "problem"), [
    (None, None),
    ("sweeps/lr/study.journal", None),
    ("sqlite:///sweeps/optuna.db", None),
    ("study.db", f"{FORMS}; got 'study.db'"),
    ("postgres://me:secret@db.example/sweeps",
     f"{FORMS}; got 'postgres://me:secret@db.example/sweeps' (Can't load plugin: sqlalchemy.dialects:postgres)"),
    ("sqlite://", "sqlite:// is an in-memory database, which the trials cannot share; use a file"),
])
def test_the_three_forms_of_storage_are_accepted_and_others_named(storage, problem):
    assert storage_problem(storage) == (None if problem is None else f"hydra.sweeper.storage: {problem}")


def test_a_database_whose_tables_another_worker_is_creating_is_opened_again(monkeypatch, tmp_path):
    import hydra_plugins.lit_train_optuna_sweeper.storage as storage_module

    # What PostgreSQL answers the second of two workers creating the tables of a new database at once.
    race = IntegrityError("CREATE TABLE studies ...", {}, Exception('duplicate key value violates unique constraint '
                                                                    '"pg_type_typname_nsp_index"'))
    opened, tries = optuna.storages.RDBStorage, []

    def racing(url, **kwargs):
        tries.append(url)
        if len(tries) == 1:
            raise race
        return opened(url, **kwargs)

    monkeypatch.setattr(optuna.storages, "RDBStorage", racing)
    monkeypatch.setattr(storage_module.time, "sleep", lambda seconds: None)
    url = f"sqlite:///{tmp_path / 'optuna.db'}"
    assert isinstance(open_storage(url), opened) and tries == [url, url]
    # Out of tries, the error is the database's own.
    tries.clear()
    monkeypatch.setattr(storage_module, "OPEN_TRIES", 1)
    with pytest.raises(IntegrityError, match="pg_type_typname_nsp_index"):
        open_storage(url)


@pytest.mark.parametrize(("settings", "problems"), [
    ({"heartbeat_interval": 0, "max_retries": -1},
     ["hydra.sweeper.heartbeat_interval: must be an integer >= 1 (seconds) or null, got 0",
      "hydra.sweeper.max_retries: must be an integer >= 0, got -1"]),
    ({"heartbeat_interval": 10, "grace_period": 10},
     ["hydra.sweeper.grace_period: must be an integer >= 11 (seconds, above heartbeat_interval=10), got 10"]),
    ({"heartbeat_interval": None, "grace_period": 2},
     ["hydra.sweeper.grace_period: must be an integer >= 3 (seconds), got 2"]),
])
def test_heartbeat_settings_are_checked(settings, problems):
    impl = LitOptunaSweeperImpl(sampler=None, pruner=None, n_trials=1, n_jobs=1, study_name="lit_train",
                                storage=None, params={"optimizer.lr": "interval(0.1, 1)"}, **settings)
    impl.config = OmegaConf.create({"monitor": "val/loss", "mode": "min"})
    with pytest.raises(SweeperConfigError) as raised:
        impl._check([])
    assert str(raised.value).splitlines()[:-1] == [f"error: {problem}" for problem in problems]


def test_a_bad_storage_fails_with_exit_code_2_before_anything_is_written(tmp_path):
    result = run_cli("-m", "hydra/sweeper=lit_optuna", LR, "hydra.sweeper.storage=study.db",
                     "hydra.sweeper.max_retries=-1", f"hydra.sweep.dir={tmp_path / 'sweep'}", cwd=tmp_path)
    assert result.returncode == 2
    assert result.stderr.splitlines() == [
        f"error: hydra.sweeper.storage: {FORMS}; got 'study.db'",
        "error: hydra.sweeper.max_retries: must be an integer >= 0, got -1",
        "lit_train: 2 sweeper problem(s); nothing was run.",
    ]
    assert list(tmp_path.iterdir()) == []
