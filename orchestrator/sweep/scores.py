"""The end of a study says how well it went, not only that it ran (issue 24): per method the headline score (each
run's ``test_score``, its task's declared headline; per task, mean over the method's runs (seeds, students,
teachers): tasks' headline metrics differ, so no mean across them) and how many runs sit at or below
their majority baseline (``test_majority_baseline`` + ``DEGENERATE_MARGIN``: a constant prediction does as well),
with one line of advice when any do. "3/3 FINISHED" over students that all predict one class is a failure."""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from typing import Any

from tasks.examples import DEGENERATE_MARGIN

ADVICE = (
    "advice: runs at their majority baseline learnt nothing a constant could not; give them more steps "
    "(student_train.epochs, or max_samples: null), try another lr, or let the tuning stage pick the recipe "
    "(tuning:); docs/OWN_DATA.md, 'Choosing a student recipe for a new task'"
)


@dataclass(frozen=True)
class MethodScore:
    task: str
    method: str
    runs: int
    mean: float
    at_baseline: int  # runs with a known baseline scoring at most baseline + DEGENERATE_MARGIN
    with_baseline: int  # runs whose baseline is known (completion runs have none)


def method_scores(rows: list[dict[str, Any]]) -> list[MethodScore]:
    """``rows``: one per finished student run, with ``task``, ``method``, ``test_score`` and (optionally)
    ``test_majority_baseline``. One score per (task, method), in the order they first appear."""
    by_cell: dict[tuple[str, str], list[dict[str, Any]]] = defaultdict(list)
    for r in rows:
        if r.get("test_score") is not None:
            by_cell[(r.get("task") or "?", r["method"])].append(r)
    out = []
    for (task, method), runs in by_cell.items():
        scored = [r for r in runs if r.get("test_majority_baseline") is not None]
        low = [r for r in scored if r["test_score"] <= r["test_majority_baseline"] + DEGENERATE_MARGIN]
        mean = sum(r["test_score"] for r in runs) / len(runs)
        out.append(MethodScore(task, method, len(runs), mean, len(low), len(scored)))
    return out


def score_lines(rows: list[dict[str, Any]]) -> list[str]:
    """The summary's score lines (none when no run finished): a line per task, then one per method of it."""
    scores = method_scores(rows)
    if not scores:
        return []
    lines = ["scores (test_score, each task's headline metric; per task, mean over the method's runs):"]
    for task in dict.fromkeys(s.task for s in scores):
        lines.append(f"  {task}")
        for s in (s for s in scores if s.task == task):
            base = (
                f"; {s.at_baseline}/{s.with_baseline} at or below the majority baseline"
                if s.with_baseline
                else ""
            )
            lines.append(f"    {s.method:<8} {s.mean:.4f} over {s.runs} run(s){base}")
    if any(s.at_baseline for s in scores):
        lines.append(ADVICE)
    return lines


def finished_student_rows(tracking_uri: str, experiment_id: str) -> list[dict[str, Any]]:
    """Task, method, test_score and baseline of each FINISHED student run of the experiment."""
    from mlflow.tracking import MlflowClient

    from orchestrator.core.tracking import runs_by_stage

    runs = runs_by_stage(MlflowClient(tracking_uri), experiment_id, "student", "FINISHED")
    return [
        {
            "task": r.data.tags.get("task", "?"),
            # a labels level other than all is its own line: kd@count=500 (README, "Labels on part of ...")
            "method": r.data.tags.get("method", "?")
            + (f"@{r.data.tags['labels']}" if r.data.tags.get("labels", "all") != "all" else ""),
            "test_score": r.data.metrics.get("test_score"),
            "test_majority_baseline": r.data.metrics.get("test_majority_baseline"),
        }
        for r in sorted(runs, key=lambda r: r.info.start_time or 0)
    ]


def study_score_lines(storage: str, outcome: Any) -> list[str]:
    """``score_lines`` of a finished study, read from its store (the study's own server has stopped by then)."""
    from orchestrator.core.paths import existing_store

    uri = existing_store(storage)
    if uri is None or not outcome.experiment_id:
        return []
    try:
        return score_lines(finished_student_rows(uri, outcome.experiment_id))
    except Exception as err:  # noqa: BLE001 - the summary stands without the scores; say why
        return [f"scores: not read from {uri} ({type(err).__name__}: {err})"]
