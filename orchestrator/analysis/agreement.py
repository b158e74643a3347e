"""Behaviour: how often a student predicts what its teacher predicts, from the runs' prediction artifacts."""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pandas as pd

from orchestrator.analysis.load import ALL_LABELS, label_levels, student_runs, teacher_scores
from orchestrator.analysis.stats import _sorted


@contextmanager
def _quiet_downloads() -> Iterator[None]:
    # MLflow draws a progress bar per download: hundreds of them would bury the notebook's tables
    key = "MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR"
    old = os.environ.get(key)
    os.environ[key] = "false"
    try:
        yield
    finally:
        if old is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = old


PROXIED = "mlflow-artifacts:"  # artifact URIs a tracking server resolves against its --artifacts-destination


def local_artifact(client: Any, run_id: str, path: str) -> Path | None:
    """The file behind a run's artifact when the run's artifacts are proxied (``mlflow-artifacts:/...``, relative to
    the server's ``--artifacts-destination``) and ``client`` reads the study's SQLite store without a server: the
    study's server keeps them in ``artifacts/`` beside ``mlflow.db``. None otherwise (MLflow downloads it)."""
    uri = str(getattr(client, "tracking_uri", ""))
    if not uri.startswith("sqlite:///"):
        return None
    artifact_uri = client.get_run(run_id).info.artifact_uri or ""
    if not artifact_uri.startswith(PROXIED):
        return None
    root = (Path(uri.removeprefix("sqlite:///")).parent / "artifacts").resolve()
    local = (root / artifact_uri.removeprefix(PROXIED).lstrip("/") / path).resolve()
    if not local.is_relative_to(root):  # nothing a store records may lead outside its artifacts folder
        raise OSError(f"run {run_id}: artifact {artifact_uri}/{path} lies outside {root}")
    return local


def load_predictions(client: Any, run_id: str) -> pd.DataFrame:
    """A run's predictions/test.json as a frame indexed by idx with columns label, pred."""
    local = local_artifact(client, run_id, "predictions/test.json")
    if local is not None:
        data = json.loads(local.read_text())
    else:
        with tempfile.TemporaryDirectory() as tmp, _quiet_downloads():
            path = client.download_artifacts(run_id, "predictions/test.json", tmp)
            data = json.loads(Path(path).read_text())
    return pd.DataFrame(
        {"label": data["label"], "pred": data["pred"]}, index=pd.Index(data["idx"], name="idx")
    ).astype(int)


_AGREEMENT_COLUMNS = [
    "run_id",
    "task",
    "labels",
    "student",
    "student_arch",
    "teacher",
    "method",
    "method_family",
    "seed",
    "degenerate",
    "teacher_degenerate",
    "n_samples",
    "agreement",
    "metric",
    "score",
    "teacher_score",
    "accuracy",
    "teacher_accuracy",
    "n_ft_disagreed",
    "acc_on_ft_disagreed",
    "agree_on_ft_disagreed",
    "note",
]


def _agreement_row(
    r: Any,
    teacher: str,
    cache_run: dict[tuple[str, str, str], Any],
    ft_run: dict[tuple[Any, ...], str],
    preds: Callable[[str], pd.DataFrame | None],
) -> dict[str, Any]:
    """One row of ``agreement``: student run ``r`` (a row of ``student_runs``) against ``teacher``."""
    row: dict[str, Any] = {
        "run_id": r.run_id,
        "task": r.task,
        "labels": r.labels,
        "student": r.student,
        "student_arch": r.student_arch,
        "teacher": teacher,
        "method": r.method,
        "method_family": r.method_family,
        "seed": r.seed,
        "degenerate": bool(r.degenerate),
        "metric": r.metric,
        "score": r.primary,  # the task's headline metric, as every table reports it
    }
    cache = cache_run.get((teacher, r.task, r.labels))
    row["teacher_score"] = cache.primary if cache is not None else float("nan")
    tp = preds(cache.run_id) if cache is not None else None
    sp_ = preds(r.run_id)
    if tp is None or sp_ is None:
        row["note"] = "no teacher predictions" if tp is None else "no student predictions"
        return row
    both = sp_.join(tp["pred"].rename("teacher_pred"), how="inner")
    agree = both["pred"] == both["teacher_pred"]
    row.update(
        agreement=agree.mean(),
        accuracy=(both["pred"] == both["label"]).mean(),
        teacher_accuracy=(both["teacher_pred"] == both["label"]).mean(),
        n_samples=len(both),
        note="",
    )
    fid = ft_run.get((r.task, r.student, r.seed, r.labels))
    fp = preds(fid) if fid is not None else None
    if fp is None:
        row["note"] = "no FT run of this student and seed"
    else:
        disagreed = both.index.intersection(fp.index[fp["pred"] != tp["pred"].reindex(fp.index)])
        sub = both.loc[disagreed]
        row["n_ft_disagreed"] = len(sub)
        if len(sub):
            row["acc_on_ft_disagreed"] = (sub["pred"] == sub["label"]).mean()
            row["agree_on_ft_disagreed"] = (sub["pred"] == sub["teacher_pred"]).mean()
    return row


def agreement(df: pd.DataFrame, client: Any) -> pd.DataFrame:
    """Behaviour: per student run and teacher, how often the student predicts what the teacher predicts.

    The teacher's predictions come from the latest teacher_cache run of (teacher, task) at the run's labels level
    (each level has its own fine-tuned teacher and cache); FT runs are compared with every teacher of their task
    and level, and with FT of the same level. Samples are aligned by idx. A study with several labels levels gets
    a ``labels`` column after ``task``. Columns: agreement, metric, score and
    teacher_score (the task's headline metric, as ``load_runs`` reads it: what the run and the teacher's cache run
    recorded), accuracy and teacher_accuracy (the share of samples predicted right, recomputed from the
    predictions), n_ft_disagreed (samples where the FT run of the same task/student/seed disagreed with the
    teacher), acc_on_ft_disagreed and agree_on_ft_disagreed (the share of those samples this run gets right, and
    agrees with the teacher on), note. ``client`` is an mlflow.MlflowClient on the study's store.
    """
    from mlflow.exceptions import MlflowException

    df = df if "labels" in df.columns else df.assign(labels=ALL_LABELS)
    s = student_runs(df)
    caches = df[df["stage"] == "teacher_cache"].sort_values("start_time")
    cache_run = {(r.teacher, r.task, r.labels): r for r in caches.itertuples()}  # the latest of a level wins
    memo: dict[str, pd.DataFrame | None] = {}

    def preds(run_id: str) -> pd.DataFrame | None:
        if run_id not in memo:
            try:
                memo[run_id] = load_predictions(client, run_id)
            except (MlflowException, OSError):
                memo[run_id] = None  # reported per row, so one run without artifacts spoils nothing else
        return memo[run_id]

    ft_run = {
        (r.task, r.student, r.seed, r.labels): r.run_id
        for r in s[s["method"] == "ft"].sort_values("start_time").itertuples()
    }
    rows = []
    for r in s.itertuples():
        own = sorted(t for (t, task, lv) in cache_run if (task, lv) == (r.task, r.labels))
        teachers = [r.teacher] if r.method != "ft" else own
        for teacher in teachers:
            rows.append(_agreement_row(r, teacher, cache_run, ft_run, preds))
    out = pd.DataFrame(rows, columns=_AGREEMENT_COLUMNS)
    tdeg = {
        (r.teacher, r.task, lv): bool(r.degenerate)
        for lv in sorted(set(df["labels"]))
        for r in teacher_scores(df[df["labels"] == lv]).itertuples()
    }
    keys = zip(out["teacher"], out["task"], out["labels"])
    out["teacher_degenerate"] = [tdeg.get(k, False) for k in keys]
    out["note"] = out["note"].fillna("")
    out = _sorted(out, ["task", "labels", "teacher", "student", "method", "seed"])
    return out if len(label_levels(df)) > 1 else out.drop(columns="labels")


def agreement_summary(agr: pd.DataFrame) -> pd.DataFrame:
    """FT vs KD: per (task, teacher, method) the mean agreement with the teacher, the mean score (the task's
    headline metric, ``metric``), and the share right / agreement on the samples the FT student got different
    from the teacher; agreement_minus_ft compares with
    the FT row of the same (task, teacher) (and labels level, per level when ``agr`` has a ``labels`` column). Only runs that are not degenerate, with a teacher that is not, count
    (``n_runs``); ``n_excluded`` the others (a constant student agrees with a constant teacher by construction)."""
    agr = agr.assign(_bad=agr["degenerate"].astype(bool) | agr["teacher_degenerate"].astype(bool))
    level = ["labels"] if "labels" in agr.columns else []
    keys = ["task", *level, "teacher", "method"]
    out = (
        agr[~agr["_bad"]]
        .groupby(keys, as_index=False)
        .agg(
            n_runs=("run_id", "size"),
            agreement=("agreement", "mean"),
            metric=("metric", "first"),
            score=("score", "mean"),
            acc_on_ft_disagreed=("acc_on_ft_disagreed", "mean"),
            agree_on_ft_disagreed=("agree_on_ft_disagreed", "mean"),
        )
    )
    ft = out[out["method"] == "ft"][[*keys[:-1], "agreement"]].rename(columns={"agreement": "ft_agreement"})
    out = out.merge(ft, on=keys[:-1], how="left")
    out["agreement_minus_ft"] = out["agreement"] - out.pop("ft_agreement")
    excluded = agr.groupby(keys, as_index=False)["_bad"].sum()
    out = excluded.rename(columns={"_bad": "n_excluded"}).merge(out, on=keys, how="left")
    out["n_runs"] = out["n_runs"].fillna(0).astype(int)
    out["n_excluded"] = out["n_excluded"].astype(int)
    return _sorted(out, keys)
