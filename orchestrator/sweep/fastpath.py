"""A study with nothing left to run ends here, read from the MLflow store directly: no MLflow server, no Ray.

``run_study`` asks ``nothing_left`` first. It opens the tracking store the study would use (``MLFLOW_TRACKING_URI``,
else the SQLite file under the storage path, which is only read when it already exists; a SQLite store is made
ready first, ``core/store.py``) and answers with the finished outcome when every planned trial, and every tuning
cell, has a FINISHED run and the parent run itself ended FINISHED. Anything else (a trial missing, a run left
RUNNING, a failure, a parent that did not finish) goes the normal way, which starts the servers and repairs what
it must.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

from orchestrator.core.paths import existing_store

if TYPE_CHECKING:
    from orchestrator.sweep.context import StudyOutcome


def nothing_left(spec: Any) -> StudyOutcome | None:
    """The study's outcome when MLflow already records all of it as done, else None (``spec.storage`` absolute)."""
    uri = existing_store(spec.storage)
    if uri is None:
        return None
    from mlflow.tracking import MlflowClient

    from orchestrator.core import tracking
    from orchestrator.core.store import init_store
    from orchestrator.sweep.context import StudyOutcome
    from orchestrator.sweep.status import status

    if uri.startswith("sqlite:///"):  # made or checked under its lock first: another process may be making it
        init_store(uri, own=not os.environ.get("MLFLOW_TRACKING_URI"))
    client = MlflowClient(uri)
    exp = client.get_experiment_by_name(spec.name)
    if exp is None:
        return None
    parents = tracking.runs_by_stage(client, exp.experiment_id, "study")
    if len(parents) != 1 or parents[0].info.status != "FINISHED":
        return None
    st = status(spec)
    tuning = st["tuning"]
    if st["remaining"] or st["running"] or st["failed"]:
        return None
    if tuning and tuning["cells_done"] < tuning["cells"]:
        return None
    ui = f"open {uri}"
    if not os.environ.get("MLFLOW_TRACKING_URI"):
        artifacts = Path(uri.removeprefix("sqlite:///")).parent / "artifacts"
        ui = tracking.MlflowServer(uri, uri, artifacts, None, artifacts).ui_command()
    return StudyOutcome(
        spec.name,
        uri,
        exp.experiment_id,
        planned=st["planned"],
        finished=st["done"],
        teacher_passes=int(parents[0].data.metrics.get("teacher_passes", 0)),
        ui_command=ui,
    )
