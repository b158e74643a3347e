"""How a trial is named and what it records as params, decided when it is planned: run names that fit the MLflow
UI's default Run Name column (``kd rb-7m exc minilm s0``; the test score is put in front when the trial ends), and
the trial's params without the study-level settings (those are on the parent run only)."""

from __future__ import annotations

import re
from typing import Any

# A name that becomes a folder (a study's, a teacher's): <storage>/<name>, an MLflow experiment, a Ray folder.
NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$")


def folder_name_problem(name: str) -> str | None:
    """Why ``name`` cannot be a folder name (it could leave the folder it is made in), or None."""
    if NAME_RE.match(name) and ".." not in name:
        return None
    return (
        f"'{name}' is not usable as a folder name (letters, digits, '.', '_', '-'; no '/' or '..'; "
        "at most 100 characters)"
    )


# Short forms so a run name fits the Run Name column (about 30 characters wide by default).
TASK_SHORT = {"defect": "def", "clone": "cln", "exception": "exc"}
STUDENT_PREFIX = {"roberta-": "rb-", "bigru-": "gru-"}
# Study-level settings: on the parent run (which logs the whole spec), not repeated on every trial.
STUDY_LEVEL_PARAMS = ("data", "max_samples", "teacher_mode")


def short_student(student: str) -> str:
    for prefix, short in STUDENT_PREFIX.items():
        if student.startswith(prefix):
            return short + student[len(prefix) :]
    return student


def run_name(task: str, student: str, method: str, teacher: str, seed: int, labels: str = "all") -> str:
    """``kd rb-7m exc minilm s0``: method, student, task, teacher (left out for FT), the labels level (left out
    when ``all``: ``kd rb-7m exc minilm count=500 s0``), seed."""
    parts = [method, short_student(student), TASK_SHORT.get(task, task[:10])]
    if teacher != "none":
        parts.append(teacher[:12])
    if labels != "all":
        parts.append(labels)
    return " ".join([*parts, f"s{seed}"])


def trial_params(params: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in params.items() if k not in STUDY_LEVEL_PARAMS}
