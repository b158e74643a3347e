"""Loading: one tidy frame of a study's FINISHED MLflow runs, plus one row per student trial that never finished
(``status``, ``diverged``: ``progress.py``), with the contract's columns and orders."""

from __future__ import annotations

import functools
import json
from collections.abc import Callable
from typing import Any

import numpy as np
import pandas as pd

from orchestrator.analysis.progress import (  # noqa: F401 - progress, unfinished, ...: load's API, too
    FINISHED,
    FINITE_LIMIT,
    UNFINISHED,
    finished,
    is_diverged,
    progress,
    study_progress,
    unfinished,
    unscored,
    why_none,
)
from tasks.base import DEGENERATE_MARGIN

# Every run is scored by its task's own headline metric: the ``test_score`` a run records (docs/CONTRACTS.md). For
# runs that did not record one, the task's headline metric: the built-in tasks' below (= ``Task.headline_metric``,
# tests check they agree), a declared task's ``headline`` from the study run's ``custom_tasks`` param. A task whose
# headline is unknown gets no score (NaN), never a silent accuracy: a 4-class task declared with ``headline:
# macro_f1`` whose students predict one class scores its baseline in macro-F1 and far above it in accuracy.
PRIMARY_METRIC: dict[str, str] = {
    "defect": "test_accuracy",
    "clone": "test_f1",
    "exception": "test_accuracy",
    "completion": "test_es",
}
UNKNOWN = "unknown"  # the ``metric`` of a run whose task's headline metric nobody recorded
TEST_METRICS: tuple[str, ...] = (
    "test_accuracy",
    "test_f1",
    "test_top3_accuracy",
    "test_macro_f1",
    "test_score",  # the task's headline metric (= primary)
    "test_majority_baseline",  # the best headline score an input-blind prediction reaches on the test split
)
# A run whose primary score is at most its majority baseline plus DEGENERATE_MARGIN (tasks/base.py) learnt nothing
# a constant could not do: it is flagged ``degenerate`` in every table and left out of every test and ranking.
RUN_METRICS: tuple[str, ...] = (
    "train_seconds",
    "teacher_seconds",
    "inference_samples_per_s",
    "teacher_params",
    "teacher_passes",
    "cache_bytes",
    "build_seconds",
    "best_epoch",
    "steps",  # a student trial's optimizer steps: the teacher forwards online KD would have made
)
# Hyperparameters the efficiency table needs to count the teacher forwards online KD would have made.
RUN_PARAMS: tuple[str, ...] = ("epochs", "batch_size", "train_samples")
# The labels factor (tasks/labels.py): the level's name (tag ``labels``; ``all`` for runs made before it) and the
# task's labelled and unlabelled training inputs at that level (params).
ALL_LABELS = "all"
LABEL_PARAMS: tuple[str, ...] = ("labelled_samples", "unlabelled_samples")
TAG_COLUMNS: tuple[str, ...] = (
    "stage",
    "task",
    "teacher",
    "student",
    "student_arch",
    "method",
    "method_family",
    "trial_key",
    "data_key",  # the data a trial read: two values in one study mean it was re-run on other data
)
COLUMNS: tuple[str, ...] = (
    "run_id",
    "start_time",
    *TAG_COLUMNS,
    "labels",
    "student_params",
    "seed",
    *TEST_METRICS,
    "metric",  # the task's headline metric that ``primary`` holds (accuracy, f1, macro_f1, ...)
    "primary",
    "baseline",
    "degenerate",
    "status",  # MLflow's: FINISHED, or FAILED / RUNNING / KILLED / SCHEDULED for a student trial that never finished
    "diverged",  # True for a FAILED trial whose loss became NaN or infinite (progress.DIVERGED)
    *RUN_METRICS,
    *RUN_PARAMS,
    *LABEL_PARAMS,
)
METHOD_ORDER: tuple[str, ...] = ("ft", "kd", "dist", "pkd", "ckd")
ARCH_ORDER: tuple[str, ...] = ("roberta", "bigru")
TASK_ORDER: tuple[str, ...] = ("defect", "clone", "exception")
NONE = "none"  # the contract's value for a factor that does not apply (e.g. the teacher of an FT run)


def _client(tracking_uri: str | None) -> Any:
    from mlflow import MlflowClient

    return MlflowClient(tracking_uri=tracking_uri)


def _study_runs(client: Any, experiment_id: str) -> list[Any]:
    """The FINISHED runs, and the student runs that did not finish (a failed, diverged, running or killed trial is
    an outcome of its seed, not a missing value); the other stages' unfinished runs hold nothing to analyse."""
    from orchestrator.core.tracking import search_all  # paged: a full study has more runs than one page

    runs = search_all(client, experiment_id)
    return [
        r
        for r in runs
        if r.info.status == FINISHED
        or (r.info.status in UNFINISHED and r.data.tags.get("stage") == "student")
    ]


@functools.cache
def method_family(method: str) -> str:
    """A method's family from the method registry, as the planner tags it (design/plan.py): for runs made before
    the ``method_family`` tag; ``unknown`` for a method the registry does not know (never FT's ``none``)."""
    from kd_methods import get_method  # imports torch: only for such older runs

    try:
        return str(get_method(method).family)
    except (KeyError, ValueError):
        return UNKNOWN


def _run_row(run: Any) -> dict[str, Any]:
    tags, metrics, params = run.data.tags, run.data.metrics, run.data.params
    status = run.info.status
    row: dict[str, Any] = {"run_id": run.info.run_id, "start_time": run.info.start_time, "status": status}
    row["diverged"] = is_diverged(status, tags.get("error"))
    for tag in TAG_COLUMNS:
        row[tag] = tags.get(tag, NONE)
    if "method_family" not in tags and row["stage"] == "student" and row["method"] != NONE:
        row["method_family"] = method_family(row["method"])
    # student_params is both a tag (text) and a metric; the metric survives a missing tag
    row["student_params"] = metrics.get("student_params", tags.get("student_params"))
    # older code tagged no seed; a student trial logs it as a param too (a teacher's tag "none" stays unknown)
    row["seed"] = tags.get("seed", params.get("seed"))
    row["labels"] = tags.get("labels", ALL_LABELS)
    for name in (*TEST_METRICS, *RUN_METRICS):
        row[name] = metrics.get(name)
    if status != FINISHED:  # a test metric logged on the way by a run that never finished is no result
        row.update(dict.fromkeys(TEST_METRICS))
    for name in (*RUN_PARAMS, *LABEL_PARAMS):
        row[name] = params.get(name)
    return row


def load_runs(study: str, tracking_uri: str | None = None) -> pd.DataFrame:
    """One row per FINISHED run of the experiment named ``study``, and one per student trial (factor key
    ``RUN_FACTORS``) without a FINISHED run, columns ``COLUMNS``.

    ``status`` is the run's MLflow status (a trial that never finished: its newest run's FAILED / RUNNING /
    KILLED / SCHEDULED, ``primary`` NaN, ``diverged`` when its loss became non-finite; ``unfinished(df)``).
    Metric values that are NaN or infinite (MLflow stores inf as 1.8e308) are missing (NaN); ``unscored(df)``
    names the finished runs left without a score. ``df.attrs["progress"]``: the study run's status and planned /
    finished trial counts (``progress(df)`` says them in a line).

    ``seed`` and ``student_params`` are nullable integers (``Int64``: teacher runs have none), metrics and the
    params epochs/batch_size/train_samples are floats (NaN where a run did not log them), ``primary`` is the
    run's score on its task's headline metric (``test_score``; ``metric`` names it: a declared task's
    ``headline``, a built-in task's own; see ``_primary``). A rerun student or teacher_finetune trial counts
    once: its newest run (``latest_runs``; ``superseded(df)`` says how many were left out). Raises LookupError
    naming the existing experiments when the study has none (a deleted one included: no study to analyse).
    """
    from mlflow.entities import ViewType

    client = _client(tracking_uri)
    experiment = client.get_experiment_by_name(study)
    # a deleted experiment is still found by name; its runs are no study to analyse
    if experiment is None or experiment.lifecycle_stage != "active":
        names = sorted(e.name for e in client.search_experiments(view_type=ViewType.ACTIVE_ONLY))
        deleted = " (it was deleted: restore it to analyse it)" if experiment is not None else ""
        raise LookupError(
            f"no MLflow experiment named {study!r} at {client.tracking_uri}{deleted}; existing experiments: {names}"
        )
    rows = [_run_row(r) for r in _study_runs(client, experiment.experiment_id)]
    declared = declared_headlines(client, experiment.experiment_id)
    df = pd.DataFrame(rows, columns=list(COLUMNS))
    df["start_time"] = pd.to_datetime(df["start_time"], unit="ms")
    for tag in (*TAG_COLUMNS, "labels"):
        df[tag] = df[tag].astype(str)
    for name in ("student_params", "seed"):
        # via float: the tag "none" and missing values become <NA>, "7100000" and 7100000.0 the same integer
        df[name] = pd.to_numeric(df[name], errors="coerce").round().astype("Int64")
    for name in (*TEST_METRICS, *RUN_METRICS, *RUN_PARAMS, *LABEL_PARAMS):
        df[name] = pd.to_numeric(df[name], errors="coerce").astype(float)
    for name in (*TEST_METRICS, *RUN_METRICS):  # inf arrives as 1.8e308: a "score" that would win every mean
        df[name] = df[name].where(df[name].abs() < FINITE_LIMIT)
    df["diverged"] = df["diverged"].astype(bool)
    df["metric"], df["primary"] = _primary(df, declared)
    df = latest_runs(mark_degenerate(df)).sort_values(
        ["stage", "task", "student", "teacher", "method", "seed"], ignore_index=True
    )
    df.attrs["progress"] = study_progress(client, experiment.experiment_id)
    return df


# A trial that was run again (its data or recipe changed, or it was simply rerun) leaves several FINISHED runs of
# the same factors and seed: only the newest counts. The tuning stage (``tune``: many configurations per seed),
# the teacher caches (one run per cache) and the study run are kept whole.
RUN_FACTORS: tuple[str, ...] = ("stage", "task", "teacher", "student", "method", "seed", "labels")
LATEST_ONLY_STAGES: tuple[str, ...] = ("student", "teacher_finetune")


def latest_runs(df: pd.DataFrame) -> pd.DataFrame:
    """``df`` with only the newest (``start_time``) of the student and teacher_finetune runs that share every
    factor of ``RUN_FACTORS``, a FINISHED one before any newer one that did not finish (a retry that is still
    running does not hide its trial's result); ``attrs["n_superseded"]`` counts the older FINISHED ones left
    out (``superseded(df)``). A student run whose seed is unknown (NA: no tag, no param) is no rerun of another
    such run: each is kept. A run that did not finish is dropped, too, where its ``trial_key`` finished."""
    done, latest_only = finished(df), df["stage"].isin(LATEST_ONLY_STAGES)
    # the mask on both sides: assigning the whole Series to an empty selection gave it the Series' index (pandas 3),
    # so a study without student runs yet (mid-tuning) lost all but one of its other runs
    once = df[latest_only].assign(_done=done[latest_only])
    once = once[~((once["stage"] == "student") & once["seed"].isna())]
    once = once.sort_values(["_done", "start_time", "run_id"], kind="stable")
    older = once.index[once.duplicated(list(RUN_FACTORS), keep="last")]
    keys = set(df.loc[done & latest_only, "trial_key"]) - {NONE}
    retried = df.index[~done & df["trial_key"].isin(keys)]
    out = df.drop(index=older.union(retried))
    out.attrs["n_superseded"] = int(done[older].sum()) + int(df.attrs.get("n_superseded", 0))
    return out


def superseded(df: pd.DataFrame) -> int:
    """How many older FINISHED runs of a rerun trial ``load_runs`` left out (0 for a frame made otherwise)."""
    return int(df.attrs.get("n_superseded", 0))


def declared_headlines(client: Any, experiment_id: str) -> dict[str, str]:
    """``{task: headline metric}`` of the tasks the study declared (its study run's ``custom_tasks`` param, the
    validated declarations: docs/CONTRACTS.md); empty when there is no study run or it declared none."""
    runs = client.search_runs([experiment_id], filter_string="tags.stage = 'study'", max_results=10)
    out: dict[str, str] = {}
    for run in runs:
        try:
            decls = json.loads(run.data.params.get("custom_tasks") or "[]")
        except json.JSONDecodeError:
            continue  # a param cut at MLflow's length limit: the runs' own test_score still holds
        for d in decls if isinstance(decls, list) else []:
            if isinstance(d, dict) and d.get("name"):
                out[str(d["name"])] = str(d.get("headline", "accuracy"))  # the declaration's default
    return out


def headline_metric(task: str, declared: dict[str, str] | None = None) -> str:
    """The headline metric of ``task`` without its ``test_`` prefix: a declared task's ``headline``, a built-in
    task's own, ``UNKNOWN`` otherwise (``none`` for runs without a task, such as the study run)."""
    if task == NONE:
        return NONE
    if declared and task in declared:
        return declared[task]
    return PRIMARY_METRIC[task].removeprefix("test_") if task in PRIMARY_METRIC else UNKNOWN


def _primary(df: pd.DataFrame, declared: dict[str, str]) -> tuple[pd.Series, pd.Series]:
    """Per run: the name of its task's headline metric and its score, the ``test_score`` it recorded or, where it
    recorded none (older studies), its ``test_<headline metric>``; NaN where neither is known."""
    metric = df["task"].map(lambda t: headline_metric(t, declared)).astype(str)
    fallback = pd.Series(np.nan, index=df.index, dtype=float)
    for name in metric.unique():
        column = f"test_{name}"
        if column in df.columns:
            rows = metric == name
            fallback[rows] = df.loc[rows, column]
    return metric, df["test_score"].astype(float).fillna(fallback)


def mark_degenerate(df: pd.DataFrame, margin: float = DEGENERATE_MARGIN) -> pd.DataFrame:
    """``df`` with ``baseline`` (``_baseline``) and ``degenerate`` (primary at most baseline + ``margin``; False
    where either is unknown) set afresh; a row without ``status`` / ``diverged`` (a frame made by hand) is a
    FINISHED run that did not diverge."""
    out = df.copy()
    if "status" in out.columns:
        out["status"] = out["status"].astype(object).where(out["status"].notna(), FINISHED).astype(str)
    if "diverged" in out.columns:
        out["diverged"] = out["diverged"].eq(True)  # NaN (a frame made by hand) is False
    out["baseline"] = _baseline(out)
    out["degenerate"] = (out["primary"] <= out["baseline"] + margin).fillna(False).astype(bool)
    return out


def _baseline(df: pd.DataFrame) -> pd.Series:
    """Each run's ``test_majority_baseline``; runs that did not record it (older studies) take the one other runs
    of the same task recorded (a study has one test split per task); NaN (unknown) when none did."""
    own = df["test_majority_baseline"].astype(float)
    per_task = own[finished(df)].groupby(df["task"]).median()
    return own.fillna(df["task"].map(per_task)).astype(float)


def label_levels(df: pd.DataFrame) -> list[str]:
    """The labels levels of a study's student runs, fewest labels first (``all`` last); ``["all"]`` for a study
    without the factor (or a frame without the column)."""
    if "labels" not in df.columns:
        return [ALL_LABELS]
    s = df[(df["stage"] == "student") & finished(df)] if "stage" in df.columns else df
    counts = s.groupby("labels")["labelled_samples"].max() if "labelled_samples" in s else pd.Series()
    levels = sorted(
        set(s["labels"]) or {ALL_LABELS}, key=lambda lv: (lv == ALL_LABELS, counts.get(lv, 0), lv)
    )
    return levels


def regime(df: pd.DataFrame, task: str, level: str) -> str:
    """A level in words for one task, from what its runs recorded: ``500 labels + 5,376 unlabelled`` (the level's
    name where its runs recorded no counts, e.g. ``all`` in a study made before the factor)."""
    from tasks.labels import regime as words

    rows = df[(df["task"] == task) & finished(df)]
    rows = rows[rows["labels"] == level] if "labels" in rows.columns else rows
    n = rows[list(LABEL_PARAMS)].dropna() if set(LABEL_PARAMS) <= set(rows.columns) else pd.DataFrame()
    return words(int(n.iloc[0, 0]), int(n.iloc[0, 1])) if len(n) else level


def per_labels_level(fn: Callable[..., pd.DataFrame]) -> Callable[..., pd.DataFrame]:
    """``fn``'s table per labels level when the study has more than one (each level's runs alone, its FT and
    teachers included), with a ``labels`` column after ``task``; ``fn`` itself otherwise. Each level is its own
    family for the Holm correction: the levels are separate experiments."""

    @functools.wraps(fn)
    def by_level(df: pd.DataFrame, *args: Any, **kwargs: Any) -> pd.DataFrame:
        levels = label_levels(df)
        if len(levels) <= 1:
            return fn(df, *args, **kwargs)
        parts = [fn(df[df["labels"] == lv], *args, **kwargs).assign(labels=lv) for lv in levels]
        out = pd.concat([p for p in parts if len(p)] or parts[:1], ignore_index=True)
        columns = [c for c in out.columns if c != "labels"]
        at = columns.index("task") + 1 if "task" in columns else 0
        return out[[*columns[:at], "labels", *columns[at:]]]

    return by_level


def student_runs(df: pd.DataFrame) -> pd.DataFrame:
    """The student trials (stage ``student``) that logged their primary metric, degenerate ones included (column
    ``degenerate``; ``valid_runs`` leaves them out)."""
    out = df[(df["stage"] == "student") & df["primary"].notna()]
    return out.reset_index(drop=True)


def valid_runs(runs: pd.DataFrame) -> pd.DataFrame:
    """The runs of ``runs`` that are not degenerate: the ones tests and rankings use."""
    return runs[~runs["degenerate"].astype(bool)]


@per_labels_level
def degenerate_summary(df: pd.DataFrame) -> pd.DataFrame:
    """Per (stage, task, teacher) of the teacher_finetune and student runs: the headline metric they are scored by,
    runs, how many are degenerate (primary at most ``baseline`` + ``DEGENERATE_MARGIN``), the baseline and the
    best primary."""
    r = df[df["stage"].isin(["teacher_finetune", "student"]) & df["primary"].notna()]
    out = r.groupby(["stage", "task", "teacher"], as_index=False, sort=False).agg(
        metric=("metric", "first"),
        runs=("primary", "size"),
        degenerate=("degenerate", "sum"),
        baseline=("baseline", "first"),
        best=("primary", "max"),
    )
    out["degenerate"] = out["degenerate"].astype(int)
    stage = {"teacher_finetune": 0, "student": 1}
    order = out["stage"].map(stage).astype(str) + out["task"].map(
        lambda t: str(TASK_ORDER.index(t)) if t in TASK_ORDER else t
    )
    return out.assign(_o=order).sort_values(["_o", "teacher"]).drop(columns="_o").reset_index(drop=True)


@per_labels_level
def teacher_scores(df: pd.DataFrame) -> pd.DataFrame:
    """Fine-tuned teachers: columns teacher, task, metric (the task's headline metric), primary (mean over runs), baseline (the task's majority
    baseline), teacher_params, the teacher's inference_samples_per_s (NaN where not logged) and degenerate
    (primary at most baseline + ``DEGENERATE_MARGIN``: a teacher that learnt nothing)."""
    t = df[(df["stage"] == "teacher_finetune") & df["primary"].notna()]
    out = t.groupby(["teacher", "task"], as_index=False).agg(
        metric=("metric", "first"),
        primary=("primary", "mean"),
        baseline=("baseline", "mean"),
        teacher_params=("teacher_params", "mean"),
        inference_samples_per_s=("inference_samples_per_s", "mean"),
    )
    out["degenerate"] = (out["primary"] <= out["baseline"] + DEGENERATE_MARGIN).fillna(False).astype(bool)
    return out


def default_teacher(df: pd.DataFrame) -> str | None:
    """The teacher of the paper's Figure 2 (UniXcoder) when the study has it, else the first KD teacher."""
    teachers = sorted(set(student_runs(df)["teacher"]) - {NONE})
    for t in teachers:
        if "unixcoder" in t.lower():
            return t
    return teachers[0] if teachers else None
