"""Efficiency: what KD cost (training time, teacher passes, cache bytes) and the overhead benchmark's numbers."""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from orchestrator.analysis.load import per_labels_level, student_runs, teacher_scores
from orchestrator.analysis.stats import _sorted


@dataclass
class Efficiency:
    cost: (
        pd.DataFrame
    )  # KD train time over FT of the same (task, student, seed, labels level), with the cache
    passes: pd.DataFrame  # teacher passes made with the cache vs what online KD would have made
    throughput: pd.DataFrame  # student inference speed and size vs the teacher's
    online: pd.DataFrame | None  # the overhead benchmark per method, when a benchmark JSON is given
    bench: dict[str, Any] | None  # the benchmark's teacher_passes, cache_bytes, device
    recorded_teacher_passes: float  # the study run's teacher_passes metric (NaN without one)


@per_labels_level  # FT and the cache differ per labels level: KD is paired with its own level's FT and cache
def _cost(df: pd.DataFrame) -> pd.DataFrame:
    s = student_runs(df).dropna(subset=["train_seconds"])
    ft = (
        s[s["method"] == "ft"]
        .groupby(["task", "student", "seed"], as_index=False)["train_seconds"]
        .mean()
        .rename(columns={"train_seconds": "ft_train_s"})
    )
    kd = s[s["method"] != "ft"].merge(ft, on=["task", "student", "seed"], how="inner")
    kd["ratio"] = kd["train_seconds"] / kd["ft_train_s"]
    # the cache build is paid once per (teacher, task) and shared by every KD trial on it
    caches = df[df["stage"] == "teacher_cache"].groupby(["teacher", "task"])["build_seconds"].sum()
    trials = s[s["method"] != "ft"].groupby(["teacher", "task"]).size()
    per_trial = (caches / trials).rename("cache_build_s_per_trial").reset_index()
    out = kd.groupby(["task", "student", "teacher", "method"], as_index=False).agg(
        n=("ratio", "size"),
        kd_train_s=("train_seconds", "mean"),
        ft_train_s=("ft_train_s", "mean"),
        teacher_s=("teacher_seconds", "mean"),
        cached_over_ft=("ratio", "mean"),
    )
    out = out.merge(per_trial, on=["teacher", "task"], how="left")
    return _sorted(out, ["task", "student", "teacher", "method"])


def _passes(df: pd.DataFrame) -> pd.DataFrame:
    s = student_runs(df)
    kd = s[s["method"] != "ft"].copy()
    kd["online_passes"] = kd["epochs"]  # one teacher forward over the train set per epoch of a trial
    # one teacher forward per training step: the trial's logged step count, else epochs x batches per epoch
    kd["online_steps"] = kd["steps"].fillna(kd["epochs"] * np.ceil(kd["train_samples"] / kd["batch_size"]))
    cache_runs = df[df["stage"] == "teacher_cache"]
    # a cache run that found its cache already built logs teacher_passes 0; runs without the metric made one
    made = cache_runs["teacher_passes"].fillna(1.0)
    caches = pd.DataFrame(
        {
            "n_cache_runs": cache_runs.groupby(["task", "teacher"]).size(),
            "cached_passes": made.groupby([cache_runs["task"], cache_runs["teacher"]]).sum(),
        }
    )
    g = kd.groupby(["task", "teacher"])
    out = pd.DataFrame(
        {
            "n_kd_trials": g.size(),
            # min_count=1: a study that never logged epochs gives NaN, not a misleading 0
            "online_passes": g["online_passes"].sum(min_count=1),
            "online_steps": g["online_steps"].sum(min_count=1),
        }
    )
    counts = ["n_kd_trials", "n_cache_runs", "cached_passes"]
    out = out.join(caches, how="outer").fillna(dict.fromkeys(counts, 0)).reset_index()
    out[counts] = out[counts].astype(int)
    out["passes_saved"] = out["online_passes"] - out["cached_passes"]
    out["note"] = np.where(
        out["online_passes"].isna(),
        "epochs not logged",
        np.where(out["online_steps"].isna(), "steps/train_samples not logged: passes only", ""),
    )
    out = out[["task", "teacher", *counts, "online_passes", "online_steps", "passes_saved", "note"]]
    if len(out):
        total: dict[str, Any] = {"task": "all", "teacher": "all", **{c: int(out[c].sum()) for c in counts}}
        total["online_passes"] = out["online_passes"].sum(min_count=1)
        total["online_steps"] = out["online_steps"].sum(min_count=1)
        total["passes_saved"] = total["online_passes"] - total["cached_passes"]
        total["note"] = ""
        out = pd.concat([_sorted(out, ["task", "teacher"]), pd.DataFrame([total])], ignore_index=True)
    return out


def _throughput(df: pd.DataFrame) -> pd.DataFrame:
    s = student_runs(df)
    st = s.groupby(["task", "student", "student_arch"], as_index=False).agg(
        student_params=("student_params", "first"),
        student_samples_per_s=("inference_samples_per_s", "mean"),
    )
    # a model's inference speed and size do not depend on its labels level: one row per student and teacher, the
    # teacher's speed averaged over its fine-tunes at every level (teacher_scores has a row per level)
    t = (
        teacher_scores(df)
        .groupby(["task", "teacher"], as_index=False)
        .agg(
            teacher_params=("teacher_params", "mean"),
            teacher_samples_per_s=("inference_samples_per_s", "mean"),
        )
    )
    out = st.merge(t, on="task", how="left")
    out["speedup"] = out["student_samples_per_s"] / out["teacher_samples_per_s"]
    out["param_ratio"] = out["student_params"].astype(float) / out["teacher_params"]
    return _sorted(out, ["task", "student_arch", "student_params", "teacher"])


def efficiency(df: pd.DataFrame, bench_json: Path | None = None) -> Efficiency:
    """Efficiency (docs/STUDY.md, "Discussion"). ``cost``: train_seconds of each KD method over FT of the same
    (task, student, seed) and labels level as run here, i.e. with the teacher cache (per level, with a ``labels``
    column, when the study has several); ``online``: the overhead benchmark's
    per-method figures (JSON schema {"methods": {m: {ft_s, cached_s, online_s, teacher_s_cached,
    cached_over_ft, online_over_ft}}, "teacher_passes", "cache_bytes", "device"}); ``passes``: teacher_cache
    runs (the passes they made: metric teacher_passes, 0 when the cache already existed) vs the teacher passes
    (epochs per KD trial) and forward steps (the trial's ``steps`` metric, else epochs x ceil(train_samples /
    batch_size)) online KD would have made; ``throughput``: student vs teacher inference speed and size (over
    every labels level: one row per student and teacher)."""
    online, bench = None, None
    if bench_json is not None:
        data = json.loads(Path(bench_json).read_text())
        fields = ["ft_s", "cached_s", "online_s", "teacher_s_cached", "cached_over_ft", "online_over_ft"]
        online = pd.DataFrame.from_dict(data["methods"], orient="index").reindex(columns=fields)
        online = online.rename_axis("method").reset_index()
        bench = {k: data.get(k) for k in ("teacher_passes", "cache_bytes", "device")}
    parent = df.loc[df["stage"] == "study", "teacher_passes"].dropna()
    return Efficiency(
        cost=_cost(df),
        passes=_passes(df),
        throughput=_throughput(df),
        online=online,
        bench=bench,
        recorded_teacher_passes=float(parent.sum()) if len(parent) else math.nan,
    )
