"""A SQLite MLflow store, made ready before anything of the study opens it: created or checked once under a lock
beside it, waiting out another process that is still creating it, and, for a study's own store, with the artifact
locations of a copied or moved storage made its own."""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Iterator
from pathlib import Path

# MLflow's migration writes the file every few tens of ms until it is done (0.17 s the longest pause, measured)
SETTLE_QUIET_S = 2.0
WAIT_LIMIT_S = 60.0  # in all, for another process to finish making the store: then MLflow's own error stands
ATTEMPTS = 8


def init_store(store_uri: str, own: bool = True) -> None:
    """Create (or check) the SQLite store at ``store_uri`` under a lock beside it, before a server or a client of
    the study opens it. MLflow's schema migration does not survive two processes at once: the loser dies on it
    (``table _alembic_tmp_experiments already exists``, ``duplicate column name: step``).

    Our own processes take the lock, so two studies started together on a fresh store make it one after the other.
    A process that does not (``mlflow ui``, a notebook's ``MlflowClient``) may be making the same new file when we
    come: a file whose schema is not MLflow's newest is left alone until it stops changing, and an attempt that
    fails while the file is being written is made again. A store that stays behind (an older MLflow's, say) fails
    with MLflow's own message, which says how to upgrade it.
    ``own``: the study's own store under its storage path, whose artifact locations move with it."""
    import fcntl

    # MLflow's newest schema revision, the one its own check (``_verify_schema``) compares a store with
    from mlflow.store.db.utils import _get_latest_schema_revision
    from mlflow.store.tracking.sqlalchemy_store import SqlAlchemyStore

    db = Path(store_uri.removeprefix("sqlite:///"))
    head = _get_latest_schema_revision()
    with open(db.parent / ".init.lock", "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # released when the file closes, also if this process dies
        until = time.monotonic() + WAIT_LIMIT_S
        for attempt in range(ATTEMPTS):
            if db.exists() and schema_version(db) != head:
                settle(db, until)  # being made or migrated by a process without our lock: let it finish first
            try:
                # creates a new store, migrates an empty one, and checks an existing one's schema version
                SqlAlchemyStore(store_uri, str(db.parent / "artifacts")).engine.dispose()
                break
            except Exception:
                # raised when nothing else is writing the file (MLflow's own message stands), at the last try, or
                # when the wait is over
                if attempt == ATTEMPTS - 1 or not settle(db, until) or time.monotonic() >= until:
                    raise
        if own:
            portable_artifacts(db)


def absolute_sqlite_uri(uri: str) -> str:
    """``sqlite:///mlflow.db`` (MLflow's own example) names a file in the working folder, and a study's trials run in
    folders of their own (Ray's ``working_dirs``), where it would be another, new store: the driver would find its
    trials' runs missing. The same file for every process is the absolute one; any other URI is returned as is."""
    if not uri.startswith("sqlite:///"):
        return uri
    path = uri.removeprefix("sqlite:///")
    return uri if path.startswith("/") or not path else f"sqlite:///{Path(path).resolve()}"


def ready_store(uri: str) -> None:
    """For a reader (``--status``, the notebooks): a SQLite store that exists is read only once it is made; a
    driver starting beside may be making it, and a reader's client would otherwise run MLflow's migration too.
    Creates nothing; any other URI is left to MLflow, and so is a store in a folder we may only read (a colleague's
    storage: no lock can be taken there, and nothing of ours can be making it)."""
    db = Path(uri.removeprefix("sqlite:///"))
    if uri.startswith("sqlite:///") and db.is_file() and os.access(db.parent, os.W_OK):
        init_store(uri, own=False)


def read_only(db: Path) -> contextlib.closing:
    """A read-only sqlite3 connection to ``db``, closed on leaving the ``with``: it never creates the file, and it
    never runs MLflow's migration (which a client opening a store still being made would)."""
    import sqlite3

    return contextlib.closing(sqlite3.connect(f"{db.resolve().as_uri()}?mode=ro", uri=True, timeout=10))


def schema_version(db: Path) -> str | None:
    """The store's alembic revision, read without MLflow; None when it has none yet (or is not a database)."""
    import sqlite3

    try:
        with read_only(db) as con:
            row = con.execute("SELECT version_num FROM alembic_version").fetchone()
    except sqlite3.DatabaseError:
        return None
    return row[0] if row else None


def settle(db: Path, until: float, quiet: float = SETTLE_QUIET_S) -> bool:
    """Wait until the database file and its journal have not changed for ``quiet`` seconds, or until ``until``
    (``time.monotonic()``); whether they changed meanwhile, that is whether another process is writing them."""

    def stamp() -> tuple:
        out = []
        for path in (db, db.with_name(db.name + "-journal"), db.with_name(db.name + "-wal")):
            with contextlib.suppress(OSError):
                st = path.stat()
                out.append((path.name, st.st_mtime_ns, st.st_size))
        return tuple(out)

    first = last = stamp()
    still_since = time.monotonic()
    while time.monotonic() - still_since < quiet and time.monotonic() < until:
        time.sleep(0.1)
        now = stamp()
        if now != last:
            last, still_since = now, time.monotonic()
    return last != first


_ARTIFACTS = "/mlflow/artifacts/"  # a study's own store keeps its artifacts in <storage>/mlflow/artifacts


def portable_artifacts(db: Path) -> int:
    """Make a copied (or moved) storage's artifact locations its own: its experiments and runs name
    ``file://<storage it was made in>/mlflow/artifacts/...``, so the copy would go on writing into the original
    (or fail where it is gone). Each such location is pointed at the same place under the storage that holds
    ``db``. Run under the store's init lock, before a server opens it; returns how many locations changed."""
    import sqlite3

    here = (db.parent / "artifacts").resolve().as_uri() + "/"

    def moved(uri: str) -> str | None:
        if not uri.startswith("file://") or _ARTIFACTS not in uri or uri.startswith(here):
            return None
        return here + uri.split(_ARTIFACTS, 1)[1]

    changed = 0
    with contextlib.closing(sqlite3.connect(db, timeout=60)) as con, con:
        for table, column, key in (("experiments", "artifact_location", "experiment_id"), ("runs", "artifact_uri", "run_uuid")):  # fmt: skip
            rows = con.execute(
                f"SELECT {key}, {column} FROM {table} WHERE {column} LIKE 'file://%'"
            ).fetchall()  # noqa: S608 - fixed names
            updates = [(new, k) for k, uri in rows if (new := moved(uri))]
            con.executemany(f"UPDATE {table} SET {column} = ? WHERE {key} = ?", updates)  # noqa: S608
            changed += len(updates)
    return changed


@contextlib.contextmanager
def mlflow_fail_fast(timeout: int = 5) -> Iterator[None]:
    """MLflow's HTTP client without retries and with a ``timeout`` (seconds) for the requests made inside the block
    (a quick check, ``--plan``'s progress line): it otherwise retries a server that is down or answers 5xx for
    minutes. The variables are restored afterwards, so later clients (the study, notebook kernels) keep MLflow's
    defaults."""
    names = {"MLFLOW_HTTP_REQUEST_MAX_RETRIES": "0", "MLFLOW_HTTP_REQUEST_TIMEOUT": str(timeout)}
    before = {n: os.environ.get(n) for n in names}
    os.environ.update(names)
    try:
        yield
    finally:
        for name, value in before.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
