"""The analysis tables of a study with several labels levels pair and rank within a level, and compare_families'
effect size is paired (audit 2026-12-07, findings 1, 2, 5, 6). Synthetic frames in ``load_runs``' shape."""

from __future__ import annotations

import sys
from typing import Any

import numpy as np
import pandas as pd
import pytest

from orchestrator import analysis as A
from orchestrator.analysis.load import COLUMNS, TAG_COLUMNS, mark_degenerate
from orchestrator.analysis.methods import rank_methods_per_level

AG = sys.modules["orchestrator.analysis.agreement"]  # A.agreement is the function
FAMILY = {"ft": "none", "kd": "logit", "dist": "logit", "pkd": "feature", "ckd": "feature"}
TEXT = (*TAG_COLUMNS, "labels")  # the text columns of a load_runs frame
N_RUN = iter(range(10**6))


def _run(stage: str, task: str, teacher: str, primary: float, labels: str = "all", **extra: Any) -> dict:
    n = next(N_RUN)
    row = dict(
        run_id=f"r{n}",
        start_time=pd.Timestamp("2026-01-01") + pd.Timedelta(seconds=n),
        stage=stage,
        task=task,
        teacher=teacher,
        student="none",
        student_arch="none",
        method="none",
        method_family="none",
        trial_key=f"k{n}",
        labels=labels,
        labelled_samples=1000.0 if labels == "all" else 20.0,
        test_score=primary,
        test_majority_baseline=0.5,
        metric="accuracy",
        primary=primary,
    )
    return {**row, **extra}


def student(task: str, name: str, method: str, seed: int, primary: float, teacher: str = "none", **kw: Any):
    teacher = "none" if method == "ft" else teacher
    extra = dict(student=name, student_arch=name.split("-")[0], method=method, method_family=FAMILY[method])
    return _run("student", task, teacher, primary, seed=seed, student_params=7_000_000, **extra, **kw)


def teacher(task: str, name: str, primary: float, **kw: Any) -> dict:
    kw = {"teacher_params": 126e6, "inference_samples_per_s": 100.0, **kw}
    return _run("teacher_finetune", task, name, primary, **kw)


def frame(rows: list[dict]) -> pd.DataFrame:
    df = pd.DataFrame(rows).reindex(columns=list(COLUMNS))
    for c in ("student_params", "seed"):
        df[c] = pd.to_numeric(df[c], errors="coerce").astype("Int64")
    for c in df.columns:
        if c in TEXT or c == "metric":
            df[c] = df[c].astype(str)
        elif c not in ("run_id", "start_time", "student_params", "seed", "degenerate"):
            df[c] = pd.to_numeric(df[c], errors="coerce").astype(float)
    return mark_degenerate(df).reset_index(drop=True)


# level count=20: kd > dist > ft; level all: ft > dist > kd
LEVEL_SCORES = {
    "count=20": {"ft": 0.55, "kd": 0.70, "dist": 0.60},
    "all": {"ft": 0.80, "kd": 0.66, "dist": 0.74},
}


def _two_level_grid() -> pd.DataFrame:
    rows = []
    for lv, sc in LEVEL_SCORES.items():
        for task in ("defect", "clone", "exception"):
            for t in ("unixcoder", "modernbert"):
                rows.append(teacher(task, t, 0.9, labels=lv))
            for st in ("roberta-7m", "bigru-7m"):
                for seed in range(3):
                    rows.append(student(task, st, "ft", seed, sc["ft"] + 0.001 * seed, labels=lv))
                    for t in ("unixcoder", "modernbert"):
                        for m in ("kd", "dist"):
                            rows.append(student(task, st, m, seed, sc[m] + 0.001 * seed, t, labels=lv))
    return frame(rows)


def test_rank_methods_ranks_each_labels_level_alone() -> None:
    df = _two_level_grid()
    with pytest.raises(ValueError, match="labels levels"):
        A.rank_methods(df)  # never one level's FT ranked against another level's KD
    rankings = rank_methods_per_level(df)
    assert list(rankings) == ["count=20", "all"]
    low, full = rankings["count=20"], rankings["all"]
    assert low.labels == "count=20" and full.labels == "all"
    assert low.ranks.to_dict() == {"kd": 1.0, "dist": 2.0, "ft": 3.0}
    assert full.ranks.to_dict() == {"ft": 1.0, "dist": 2.0, "kd": 3.0}
    assert low.n_blocks == full.n_blocks == 3 * 2  # task x student (KD averaged over teachers), of one level
    assert "labels" in low.block_scores.index.names
    assert set(low.block_scores["ft"].round(3)) == {0.551}  # its own level's FT, not a mean over levels
    assert low.nemenyi is not None and full.nemenyi is not None
    # one level: the same as rank_methods
    one = df[df["labels"] == "all"]
    assert rank_methods_per_level(one)["all"].ranks.equals(A.rank_methods(one).ranks)


def test_agreement_uses_the_teacher_and_ft_of_the_runs_own_level() -> None:
    y = np.array([0, 1] * 50)
    rows, preds = [], {}
    for lv, tscore in (("count=20", 0.55), ("all", 0.90)):
        rows.append(teacher("defect", "unixcoder", tscore, labels=lv))
        cache = _run("teacher_cache", "defect", "unixcoder", tscore, labels=lv)
        rows.append(cache)
        tp = np.zeros(100, int) if lv == "count=20" else y.copy()
        preds[cache["run_id"]] = tp
        for m in ("ft", "kd"):
            r = student("defect", "roberta-7m", m, 0, 0.6, "unixcoder", labels=lv)
            r["run_id"] = f"{m}-{lv}"
            rows.append(r)
            preds[r["run_id"]] = tp.copy() if m == "kd" else 1 - tp  # KD copies its level's teacher
    df = frame(rows)
    index = pd.Index(range(100), name="idx")

    def fake(client: Any, run_id: str) -> pd.DataFrame:
        return pd.DataFrame({"label": y, "pred": preds[run_id]}, index=index)

    old = AG.load_predictions
    AG.load_predictions = fake
    try:
        out = AG.agreement(df, client=None)
    finally:
        AG.load_predictions = old
    assert len(out) == 4 and set(out["labels"]) == {"count=20", "all"}
    kd = out.set_index("run_id").loc["kd-count=20"]
    assert kd["agreement"] == 1.0 and kd["teacher_score"] == 0.55
    assert kd["n_ft_disagreed"] == 100  # its own level's FT disagreed with its own level's teacher everywhere
    assert not out["teacher_degenerate"].any()
    summary = A.agreement_summary(out)
    assert len(summary) == 4 and "labels" in summary.columns
    assert (summary.loc[summary["method"] == "kd", "agreement_minus_ft"] == 1.0).all()


def test_agreement_teacher_degenerate_is_per_level() -> None:
    rows = []
    for lv, tscore in (("count=20", 0.50), ("all", 0.90)):  # the count=20 teacher is at its baseline
        rows.append(teacher("defect", "unixcoder", tscore, labels=lv))
        rows.append(_run("teacher_cache", "defect", "unixcoder", tscore, labels=lv))
        rows.append(student("defect", "roberta-7m", "kd", 0, 0.6, "unixcoder", labels=lv))
    df = frame(rows)
    old = AG.load_predictions
    AG.load_predictions = lambda client, run_id: None
    try:
        out = AG.agreement(df, client=None).set_index("labels")
    finally:
        AG.load_predictions = old
    assert bool(out.loc["count=20", "teacher_degenerate"]) and not bool(out.loc["all", "teacher_degenerate"])


def _families_frame() -> tuple[pd.DataFrame, pd.DataFrame]:
    """Three tasks at different levels and students of different sizes; feature beats logit in every block."""
    rng = np.random.default_rng(5)
    rows = []
    for task, base in {"defect": 0.60, "clone": 0.92, "exception": 0.70}.items():
        rows.append(teacher(task, "unixcoder", base + 0.05))
        for st, size_gap in (("roberta-30m", 0.04), ("roberta-7m", 0.0), ("roberta-1.5m", -0.04)):
            for seed in range(4):
                lvl = base + size_gap + 0.001 * seed
                for m, g in (("kd", 0.0), ("dist", 0.002), ("pkd", 0.01), ("ckd", 0.012)):
                    rows.append(student(task, st, m, seed, lvl + g + rng.normal(0, 0.001), "unixcoder"))
    df = frame(rows)
    s = df[df["method_family"].isin(["logit", "feature"])]
    blocks = s.groupby(["task", "student", "teacher", "seed", "method_family"])["primary"].mean().unstack()
    return df, blocks


def test_compare_families_effect_size_is_paired() -> None:
    df, blocks = _families_frame()
    assert (blocks["feature"] > blocks["logit"]).all()
    out = A.compare_families(df).set_index("task")
    # Cliff's delta (unpaired) mixes the spread between students; dominance, paired, sees every block favour
    # feature, per task and pooled; the pooled row has no Cliff's delta (its tasks' metrics differ)
    assert (out["dominance"] == 1.0).all()
    assert (out.loc[["defect", "clone", "exception"], "cliffs_delta"] < 1.0).any()
    assert np.isnan(out.loc["all", "cliffs_delta"])
    for task in ("defect", "clone", "exception"):
        b = blocks.xs(task, level="task")
        assert out.loc[task, "feature_mean"] == pytest.approx(b["feature"].mean())
    pooled = out.loc["all"]
    assert pooled["n_pairs"] == len(blocks) and pooled["p_wilcoxon"] < 0.05
    # accuracy and F1 are not averaged together
    assert np.isnan(pooled["feature_mean"]) and np.isnan(pooled["logit_mean"]) and np.isnan(pooled["delta"])
    assert "metrics differ" in pooled["note"]


def test_paired_dominance_signs_and_few_pairs() -> None:
    a = pd.Series([1.0, 2.0, 3.0, 4.0])
    b = pd.Series([0.0, 2.0, 4.0, 3.0])
    assert A.methods.paired_dominance(a, b) == pytest.approx((2 - 1) / 4)
    df, _ = _families_frame()
    few = df[(df["task"] == "defect") & (df["student"] == "roberta-7m") & (df["seed"] < 3)]
    row = A.compare_families(few).iloc[0]
    assert row["n_pairs"] == 3 and np.isnan(row["dominance"]) and "dominance not testable" in row["note"]


def test_efficiency_pairs_kd_with_ft_of_its_level() -> None:
    rows = []
    for lv, ft_s, kd_s in (("count=20", 2.0, 30.0), ("all", 100.0, 150.0)):
        rows.append(teacher("defect", "unixcoder", 0.7, labels=lv))
        for seed in range(2):
            speed = dict(inference_samples_per_s=800.0)
            rows.append(
                student("defect", "roberta-7m", "ft", seed, 0.6, labels=lv, train_seconds=ft_s, **speed)
            )
            kd = student("defect", "roberta-7m", "kd", seed, 0.62, "unixcoder", labels=lv, train_seconds=kd_s)
            rows.append({**kd, **speed})
    eff = A.efficiency(frame(rows))
    cost = eff.cost.set_index("labels")
    assert len(cost) == 2
    assert cost.loc["count=20", "cached_over_ft"] == pytest.approx(15.0)
    assert cost.loc["all", "cached_over_ft"] == pytest.approx(1.5)
    assert len(eff.throughput) == 1  # one student, one teacher: not one row per level
    assert eff.throughput["speedup"].iloc[0] == pytest.approx(8.0)
