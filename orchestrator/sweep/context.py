"""What the stages of a running study share, passed to each as one object: the study, its plan, the MLflow
experiment and parent run, where the trials' teacher caches are, and the outcome being filled in."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from orchestrator.core import tracking


@dataclass
class StudyOutcome:
    name: str
    tracking_uri: str
    experiment_id: str
    planned: int
    finished: int
    failed: list[dict[str, str]] = field(default_factory=list)
    teacher_passes: int = 0
    ui_command: str = ""
    tuning: dict[str, Any] | None = None  # a tuned study's search at its end (sweep/tuning.tuning_status)

    @property
    def complete(self) -> bool:
        return self.finished == self.planned


@dataclass(frozen=True)
class TrialContext:
    """What every trial of a run shares, handed to the trial wrapper next to its config (Tune's
    ``with_parameters``): where MLflow is, the study's parent run, and the teacher caches (classification:
    ``"<teacher>/<task>"`` -> path, key, shape and, when it fits, an object-store reference)."""

    tracking_uri: str
    experiment_id: str
    parent: str
    caches: dict[str, Any] = field(default_factory=dict)


@dataclass
class TrialRun:
    """The trial's MLflow run as the work sees it: where to log, its scratch folder, the per-epoch callback."""

    client: Any
    run_id: str
    out_dir: Path
    context: TrialContext
    on_epoch: Callable[[dict[str, float]], None]

    def log_metrics(self, metrics: dict[str, float], step: int = 0) -> None:
        tracking.log_metrics(self.client, self.run_id, metrics, step)


@dataclass
class StudyContext:
    spec: Any  # design.spec.StudySpec | design.completion_spec.CompletionStudySpec
    plan: Any  # design.plan.StudyPlan | design.completion_plan.CompletionPlan
    client: Any  # MlflowClient
    experiment_id: str
    parent: str
    tracking_uri: str
    outcome: StudyOutcome
    caches: dict[str, Any] = field(default_factory=dict)  # filled by the teacher stages
    # the keys of the caches the study read (its teacher passes are counted by them, in cache_storage's log)
    cache_keys: set[str] | None = None
    cache_storage: str | None = None  # where those caches live: the storage, or a completion study's folder

    def trial_context(self) -> TrialContext:
        return TrialContext(self.tracking_uri, self.experiment_id, self.parent, self.caches)

    def finished_keys(self) -> set[str]:
        return tracking.finished_keys(self.client, self.experiment_id)

    def unit_tags(self, stage: str, key: str, **factors: str) -> dict[str, str]:
        """The tags of a teacher unit's run (the factor tags it does not have read ``none``)."""
        base = dict.fromkeys(tracking.FACTOR_TAGS, "none")
        return {
            **base, **factors, "stage": stage, "study": self.spec.name, "trial_key": key,
            "mlflow.parentRunId": self.parent,
        }  # fmt: skip


def parent_run(client: Any, exp_id: str, spec: Any) -> str:
    """The study's parent run (``stage=study``): the existing one set RUNNING again, or a new one with the whole
    spec as params."""
    runs = tracking.runs_by_stage(client, exp_id, "study")
    if runs:
        kind = "completion" if runs[0].data.tags.get("task") == "completion" else "classification"
        if kind != spec.kind:  # one experiment per study name: the two kinds' runs would be read as one study
            from orchestrator.core.errors import StudyError

            raise StudyError(
                f"study '{spec.name}': this store already holds a {kind} study of that name; a {spec.kind} study "
                "of the same name would mix its runs with it: give it another name"
            )
        client.update_run(runs[0].info.run_id, status="RUNNING")
        # an earlier attempt's reason (a full disk) is not this attempt's: it sets its own when it fails
        if "error" in runs[0].data.tags:
            client.delete_tag(runs[0].info.run_id, "error")
        return runs[0].info.run_id
    tags = {
        "stage": "study",
        "study": spec.name,
        **({"task": "completion"} if spec.kind == "completion" else {}),
    }
    run = client.create_run(exp_id, run_name=f"study-{spec.name}", tags=tags)
    tracking.log_params(
        client, run.info.run_id, {"study_name": spec.name, **json.loads(spec.model_dump_json())}
    )
    return run.info.run_id


def experiment(client: Any, spec: Any, uri: str, server: Any) -> str:
    """The study's experiment id, created with its artifact location when new: with our own server, artifacts go
    straight to files under the storage path, so the SQLite store can be read (notebooks, --status, a plain
    ``MlflowClient``) after the server is gone; a SQLite store keeps them beside the database (not ./mlruns); a
    user's server decides. A copied or moved storage's locations are made its own before its server starts
    (``store.portable_artifacts``)."""
    location = None
    if server:
        location = (server.artifacts / spec.name).as_uri()
    elif uri.startswith("sqlite:///"):
        location = (Path(uri.removeprefix("sqlite:///")).resolve().parent / "artifacts" / spec.name).as_uri()
    return tracking.experiment_id(client, spec.name, artifact_location=location)
