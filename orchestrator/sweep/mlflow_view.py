"""How a study looks in the MLflow UI without picking columns: the experiment's description (what the study is, its
YAML) in the ``mlflow.note.content`` tag, which the UI shows as the experiment's description; run names that fit
the default Run Name column and carry, once the trial ends, its ``test_score`` first (visible even where the
column cuts the name) and the factors (``0.734 kd rb-7m exc minilm s0``); study-level settings as params of the
parent run only; and a link to the runs table that shows the trials (not the one collapsed parent row), best
first."""

from __future__ import annotations

import urllib.parse
from typing import Any

import yaml

NOTE_TAG = "mlflow.note.content"
KIND_TAG = "mlflow.experimentKind"


def scored_name(name: str, score: float | None, digits: int = 3) -> str:
    """The run name with its test score in front, set when the trial is FINISHED (``digits``: 1 for a 0-100
    score, a completion trial's edit similarity)."""
    return name if score is None else f"{score:.{digits}f} {name}"


def runs_url(base: str, exp_id: str) -> str:
    """The MLflow UI's runs table of the study's trials, best ``test_score`` first.

    MLflow 3 opens an experiment on its GenAI overview unless ``workflowType=machine_learning``, and shows the
    trials nested under the collapsed parent row unless a filter leaves the parent out; the filter and the sort
    are URL state (``searchFilter``, ``orderByKey``, ``orderByAsc``), so one link opens the view."""
    query = urllib.parse.urlencode(
        {
            "workflowType": "machine_learning",
            "searchFilter": "tags.stage = 'student'",
            "orderByKey": "metrics.`test_score`",
            "orderByAsc": "false",
        },
        quote_via=urllib.parse.quote,
    )
    return f"{base.rstrip('/')}/#/experiments/{exp_id}/runs?{query}"


def describe_experiment(client: Any, exp_id: str, spec: Any) -> None:
    """The experiment's description: what the study is, how to read the runs, and its YAML."""
    body = yaml.safe_dump(spec.model_dump(mode="json"), sort_keys=False, width=110)
    tasks = (
        "completion (" + ", ".join(spec.teacher_modes) + ")"
        if spec.kind == "completion"
        else ", ".join(spec.tasks)
    )
    names = (
        "`test_score method student init teacher_mode teacher seed` (test_score: edit similarity, 0-100)"
        if spec.kind == "completion"
        else "`test_score method student task teacher seed` (test_score: the task's headline metric; no teacher "
        "for FT)"
    )
    text = "\n".join(
        [
            f"**Study `{spec.name}`**: {spec.description or 'a knowledge-distillation study'}",
            "",
            f"Tasks {tasks}; teachers {', '.join(t.name for t in spec.teachers) or 'none'}; "
            f"students {', '.join(spec.students)}; methods {', '.join(spec.methods)}; seeds "
            f"{', '.join(map(str, spec.seeds))}.",
            "",
            f"Trial run names read {names}. Filter `tags.stage = 'student'` to list the trials without "
            "the parent row. Tags carry every factor (task, teacher, student, method, seed, stage); the parent "
            f"run `study-{spec.name}` holds the study-level settings.",
            "",
            "```yaml",
            body.rstrip(),
            "```",
        ]
    )
    client.set_experiment_tag(exp_id, NOTE_TAG, text)
    # What the experiment is to MLflow 3 (model training, not GenAI traces). The UI's GenAI / Model training toggle
    # is a per-browser setting (GenAI by default): the summary's link sets it with workflowType=machine_learning.
    client.set_experiment_tag(exp_id, KIND_TAG, "custom_model_development")
