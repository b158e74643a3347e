"""orchestrator/analysis/stats.py and the tables' counting rules on hand-made frames: tied paired differences,
the paired delta, the Cliff's delta threshold, rerun trials (load_runs keeps the newest), seeds counted once and
notebook 01's degenerate count."""

from __future__ import annotations

import math
import uuid
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from scipy.stats import mannwhitneyu, wilcoxon

from orchestrator import analysis as A
from orchestrator.analysis import stats as S
from orchestrator.analysis.load import COLUMNS, TAG_COLUMNS, mark_degenerate

FAMILY = {"ft": "none", "kd": "logit", "pkd": "feature"}
STRINGS = (*TAG_COLUMNS, "labels")  # the text columns of a load_runs frame


def _student(method: str, seed: int, primary: float, teacher: str = "unixcoder", **extra: object) -> dict:
    teacher = "none" if method == "ft" else teacher
    return {
        "run_id": uuid.uuid4().hex,
        "start_time": pd.Timestamp("2026-01-01"),
        "stage": "student",
        "task": "defect",
        "teacher": teacher,
        "student": "roberta-7m",
        "student_arch": "roberta",
        "method": method,
        "method_family": FAMILY[method],
        "trial_key": f"{teacher}-{method}-{seed}",
        "labels": "all",
        "student_params": 7_000_000,
        "seed": seed,
        "test_score": primary,
        "test_majority_baseline": 0.5,
        "metric": "accuracy",
        "primary": primary,
        **extra,
    }


def _teacher(name: str = "unixcoder", primary: float = 0.7) -> dict:
    return {
        **_student("ft", 0, primary),
        "stage": "teacher_finetune",
        "teacher": name,
        "student": "none",
        "student_arch": "none",
        "method": "none",
        "method_family": "none",
        "student_params": pd.NA,
        "teacher_params": 126e6,
    }


def _frame(rows: list[dict]) -> pd.DataFrame:
    df = pd.DataFrame(rows)
    for c in COLUMNS:
        if c not in df:
            df[c] = np.nan
    df = df[list(COLUMNS)]
    for c in ("student_params", "seed"):
        df[c] = pd.to_numeric(df[c], errors="coerce").astype("Int64")
    for c in (*STRINGS, "metric"):
        df[c] = df[c].astype(str)
    for c in set(df.columns) - {
        *STRINGS,
        "metric",
        "run_id",
        "start_time",
        "student_params",
        "seed",
        "degenerate",
    }:
        df[c] = pd.to_numeric(df[c], errors="coerce").astype(float)
    return mark_degenerate(df).reset_index(drop=True)


# --- finding 3: equal differences of k/N scores are ties ------------------------------------------------------


def test_wilcoxon_treats_equal_score_differences_as_ties():
    n = 100  # test samples: every score is k / n
    ft_k = np.array([55, 52, 60, 48, 61, 50, 58, 57])
    d_k = np.array([1, 3, 2, -1, 3, 2, 3, -1])  # the exact differences, in samples
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        expected = wilcoxon(d_k).pvalue  # on the exact rationals (x n): ties are ties
    got = A.paired_comparison(pd.Series((ft_k + d_k) / n), pd.Series(ft_k / n))
    assert got["p_wilcoxon"] == pytest.approx(expected, abs=1e-12)
    assert expected > 0.05  # float noise had made this one "significant" (p = 0.047)
    assert got["n_pairs"] == 8 and got["delta"] == pytest.approx(d_k.mean() / n)


def test_zero_differences_are_decided_after_rounding():
    # 0.3 - 0.1 - 0.2 is not 0 in floating point: a score equal on both sides must not count as a nonzero pair
    a = pd.Series([0.1 + 0.2] * 3 + [0.7, 0.71, 0.72, 0.73, 0.74])
    b = pd.Series([0.3] * 3 + [0.6, 0.61, 0.62, 0.63, 0.64])
    got = A.paired_comparison(a, b)
    assert math.isnan(got["p_wilcoxon"]) and "5 nonzero of 8 pairs" in got["test"]


# --- finding 7: delta is paired ---------------------------------------------------------------------------------


def test_delta_is_the_mean_paired_difference():
    rows = [_teacher()]
    for seed in range(10):
        rows.append(_student("ft", seed, 0.60 + 0.001 * seed if seed < 7 else 0.75))
        if seed < 7:
            rows.append(_student("kd", seed, 0.62 + 0.0011 * seed))
    r = A.compare_to_ft(_frame(rows)).iloc[0]
    # KD wins every paired seed; FT's 3 extra seeds at 0.75 do not flip the sign
    assert r.kd_n == 7 and r.ft_n == 10 and r.n_pairs == 7
    assert r.delta == pytest.approx(np.mean([0.02 + 0.0001 * s for s in range(7)]))
    assert r.kd_mean < r.ft_mean  # the unpaired means still say what they say


def test_delta_without_pairs_is_nan():
    got = A.paired_comparison(pd.Series([0.6, 0.7], index=[0, 1]), pd.Series([0.5], index=[5]))
    assert math.isnan(got["delta"]) and got["n_pairs"] == 0


# --- finding 10: Cliff's delta threshold for unequal sides ------------------------------------------------------


@pytest.mark.parametrize(
    "n_a,n_b", [(1, 1), (2, 2), (3, 3), (3, 4), (3, 5), (2, 8), (3, 10), (4, 4), (1, 20)]
)
def test_effect_testable_matches_the_exact_mann_whitney_minimum(n_a, n_b):
    a = [0.70 + 0.01 * i for i in range(n_a)]
    b = [0.50 + 0.01 * i for i in range(n_b)]
    least_p = mannwhitneyu(a, b, alternative="two-sided", method="exact").pvalue  # complete separation
    assert S.effect_testable(n_a, n_b) == (least_p < 0.05)
    got = A.paired_comparison(pd.Series(a), pd.Series(b, index=range(100, 100 + n_b)))["cliffs_delta"]
    assert (not math.isnan(got)) == (least_p < 0.05)


def test_three_vs_five_has_an_effect_size():
    got = A.paired_comparison(pd.Series([0.7, 0.71, 0.72]), pd.Series([0.5, 0.51, 0.52, 0.53, 0.54]))
    assert got["cliffs_delta"] == 1.0 and got["note"] == ""


# --- finding 9: notebook 01 counts degenerate runs once --------------------------------------------------------


def test_effectiveness_summary_counts_each_degenerate_run_once():
    rows = [_teacher("unixcoder"), _teacher("modernbert")]
    for seed in range(3):
        rows.append(_student("ft", seed, 0.50 if seed == 0 else 0.6))  # seed 0 degenerate
        for t in ("unixcoder", "modernbert"):
            rows.append(_student("kd", seed, 0.62, teacher=t))
            rows.append(_student("pkd", seed, 0.50 if (seed, t) == (1, "modernbert") else 0.62, teacher=t))
    df = _frame(rows)
    summary = A.tables.effectiveness_summary(df)
    deg = summary["degenerate_runs"].droplevel("task")
    assert deg.to_dict() == {"ft": 1, "kd": 0, "pkd": 1}
    assert summary["degenerate_runs"].sum() == int(df["degenerate"].sum()) == 2
    assert summary.loc[("defect", "kd"), "configs"] == 2 and summary.loc[("defect", "ft"), "configs"] == 0


# --- finding 8: means and n over seeds -------------------------------------------------------------------------


def test_tables_average_a_rerun_seed_before_counting():
    rows = [_teacher()]
    for seed, score in enumerate((0.60, 0.62, 0.64)):
        rows.append(_student("ft", seed, 0.58))
        rows.append(_student("kd", seed, score))
    rows.append(_student("kd", 0, 0.68))  # two runs of seed 0 in a frame not made by load_runs
    df = _frame(rows)
    per_seed = (0.64 + 0.62 + 0.64) / 3
    assert A.compare_to_ft(df).iloc[0].kd_mean == pytest.approx(per_seed)
    assert A.teachers_side_by_side(df).iloc[0]["unixcoder"] == pytest.approx(per_seed)
    sv = A.score_vs_params(df).set_index("method").loc["kd"]
    assert sv["mean"] == pytest.approx(per_seed) and sv["n"] == 3 and sv["n_degenerate"] == 0
    bp = A.beside_paper(df)
    bp = bp[(bp.task == "defect") & (bp.arch == "roberta") & (bp.method == "kd") & (bp["size"] == "7M")].iloc[
        0
    ]
    assert bp["ours"] == pytest.approx(100 * per_seed) and bp["n"] == 3


# --- finding 4: load_runs keeps the newest run of a rerun trial -------------------------------------------------


def _log(client, exp: str, tags: dict, score: float, start: int) -> str:
    run = client.create_run(exp, start_time=start, tags=tags)
    client.log_metric(run.info.run_id, "test_score", score)
    client.log_metric(run.info.run_id, "test_majority_baseline", 0.5)
    client.set_terminated(run.info.run_id, "FINISHED")
    return run.info.run_id


def test_load_runs_keeps_the_newest_run_of_a_rerun_trial(tmp_path: Path, monkeypatch):
    monkeypatch.setenv("MLFLOW_DISABLE_TELEMETRY", "true")
    from mlflow import MlflowClient

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    client = MlflowClient(uri)
    exp = client.create_experiment("rerun", artifact_location=(tmp_path / "a").as_uri())
    base = {"task": "defect", "student": "roberta-7m", "student_arch": "roberta", "labels": "all"}
    ft = {**base, "stage": "student", "teacher": "none", "method": "ft", "method_family": "none"}
    kd = {**base, "stage": "student", "teacher": "unixcoder", "method": "kd", "method_family": "logit"}
    t0 = 1_700_000_000_000
    _log(client, exp, {**kd, "seed": "0", "trial_key": "old", "data_key": "old"}, 0.40, t0)  # stale
    newest = _log(client, exp, {**kd, "seed": "0", "trial_key": "new"}, 0.60, t0 + 1000)
    _log(client, exp, {**kd, "seed": "1", "trial_key": "new1"}, 0.62, t0 + 500)
    _log(client, exp, {**kd, "seed": "0", "trial_key": "other-level", "labels": "count=20"}, 0.55, t0 - 10)
    _log(client, exp, {**ft, "seed": "0", "trial_key": "ft0"}, 0.58, t0)
    teacher = {
        **dict.fromkeys(("student", "student_arch", "method", "method_family"), "none"),
        "task": "defect",
    }
    _log(
        client,
        exp,
        {**teacher, "stage": "teacher_finetune", "teacher": "unixcoder", "trial_key": "t"},
        0.6,
        t0,
    )
    _log(
        client,
        exp,
        {**teacher, "stage": "teacher_finetune", "teacher": "unixcoder", "trial_key": "t"},
        0.8,
        t0 + 9,
    )
    for i, score in enumerate((0.61, 0.63, 0.65)):  # tuning: many configurations of one seed, all kept
        _log(client, exp, {**kd, "stage": "tune", "seed": "0", "trial_key": f"tune{i}"}, score, t0 + i)
    for i in range(2):  # teacher caches: one run per cache, all kept
        _log(
            client,
            exp,
            {**teacher, "stage": "teacher_cache", "teacher": "unixcoder", "trial_key": f"c{i}"},
            1,
            t0,
        )

    df = A.load_runs("rerun", uri)
    assert A.load.superseded(df) == 2  # the stale KD seed 0 and the first teacher fine-tune
    kd_runs = df[(df["stage"] == "student") & (df["method"] == "kd")]
    assert len(kd_runs) == 3
    seed0 = kd_runs[(kd_runs["seed"] == 0) & (kd_runs["labels"] == "all")]
    assert seed0["run_id"].tolist() == [newest] and seed0["primary"].iloc[0] == 0.60
    assert (df["stage"] == "tune").sum() == 3 and (df["stage"] == "teacher_cache").sum() == 2
    assert A.teacher_scores(df)["primary"].iloc[0] == 0.8
    rq1 = A.compare_to_ft(df)
    row = rq1[rq1["labels"] == "all"].iloc[0] if "labels" in rq1 else rq1.iloc[0]
    assert row.kd_mean == pytest.approx((0.60 + 0.62) / 2) and row.kd_n == 2
