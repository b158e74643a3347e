"""Where a study's MLflow store is, for the notebooks command: ``MLFLOW_TRACKING_URI``, else the SQLite store under
``--storage``, else under the storage the study last ran with (``orchestrator/study_index.py``), else under ``runs``.
Nothing is created on the way; no store, or no such study in it, is one line (``StoreNotFound``)."""

from __future__ import annotations

import os
from pathlib import Path

from orchestrator.core.probe import unreachable_reason
from orchestrator.core.store import absolute_sqlite_uri, ready_store
from orchestrator.study_index import SeveralStorages, remembered_storage


class StoreNotFound(LookupError):
    """No MLflow store holds the study; the message says what was looked at and what to pass."""


def store_uri(study: str, storage: str | None) -> str:
    """The tracking URI that holds ``study``: ``MLFLOW_TRACKING_URI``, else the SQLite store under ``storage``
    (given, else remembered when the study ran, else ``runs``). StoreNotFound (one line) when there is none or it
    lacks the study; nothing is created on the way."""
    from mlflow.tracking import MlflowClient

    if os.environ.get("MLFLOW_TRACKING_URI"):
        uri = absolute_sqlite_uri(os.environ["MLFLOW_TRACKING_URI"])  # the notebooks' kernel runs elsewhere
        where = f"MLFLOW_TRACKING_URI={uri}"
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
    ready_store(uri)  # a driver starting beside may still be making it
    exp = MlflowClient(uri).get_experiment_by_name(study)
    if exp is None:
        names = sorted(e.name for e in MlflowClient(uri).search_experiments() if e.name != "Default")
        raise StoreNotFound(f"study '{study}' is not in {where}; studies there: {names or 'none'}")
    return uri


def _check_reachable(uri: str, timeout: float = 5.0) -> None:
    """StoreNotFound unless ``uri`` answers: a SQLite file that exists (MLflow would create an empty store
    anywhere else), a server that answers within ``timeout`` (MLflow's client retries for minutes)."""
    if uri.startswith("sqlite:///"):
        db = Path(uri.removeprefix("sqlite:///"))
        if not db.is_file():
            raise StoreNotFound(
                f"MLFLOW_TRACKING_URI={uri}: {db} does not exist (no study has been run there)"
            )
    elif uri.startswith(("http://", "https://")):
        reason = unreachable_reason(uri, timeout)
        if reason is not None:
            raise StoreNotFound(f"MLFLOW_TRACKING_URI={uri}: the tracking server is unreachable ({reason})")
