"""Where a study's MLflow store is, for the notebooks command: ``MLFLOW_TRACKING_URI``, else the SQLite store under
``--storage``, else under the storage the study last ran with (``orchestrator/study_index.py``), else under ``runs``.
Nothing is created on the way; no store, an empty or foreign file, a URI the analysis cannot read (a file store, a
plain path, an unknown scheme, a server that does not answer or answers 5xx), no such study in it, or a deleted
one, is one line (``StoreNotFound``), and none of it waits on MLflow's minutes of retries."""

from __future__ import annotations

import os
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

from orchestrator.core.store import absolute_sqlite_uri, mlflow_fail_fast, ready_store, schema_version, settle
from orchestrator.study_index import SeveralStorages, remembered_storage

TIMEOUT_S = 5  # for the server to answer each request of the checks
# MLflow's own clients of these databases: tried as MLflow would, an error (no driver installed) is one line
DATABASES = ("postgresql", "mysql", "mssql", "databricks")
READABLE = "sqlite:///<storage>/mlflow/mlflow.db or an MLflow server http(s)://host:port"


class StoreNotFound(LookupError):
    """No MLflow store holds the study; the message says what was looked at and what to pass."""


def store_uri(study: str, storage: str | None) -> str:
    """The tracking URI that holds ``study``: ``MLFLOW_TRACKING_URI``, else the SQLite store under ``storage``
    (given, else remembered when the study ran, else ``runs``). StoreNotFound (one line) when there is none, it
    cannot be read, or it lacks the study (or holds it deleted); nothing is created on the way."""
    from mlflow.tracking import MlflowClient

    if os.environ.get("MLFLOW_TRACKING_URI"):
        uri = absolute_sqlite_uri(os.environ["MLFLOW_TRACKING_URI"])  # the notebooks' kernel runs elsewhere
        where = f"MLFLOW_TRACKING_URI={_shown(uri)}"
        _check_reachable(uri)
    else:
        try:
            remembered = None if storage else remembered_storage(study)
        except SeveralStorages as err:  # two storages hold a study of that name: not guessed
            raise StoreNotFound(str(err)) from None
        root = Path(storage) if storage else (remembered or Path("runs"))
        how = "--storage" if storage else ("remembered from its run" if remembered else "the default")
        db = root.resolve() / "mlflow" / "mlflow.db"
        if not db.is_file():
            raise StoreNotFound(
                f"no MLflow store for study '{study}': {db} does not exist ({how}); run the study first, or pass "
                "--storage DIR (the study's --storage) or set MLFLOW_TRACKING_URI"
            )
        uri, where = f"sqlite:///{db}", f"{db} ({how})"
        _check_sqlite(db, where)
    ready_store(uri)  # a driver starting beside may still be making it
    with mlflow_fail_fast(TIMEOUT_S):
        try:
            client = MlflowClient(uri)
            exp = client.get_experiment_by_name(study)
            names = [] if exp is not None else [e.name for e in client.search_experiments()]
        except Exception as err:  # noqa: BLE001 - MLflow's (or a missing driver's) error, as one line
            raise StoreNotFound(f"{where}: cannot read the store ({_first_line(err)})") from None
    if exp is None:
        names = sorted(n for n in names if n != "Default")
        raise StoreNotFound(f"study '{study}' is not in {where}; studies there: {names or 'none'}")
    if exp.lifecycle_stage != "active":  # deleted in the UI: still found by name, no longer a study
        raise StoreNotFound(
            f"study '{study}' was deleted in {where} (experiment {exp.experiment_id}); restore it "
            f"(mlflow experiments restore --experiment-id {exp.experiment_id}) to analyse it"
        )
    return uri


def _check_reachable(uri: str, timeout: float = TIMEOUT_S) -> None:
    """StoreNotFound unless ``uri`` is one the analysis can read and it answers: a SQLite file that exists and is
    an MLflow store (MLflow would create an empty store anywhere else), a server that answers within ``timeout``
    without a server error (MLflow's client retries those for minutes), a database MLflow has a client for."""
    scheme = urllib.parse.urlsplit(uri).scheme.lower() if "://" in uri else ""
    where = f"MLFLOW_TRACKING_URI={_shown(uri)}"
    if uri.startswith("sqlite:///"):
        db = Path(uri.removeprefix("sqlite:///"))
        if not db.is_file():
            raise StoreNotFound(f"{where}: {db} does not exist (no study has been run there)")
        _check_sqlite(db, where)
    elif scheme in ("http", "https"):
        reason = _unanswered(uri, timeout)
        if reason is not None:
            raise StoreNotFound(f"{where}: the tracking server is unreachable ({reason})")
    elif scheme == "file" or not scheme:
        raise StoreNotFound(
            f"{where}: a file store or plain path is not a store the analysis reads (MLflow 3 no longer "
            f"opens them); set {READABLE}"
        )
    elif scheme.split("+")[0] not in DATABASES:
        raise StoreNotFound(f"{where}: unknown scheme '{scheme}://'; set {READABLE}")


def _check_sqlite(db: Path, where: str) -> None:
    """StoreNotFound when ``db`` is no MLflow store: empty (its creation was interrupted) or without MLflow's
    schema. A reader must not make one of it (MLflow would write its schema into the file): a driver that is
    making it right now changes it within seconds, and is left to finish (``ready_store`` waits for it)."""
    if schema_version(db) is not None:
        return
    if settle(db, time.monotonic() + 3 * TIMEOUT_S):  # being written: another process is making the store
        return
    size = db.stat().st_size
    what = "is empty (0 bytes)" if size == 0 else f"has no MLflow schema ({size:,} bytes)"
    raise StoreNotFound(
        f"{where}: the file {what}: no MLflow store, and nothing was written to it; pass the study's storage "
        "or remove the file"
    )


def _unanswered(uri: str, timeout: float) -> str | None:
    """None if the server at the http(s) ``uri`` answers ``/health`` within ``timeout`` seconds without a server
    error (5xx: a proxy or load balancer in front of a stopped server), else why not. A 4xx answer is a server
    without ``/health``: it answers."""
    try:
        with urllib.request.urlopen(f"{uri.rstrip('/')}/health", timeout=timeout):  # noqa: S310 - http(s) only
            return None
    except urllib.error.HTTPError as err:
        return f"/health answered {err.code} {err.reason}" if err.code >= 500 else None
    except (TimeoutError, OSError) as err:
        return str(getattr(err, "reason", err))


def _shown(uri: str) -> str:
    """``uri`` without a password (``postgresql://user:***@host/db``): the line may end up in a log."""
    parts = urllib.parse.urlsplit(uri)
    if parts.password is None:
        return uri
    netloc = parts.netloc.replace(f":{parts.password}@", ":***@", 1)
    return urllib.parse.urlunsplit(parts._replace(netloc=netloc))


def _first_line(err: BaseException) -> str:
    return f"{type(err).__name__}: {err}".splitlines()[0][:300]
