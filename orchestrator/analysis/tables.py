"""One table per research question: RQ1 ``compare_to_ft``, RQ2 ``compare_teachers``, RQ3 ``retention`` /
``family_summary`` / ``compare_families`` / ``rank_methods``, RQ4 ``compare_architectures`` / ``score_vs_params``."""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from itertools import combinations

import pandas as pd

from orchestrator.analysis.load import TASK_ORDER, student_runs, teacher_scores
from orchestrator.analysis.stats import (
    _STAT_COLUMNS,
    _by_seed,
    _method_key,
    _renamed,
    _sorted,
    _with_holm,
    paired_comparison,
)


def compare_to_ft(df: pd.DataFrame) -> pd.DataFrame:
    """RQ1: each KD configuration (task, student, teacher, method != ft) against FT of the same student.

    FT does not depend on the teacher, so the same FT runs are the baseline for every teacher. Columns: the
    factors, kd_mean/kd_std/kd_n and ft_mean/ft_std/ft_n over seeds, delta = kd_mean - ft_mean, n_pairs and
    p_wilcoxon (paired by seed), cliffs_delta (KD vs FT), note, p_holm (across the table).
    """
    s = student_runs(df)
    ft = s[s["method"] == "ft"]
    kd = s[s["method"] != "ft"]
    keys = ["task", "student", "teacher", "method"]
    rows = []
    for (task, student, teacher, method), g in kd.groupby(keys, sort=False):
        base = ft[(ft["task"] == task) & (ft["student"] == student)]
        stats = _renamed(paired_comparison(_by_seed(g), _by_seed(base)), "kd", "ft")
        if base.empty:
            stats["note"] = "no FT runs of this student"
        rows.append(
            {
                "task": task,
                "student": student,
                "student_arch": g["student_arch"].iloc[0],
                "student_params": g["student_params"].iloc[0],
                "teacher": teacher,
                "method": method,
                "method_family": g["method_family"].iloc[0],
                **stats,
            }
        )
    columns = [
        "task",
        "student",
        "student_arch",
        "student_params",
        "teacher",
        "method",
        "method_family",
        "kd_mean",
        "kd_std",
        "kd_n",
        "ft_mean",
        "ft_std",
        "ft_n",
        *_STAT_COLUMNS,
    ]
    return _sorted(_with_holm(rows, columns), ["task", "student_arch", "student_params", "teacher", "method"])


def teachers_side_by_side(df: pd.DataFrame) -> pd.DataFrame:
    """RQ2 overview: mean primary over seeds of each KD configuration, one column per teacher, with each
    teacher's own score on the task in ``score_<teacher>`` and FT of the same student in ``ft``."""
    s = student_runs(df)
    kd = s[s["method"] != "ft"]
    if kd.empty:
        return pd.DataFrame(columns=["task", "student", "student_arch", "method", "ft"])
    wide = kd.pivot_table(
        index=["task", "student", "student_arch", "method"],
        columns="teacher",
        values="primary",
        aggfunc="mean",
    )
    wide.columns = [str(c) for c in wide.columns]
    wide = wide.reset_index()
    ft = s[s["method"] == "ft"].groupby(["task", "student"], as_index=False)["primary"].mean()
    wide = wide.merge(ft.rename(columns={"primary": "ft"}), on=["task", "student"], how="left")
    for _, t in teacher_scores(df).iterrows():
        wide.loc[wide["task"] == t["task"], f"score_{t['teacher']}"] = t["primary"]
    return _sorted(wide, ["task", "student_arch", "student", "method"])


def compare_teachers(df: pd.DataFrame) -> pd.DataFrame:
    """RQ2: for each (task, student, method != ft) and each pair of teachers, the seed-paired comparison.

    Columns: the factors, teacher_a/teacher_b (alphabetical), a_mean/a_std/a_n, b_mean/b_std/b_n, delta =
    a_mean - b_mean, n_pairs, p_wilcoxon, cliffs_delta, note, the teachers' own scores teacher_a_score /
    teacher_b_score, p_holm. Empty when the study has a single teacher.
    """
    s = student_runs(df)
    kd = s[s["method"] != "ft"]
    scores = {(r.teacher, r.task): r.primary for r in teacher_scores(df).itertuples()}
    rows = []
    for (task, student, method), g in kd.groupby(["task", "student", "method"], sort=False):
        for ta, tb in combinations(sorted(g["teacher"].unique()), 2):
            stats = paired_comparison(_by_seed(g[g["teacher"] == ta]), _by_seed(g[g["teacher"] == tb]))
            rows.append(
                {
                    "task": task,
                    "student": student,
                    "student_arch": g["student_arch"].iloc[0],
                    "student_params": g["student_params"].iloc[0],
                    "method": method,
                    "method_family": g["method_family"].iloc[0],
                    "teacher_a": ta,
                    "teacher_b": tb,
                    **stats,
                    "teacher_a_score": scores.get((ta, task), math.nan),
                    "teacher_b_score": scores.get((tb, task), math.nan),
                }
            )
    columns = [
        "task",
        "student",
        "student_arch",
        "student_params",
        "method",
        "method_family",
        "teacher_a",
        "teacher_b",
        "a_mean",
        "a_std",
        "a_n",
        "b_mean",
        "b_std",
        "b_n",
        *_STAT_COLUMNS,
        "teacher_a_score",
        "teacher_b_score",
    ]
    return _sorted(_with_holm(rows, columns), ["task", "student_arch", "student_params", "method"])


def retention(df: pd.DataFrame) -> pd.DataFrame:
    """RQ3: one row per student run and teacher: retention = student primary / teacher primary, and
    param_ratio = student_params / teacher_params. FT runs appear once per teacher of their task (FT does not
    depend on the teacher; the row says how much of that teacher's score plain fine-tuning reaches)."""
    # students carry an empty teacher_params column (a teacher metric): the teacher's comes from the merge
    s = student_runs(df).drop(columns="teacher_params")
    t = teacher_scores(df).rename(columns={"primary": "teacher_primary"})
    t = t[["teacher", "task", "teacher_primary", "teacher_params"]]
    kd = s[s["method"] != "ft"].merge(t, on=["teacher", "task"], how="inner")
    ft = s[s["method"] == "ft"].drop(columns="teacher").merge(t, on="task", how="inner")
    out = pd.concat([kd, ft[kd.columns]], ignore_index=True)
    out["retention"] = out["primary"] / out["teacher_primary"]
    out["param_ratio"] = out["student_params"].astype(float) / out["teacher_params"]
    columns = [
        "run_id",
        "task",
        "teacher",
        "student",
        "student_arch",
        "student_params",
        "method",
        "method_family",
        "seed",
        "primary",
        "teacher_primary",
        "teacher_params",
        "retention",
        "param_ratio",
    ]
    return _sorted(out[columns], ["task", "teacher", "student_arch", "student_params", "method", "seed"])


def family_summary(df: pd.DataFrame) -> pd.DataFrame:
    """RQ3: logit vs feature (and FT as ``none``) per (task, teacher): mean retention over runs, the best
    configuration's mean retention over seeds, which (student, method) it is and its parameter ratio."""
    r = retention(df)
    columns = [
        "task",
        "teacher",
        "method_family",
        "n_runs",
        "retention_mean",
        "retention_best",
        "best_student",
        "best_method",
        "best_param_ratio",
    ]
    rows = []
    for (task, teacher, family), g in r.groupby(["task", "teacher", "method_family"], sort=False):
        config = g.groupby(["student", "method"], as_index=False).agg(
            retention=("retention", "mean"), param_ratio=("param_ratio", "mean")
        )
        best = config.loc[config["retention"].idxmax()]
        rows.append(
            {
                "task": task,
                "teacher": teacher,
                "method_family": family,
                "n_runs": len(g),
                "retention_mean": g["retention"].mean(),
                "retention_best": best["retention"],
                "best_student": best["student"],
                "best_method": best["method"],
                "best_param_ratio": best["param_ratio"],
            }
        )
    out = pd.DataFrame(rows, columns=columns)
    fam_order = {"none": 0, "logit": 1, "feature": 2}
    out["_f"] = out["method_family"].map(lambda f: fam_order.get(f, 3))
    return _sorted(out, ["task", "teacher", "_f"]).drop(columns="_f")


def compare_families(df: pd.DataFrame) -> pd.DataFrame:
    """RQ3: logit-based vs feature-based KD, paired on (student, teacher, seed): per block the mean primary of
    the logit methods against that of the feature methods. One row per task and one for all tasks (there the
    pairs are per task as well); columns logit_*/feature_*, delta = feature - logit, test columns, p_holm."""
    s = student_runs(df)
    s = s[s["method_family"].isin(["logit", "feature"])].dropna(subset=["seed"])
    blocks = s.groupby(["task", "student", "teacher", "seed", "method_family"])["primary"].mean().unstack()
    rows = []
    if {"logit", "feature"} <= set(blocks.columns):
        tasks = sorted(blocks.index.unique("task"), key=lambda t: ((TASK_ORDER + (t,)).index(t), t))
        groups = [(task, blocks.xs(task, level="task")) for task in tasks]
        groups.append(("all", blocks))
        for task, b in groups:
            stats = _renamed(paired_comparison(b["feature"], b["logit"]), "feature", "logit")
            rows.append({"task": task, **stats})
    columns = [
        "task",
        "feature_mean",
        "feature_std",
        "feature_n",
        "logit_mean",
        "logit_std",
        "logit_n",
        *_STAT_COLUMNS,
    ]
    return _with_holm(rows, columns)


@dataclass
class MethodRanking:
    """Average ranks of methods (1 = best) over complete blocks, and the tests on them."""

    ranks: pd.Series  # method -> average rank, best first
    block_ranks: pd.DataFrame  # blocks x methods
    block_scores: pd.DataFrame  # blocks x methods, mean primary over seeds
    n_blocks: int
    n_incomplete: int  # blocks dropped because a method is missing there
    friedman_statistic: float
    friedman_p: float
    nemenyi: pd.DataFrame | None  # methods x methods p-values; None when not computable
    note: str


def _ft_per_teacher(s: pd.DataFrame) -> pd.DataFrame:
    """FT runs repeated once per KD teacher of their task, so a (task, student, teacher) block holds FT too."""
    kd = s[s["method"] != "ft"]
    teachers = kd[["task", "teacher"]].drop_duplicates()
    ft = s[s["method"] == "ft"].drop(columns="teacher").merge(teachers, on="task", how="inner")
    return pd.concat([kd, ft[kd.columns]], ignore_index=True)


def rank_methods(
    df: pd.DataFrame, blocks: Sequence[str] = ("task", "student", "teacher"), min_blocks: int = 3
) -> MethodRanking:
    """RQ3: rank the methods (FT included) within each block by mean primary over seeds (1 = best, ties
    averaged), average the ranks, and run the Friedman test with the Nemenyi post-hoc (scikit_posthocs).
    With fewer than ``min_blocks`` complete blocks or fewer than 3 methods the ranks are still returned and the
    p-values are NaN."""
    import scikit_posthocs as sp
    from scipy.stats import friedmanchisquare

    s = _ft_per_teacher(student_runs(df))
    keys = list(blocks)
    scores = s.groupby([*keys, "method"])["primary"].mean().unstack("method")
    methods = sorted(scores.columns, key=_method_key)
    scores = scores[methods]
    complete = scores.dropna()
    block_ranks = complete.rank(axis=1, ascending=False, method="average")
    ranks = block_ranks.mean().sort_values()
    stat, p, nemenyi, note = math.nan, math.nan, None, ""
    if len(complete) < min_blocks or len(methods) < 3:
        note = f"{len(complete)} complete block(s), {len(methods)} method(s): no Friedman test"
    else:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # all-tied blocks make the statistic NaN; reported as is
            res = friedmanchisquare(*[complete[m].to_numpy() for m in methods])
        stat, p = float(res.statistic), float(res.pvalue)
        nemenyi = sp.posthoc_nemenyi_friedman(complete.reset_index(drop=True))
    return MethodRanking(
        ranks=ranks,
        block_ranks=block_ranks,
        block_scores=complete,
        n_blocks=len(complete),
        n_incomplete=len(scores) - len(complete),
        friedman_statistic=stat,
        friedman_p=p,
        nemenyi=nemenyi,
        note=note,
    )


def size_key(student: str) -> str:
    """The size part of a student name: ``roberta-7m`` -> ``7m``, ``bigru-tiny`` -> ``tiny``."""
    return student.split("-", 1)[1].lower() if "-" in student else student.lower()


def compare_architectures(df: pd.DataFrame) -> pd.DataFrame:
    """RQ4: RoBERTa vs BiGRU students of the same size (matched by name suffix) for each (task, teacher,
    method), paired by seed. Columns roberta_*/bigru_* (student, params, mean, std, n), delta = roberta - bigru,
    test columns, p_holm."""
    s = student_runs(df).copy()
    s["size"] = s["student"].map(size_key)
    rows = []
    for (task, teacher, method, size), g in s.groupby(["task", "teacher", "method", "size"], sort=False):
        ro, bi = g[g["student_arch"] == "roberta"], g[g["student_arch"] == "bigru"]
        if ro.empty or bi.empty:
            continue
        stats = _renamed(paired_comparison(_by_seed(ro), _by_seed(bi)), "roberta", "bigru")
        rows.append(
            {
                "task": task,
                "teacher": teacher,
                "method": method,
                "size": size,
                "roberta_student": ro["student"].iloc[0],
                "roberta_params": ro["student_params"].iloc[0],
                "bigru_student": bi["student"].iloc[0],
                "bigru_params": bi["student_params"].iloc[0],
                **stats,
            }
        )
    columns = [
        "task",
        "teacher",
        "method",
        "size",
        "roberta_student",
        "roberta_params",
        "bigru_student",
        "bigru_params",
        "roberta_mean",
        "roberta_std",
        "roberta_n",
        "bigru_mean",
        "bigru_std",
        "bigru_n",
        *_STAT_COLUMNS,
    ]
    out = _with_holm(rows, columns)
    if out.empty:
        return out
    out["_p"] = out["roberta_params"].astype(float)
    return _sorted(out, ["task", "teacher", "method", "_p"]).drop(columns="_p")


def score_vs_params(df: pd.DataFrame) -> pd.DataFrame:
    """RQ4: mean/std primary over seeds of every (task, architecture, student, teacher, method), with the
    student's parameter count, sorted by size."""
    s = student_runs(df)
    out = s.groupby(["task", "student_arch", "student", "teacher", "method"], as_index=False).agg(
        student_params=("student_params", "first"),
        n=("primary", "size"),
        mean=("primary", "mean"),
        std=("primary", "std"),
    )
    return _sorted(out, ["task", "student_arch", "student_params", "teacher", "method"])
