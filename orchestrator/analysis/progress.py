"""How far a study got: the student trials that never finished (failed, diverged, still running, killed) and the
runs that finished without a finite score, counted so that no notebook passes them over in silence.

``load_runs`` keeps one row per student trial without a FINISHED run (``status`` not FINISHED, ``primary`` NaN,
``diverged`` when its loss stopped being finite); every table reads finished runs only (``student_runs``), and
the tables withhold a verdict where a cell has such seeds. Here: which rows those are (``unfinished``), the
study run's planned and finished trial counts (``study_progress``, ``progress``), and why a notebook has no rows
(``why_none``: "no student trial finished" is not "the design lacks KD runs")."""

from __future__ import annotations

from typing import Any

import pandas as pd

FINISHED = "FINISHED"
UNFINISHED: tuple[str, ...] = ("FAILED", "RUNNING", "KILLED", "SCHEDULED")  # MLflow's other run statuses
# The ``error`` tag of a trial whose loss became NaN or infinite (orchestrator/train/trainer.py's
# NonFiniteLossError, recorded by core/tracking.record_failure; sweep/tuning.py reads it the same way). Spelled
# here because the analysis may not import sweep/ (which imports it) nor train/ (torch) for a class name.
DIVERGED = "NonFiniteLossError"
# MLflow stores a logged +-inf as +-1.797e308 (the largest double): no score is anywhere near it.
FINITE_LIMIT = 1e300


def is_diverged(status: str, error: str | None) -> bool:
    """Whether a run of ``status`` whose ``error`` tag reads ``error`` failed because its loss diverged."""
    return status == "FAILED" and (error or "").startswith(f"{DIVERGED}:")


def finished(df: pd.DataFrame) -> pd.Series:
    """Per row of ``df``: True unless it is a trial that did not finish (a frame without ``status``, one made by
    hand, holds finished runs only)."""
    if "status" not in df.columns:
        return pd.Series(True, index=df.index)
    return ~df["status"].isin(UNFINISHED)


def unfinished(df: pd.DataFrame) -> pd.DataFrame:
    """The rows of ``df`` that are student trials without a FINISHED run (``load_runs``: one per trial)."""
    return df[(df["stage"] == "student") & ~finished(df)]


def unscored(df: pd.DataFrame) -> pd.DataFrame:
    """The FINISHED teacher_finetune and student runs of ``df`` without a finite score (``primary`` NaN: a NaN or
    infinite ``test_score``, or no headline recorded at all): in no table, so counted where the notebooks load."""
    scored = df["stage"].isin(["teacher_finetune", "student"]) & finished(df)
    return df[scored & df["primary"].isna()]


def study_progress(client: Any, experiment_id: str) -> dict[str, Any]:
    """The study run's status and its ``trials_planned`` / ``trials_finished`` (logged by sweep/trials.py when the
    trial stage ends; None when it never did: the study was stopped before); ``{}`` without a study run."""
    runs = client.search_runs([experiment_id], filter_string="tags.stage = 'study'", max_results=1)
    if not runs:
        return {}
    metrics = runs[0].data.metrics
    out: dict[str, Any] = {"status": runs[0].info.status}
    for name in ("trials_planned", "trials_finished"):
        out[name] = int(metrics[name]) if name in metrics else None
    return out


def _not_finished(df: pd.DataFrame) -> str:
    """The unfinished student trials of ``df`` by status, the diverged ones apart: ``6 diverged, 2 RUNNING``."""
    un = unfinished(df)
    if un.empty:
        return ""
    diverged = un["diverged"].eq(True)
    parts = [f"{int(diverged.sum())} diverged (non-finite loss)"] if diverged.any() else []
    parts += [f"{n} {s}" for s, n in un.loc[~diverged, "status"].value_counts().sort_index().items()]
    return ", ".join(parts)


def progress(df: pd.DataFrame) -> str:
    """One line: the trials the study planned and finished (its study run's counts) and the student trials without
    a finished run, by status (diverged apart)."""
    p = df.attrs.get("progress") or {}

    def count(name: str) -> str:
        return "unknown" if p.get(name) is None else str(p[name])

    run = f"study run {p['status']}" if p.get("status") else "no study run"
    line = f"trials: {count('trials_planned')} planned, {count('trials_finished')} finished ({run})"
    missing = _not_finished(df)
    if missing:
        n = len(unfinished(df))
        line = f"{line}; {n} student trials have no finished run: {missing} (in no mean or test)"
    else:
        line = f"{line}; every student trial has a finished run"
    return line + _mixed_data(df)


def _mixed_data(df: pd.DataFrame) -> str:
    """A warning when the finished student runs read more than one data folder (``data_key``): a study re-run on
    other data under its name keeps the old runs of the seeds the new design did not run, and a cell then pairs
    seeds of both."""
    if "data_key" not in df.columns:
        return ""
    runs = df[(df["stage"] == "student") & finished(df)]
    keys = sorted(set(runs["data_key"].astype(str)) - {"", "none", "nan"})
    if len(keys) < 2:
        return ""
    return (
        f"; WARNING: its student runs read {len(keys)} data folders ({', '.join(keys)}): a cell may pair seeds "
        "of both; give a study on other data a name of its own"
    )


def why_none(df: pd.DataFrame, why: str) -> str:
    """Why a notebook has no rows: ``why`` (what the study lacks), unless no student trial finished at all, which
    it then says; with the trials that did not finish named either way."""
    missing = _not_finished(df)
    if not missing:
        return why
    done = df[(df["stage"] == "student") & finished(df) & df["primary"].notna()]
    if done.empty:
        return f"no student trial of this study finished ({missing})"
    return f"{why} ({len(unfinished(df))} student trials did not finish: {missing})"
