"""``--status`` counts that are true: a RUNNING run is "running" only while a live driver holds the study's lock
(else it is "orphaned": its driver died), each failed trial counts once, and finished runs whose key is no longer
planned (the data or the settings changed since) are counted apart instead of as done."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from orchestrator.sweep.lock import StudyLock
from orchestrator.sweep.spec import StudyError, StudySpec


def require_store(spec: StudySpec, uri: str) -> None:
    """A local store that does not exist holds no study: say so instead of creating an empty one."""
    if uri.startswith("sqlite:///") and not Path(uri.removeprefix("sqlite:///")).is_file():
        raise StudyError(
            f"no study '{spec.name}' under storage {spec.storage} (no MLflow store at {uri}); "
            "pass the --storage it ran with, or MLFLOW_TRACKING_URI"
        )


def driver_of(spec: StudySpec) -> str | None:
    """The live driver holding the study, described, or None."""
    holder = StudyLock(Path(spec.storage).resolve() / spec.name).holder()
    return holder.describe() if holder and holder.alive() else None


def trial_counts(runs: list[Any], planned: set[str], data_key: str, driver: str | None) -> dict[str, Any]:
    """Done / running / orphaned / failed / stale from the study's ``student`` runs."""
    finished = [r for r in runs if r.info.status == "FINISHED"]
    done = {r.data.tags.get("trial_key") for r in finished} & planned
    live = [r for r in runs if r.info.status == "RUNNING"]
    failed: dict[str, Any] = {}
    for r in sorted(runs, key=lambda r: r.info.start_time or 0):
        key = r.data.tags.get("trial_key")
        if r.info.status == "FAILED" and key not in done and key in planned:
            failed[key] = r  # the latest attempt of each failed trial, once
    stale = [r for r in finished if r.data.tags.get("trial_key") not in planned]
    other_data = [r for r in stale if r.data.tags.get("data_key", "") != data_key]
    return {
        "done": len(done),
        "running": len(live) if driver else 0,
        "orphaned": 0 if driver else len(live),
        "driver": driver,
        "failed": len(failed),
        "remaining": len(planned - done),
        "stale_finished": len(stale),
        "stale_data": len(other_data),
        "failed_trials": [
            {"run": r.info.run_name, "trial_key": k, "error": r.data.tags.get("error", "")}
            for k, r in failed.items()
        ],
    }
