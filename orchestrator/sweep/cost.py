"""What a study actually spent, from its MLflow runs, beside what ``--plan`` estimated.

``stage_finish`` logs these on the study's parent run, so the estimate (``--plan``'s GPU-hours, by FLOP count or
by a calibration: tag ``plan_estimate``) and the truth sit in one place: ``spent_trial_hours`` (wall time of every FINISHED student and tuning trial, from their
``trial_seconds``), ``spent_train_hours`` (their training loops alone, ``train_seconds``), ``spent_teacher_hours``
(teacher fine-tunes' ``train_seconds`` plus cache builds' ``build_seconds``) and ``planned_gpu_hours``. Hours are
device-hours only where each trial held a whole device; with ``trials_per_gpu`` k, divide by k. Tags
``plan_estimate`` (``calibrated``: measured step times, design/calibration.py; or ``flops``) and, when calibrated,
``plan_device`` and ``plan_calibrated_at`` say what ``planned_gpu_hours`` rests on.
"""

from __future__ import annotations

from typing import Any

from orchestrator.core import tracking


def _sum(runs: list[Any], metric: str) -> float:
    return float(sum(r.data.metrics.get(metric, 0.0) for r in runs))


def spent(client: Any, exp_id: str, planned_hours: float) -> dict[str, float]:
    """The study's spent hours per kind, and the plan's estimate, as metrics for the parent run."""
    trials = [
        *tracking.runs_by_stage(client, exp_id, "student", "FINISHED"),
        *tracking.runs_by_stage(client, exp_id, "tune", "FINISHED"),
    ]
    finetunes = tracking.runs_by_stage(client, exp_id, "teacher_finetune", "FINISHED")
    caches = tracking.runs_by_stage(client, exp_id, "teacher_cache", "FINISHED")
    lm_teachers = tracking.runs_by_stage(client, exp_id, "teacher", "FINISHED")  # a completion study's builds
    teacher_seconds = _sum(finetunes, "train_seconds") + _sum(caches, "build_seconds")
    return {
        "spent_trial_hours": _sum(trials, "trial_seconds") / 3600,
        "spent_train_hours": _sum(trials, "train_seconds") / 3600,
        "spent_teacher_hours": (teacher_seconds + _sum(lm_teachers, "build_seconds")) / 3600,
        "planned_gpu_hours": float(planned_hours),
    }


def plan_tags(plan: Any) -> dict[str, str]:
    """How ``planned_gpu_hours`` was estimated, as tags for the parent run."""
    tags = {"plan_estimate": plan.estimate}
    if plan.estimate == "calibrated":
        tags.update(
            plan_device=plan.calibration["device"], plan_calibrated_at=plan.calibration["measured_at"]
        )
    return tags
