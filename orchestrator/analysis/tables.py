"""One table per research question: RQ1 ``compare_to_ft``, RQ2 ``compare_teachers``, RQ4
``compare_architectures`` / ``score_vs_params`` (RQ3 in ``methods.py``).

Degenerate runs (at or below their majority baseline, column ``degenerate`` of ``load_runs``) are left out of
every mean, test and effect size here; ``n_degenerate`` says how many a row left out. A paired comparison in which
either side has a seed at its baseline, or one that diverged or did not finish, gives no verdict
(``stats.withheld``): testing only the surviving seeds would favour the side that fails more often."""

from __future__ import annotations

import math
from itertools import combinations

import pandas as pd

from orchestrator.analysis.load import per_labels_level, student_runs, teacher_scores, valid_runs
from orchestrator.analysis.stats import (
    _STAT_COLUMNS,
    _by_seed,
    _renamed,
    _seed_means,
    _sorted,
    _split_degenerate,
    _with_holm,
    paired_comparison,
    unfinished_students,
    withheld,
    withhold,
)


@per_labels_level
def compare_to_ft(df: pd.DataFrame) -> pd.DataFrame:
    """RQ1: each KD configuration (task, student, teacher, method != ft) against FT of the same student.

    FT does not depend on the teacher, so the same FT runs are the baseline for every teacher. Columns: the
    factors, kd_mean/kd_std/kd_n and ft_mean/ft_std/ft_n over seeds, delta = the mean over the paired seeds of KD - FT (not kd_mean -
    ft_mean: only seeds both sides have count), n_pairs and
    p_wilcoxon (paired by seed), cliffs_delta (KD vs FT), test, note, n_degenerate, teacher_degenerate, p_holm
    (across the table) and verdict.
    """
    s, un = student_runs(df), unfinished_students(df)
    tdeg = {(r.teacher, r.task): r.degenerate for r in teacher_scores(df).itertuples()}
    ft = s[s["method"] == "ft"]
    kd = s[s["method"] != "ft"]
    keys = ["task", "student", "teacher", "method"]
    rows = []
    # a configuration none of whose runs finished (every seed diverged, or failed) is a row too, with no verdict:
    # left out, the method that fails hardest would leave the comparison (a study where nothing finished has no
    # table: the notebooks say why, load.why_none)
    un_kd = un[un["method"] != "ft"] if len(s) else un.iloc[0:0]
    configs = pd.concat([kd[keys], un_kd[keys]]).drop_duplicates()
    for task, student, teacher, method in configs.itertuples(index=False, name=None):
        config = pd.Series(dict(zip(keys, (task, student, teacher, method))))
        g = kd[(kd[keys] == config).all(axis=1)]
        meta = (g if len(g) else un_kd[(un_kd[keys] == config).all(axis=1)]).iloc[0]
        ft_g = ft[(ft["task"] == task) & (ft["student"] == student)]
        base, n_ft = _split_degenerate(ft_g)
        kd_ok, n_kd = _split_degenerate(g)
        cell = (un["task"] == task) & (un["student"] == student)
        why = withheld(
            {
                method.upper(): (g, un[cell & (un["teacher"] == teacher) & (un["method"] == method)]),
                "FT": (ft_g, un[cell & (un["method"] == "ft")]),
            }
        )
        stats = _renamed(withhold(paired_comparison(_by_seed(kd_ok), _by_seed(base)), why), "kd", "ft")
        stats["n_degenerate"] = n_kd + n_ft
        if base.empty:
            stats["note"] = "no (non-degenerate) FT runs of this student"
        rows.append(
            {
                "task": task,
                "student": student,
                "student_arch": meta["student_arch"],
                "student_params": meta["student_params"],
                "teacher": teacher,
                "method": method,
                "method_family": meta["method_family"],
                **stats,
                "teacher_degenerate": tdeg.get((teacher, task)),
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
        "teacher_degenerate",
    ]
    return _sorted(_with_holm(rows, columns), ["task", "student_arch", "student_params", "teacher", "method"])


@per_labels_level
def teachers_side_by_side(df: pd.DataFrame) -> pd.DataFrame:
    """RQ2 overview: mean primary over seeds of each KD configuration, one column per teacher, with each
    teacher's own score on the task in ``score_<teacher>`` and FT of the same student in ``ft``; degenerate runs
    left out (``n_degenerate`` per row, a teacher at or below its baseline listed in ``degenerate_teachers``)."""
    s_all = student_runs(df)
    s = valid_runs(s_all)
    kd_all = s_all[s_all["method"] != "ft"]
    if kd_all.empty:
        return pd.DataFrame(columns=["task", "student", "student_arch", "method", "ft"])
    # every KD configuration gets a row, even when all its runs are degenerate (its means are then NaN): a
    # study whose students all predict one class says so here instead of showing an empty table
    index = ["task", "student", "student_arch", "method"]
    teachers = sorted(kd_all["teacher"].unique())
    wide = kd_all[index].drop_duplicates().reset_index(drop=True)
    means = (
        _seed_means(s[s["method"] != "ft"], [*index, "teacher"])
        .groupby([*index, "teacher"])["primary"]
        .mean()
    )
    for t in teachers:
        wide[str(t)] = [means.get((*k, t), float("nan")) for k in wide[index].itertuples(index=False)]
    ft = _seed_means(s[s["method"] == "ft"], ["task", "student"])
    ft = ft.groupby(["task", "student"], as_index=False)["primary"].mean()
    wide = wide.merge(ft.rename(columns={"primary": "ft"}), on=["task", "student"], how="left")
    keys = ["task", "student", "method"]
    n_deg = s_all[s_all["degenerate"]].groupby(keys).size().rename("n_degenerate").reset_index()
    wide = wide.merge(n_deg, on=keys, how="left").fillna({"n_degenerate": 0})
    wide["n_degenerate"] = wide["n_degenerate"].astype(int)
    wide["degenerate_teachers"] = ""
    for _, t in teacher_scores(df).iterrows():
        wide.loc[wide["task"] == t["task"], f"score_{t['teacher']}"] = t["primary"]
        if t["degenerate"]:
            rows = wide["task"] == t["task"]
            wide.loc[rows, "degenerate_teachers"] = (
                wide.loc[rows, "degenerate_teachers"] + " " + t["teacher"]
            ).str.strip()
    return _sorted(wide, ["task", "student_arch", "student", "method"])


@per_labels_level
def compare_teachers(df: pd.DataFrame) -> pd.DataFrame:
    """RQ2: for each (task, student, method != ft) and each pair of teachers, the seed-paired comparison.

    Columns: the factors, teacher_a/teacher_b (alphabetical), a_mean/a_std/a_n, b_mean/b_std/b_n, delta =
    mean over the paired seeds of a - b, n_pairs, p_wilcoxon, cliffs_delta, test, note, n_degenerate, the teachers' own scores
    teacher_a_score / teacher_b_score and whether each is degenerate, p_holm, verdict. Empty when the study has a
    single teacher.
    """
    s, un = student_runs(df), unfinished_students(df)
    kd = s[s["method"] != "ft"]
    ts = teacher_scores(df)
    scores = {(r.teacher, r.task): r.primary for r in ts.itertuples()}
    tdeg = {(r.teacher, r.task): r.degenerate for r in ts.itertuples()}
    rows = []
    for (task, student, method), g in kd.groupby(["task", "student", "method"], sort=False):
        ok, _ = _split_degenerate(g)
        cell = un[(un["task"] == task) & (un["student"] == student) & (un["method"] == method)]
        for ta, tb in combinations(sorted(g["teacher"].unique()), 2):
            sides = {t: (g[g["teacher"] == t], cell[cell["teacher"] == t]) for t in (ta, tb)}
            stats = withhold(
                paired_comparison(_by_seed(ok[ok["teacher"] == ta]), _by_seed(ok[ok["teacher"] == tb])),
                withheld(sides),
            )
            stats["n_degenerate"] = int(g.loc[g["teacher"].isin([ta, tb]), "degenerate"].sum())
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
                    "teacher_a_degenerate": tdeg.get((ta, task)),
                    "teacher_b_degenerate": tdeg.get((tb, task)),
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
        "teacher_a_degenerate",
        "teacher_b_degenerate",
    ]
    return _sorted(_with_holm(rows, columns), ["task", "student_arch", "student_params", "method"])


def size_key(student: str) -> str:
    """The size part of a student name: ``roberta-7m`` -> ``7m``, ``bigru-tiny`` -> ``tiny``."""
    return student.split("-", 1)[1].lower() if "-" in student else student.lower()


@per_labels_level
def compare_architectures(df: pd.DataFrame) -> pd.DataFrame:
    """RQ4: RoBERTa vs BiGRU students of the same size (matched by name suffix) for each (task, teacher,
    method), paired by seed. Columns roberta_*/bigru_* (student, params, mean, std, n), delta = roberta - bigru
    (mean over the paired seeds),
    test columns, n_degenerate (left out), p_holm, verdict."""
    s, un = student_runs(df).copy(), unfinished_students(df)
    s["size"] = s["student"].map(size_key)
    rows = []
    for (task, teacher, method, size), g in s.groupby(["task", "teacher", "method", "size"], sort=False):
        ro, bi = g[g["student_arch"] == "roberta"], g[g["student_arch"] == "bigru"]
        if ro.empty or bi.empty:
            continue
        ok, n_deg = _split_degenerate(g)
        ro_ok, bi_ok = ok[ok["student_arch"] == "roberta"], ok[ok["student_arch"] == "bigru"]
        cell = un[(un["task"] == task) & (un["method"] == method) & (un["teacher"] == teacher)]
        why = withheld(
            {r["student"].iloc[0]: (r, cell[cell["student"] == r["student"].iloc[0]]) for r in (ro, bi)}
        )
        stats = _renamed(
            withhold(paired_comparison(_by_seed(ro_ok), _by_seed(bi_ok)), why), "roberta", "bigru"
        )
        stats["n_degenerate"] = n_deg
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


@per_labels_level
def score_vs_params(df: pd.DataFrame) -> pd.DataFrame:
    """RQ4: mean/std primary over the non-degenerate seeds (``n`` of them; ``n_degenerate`` left out) of every
    (task, architecture, student, teacher, method), with the student's parameter count, sorted by size."""
    s = student_runs(df)
    keys = ["task", "student_arch", "student", "teacher", "method"]
    out = s.groupby(keys, as_index=False).agg(
        student_params=("student_params", "first"), n_degenerate=("degenerate", "sum")
    )
    # a rerun seed counts once (its runs averaged), as in the paired tables
    seeds = _seed_means(valid_runs(s), keys).groupby(keys)["primary"].agg(n="count", mean="mean", std="std")
    out = out.merge(seeds.reset_index(), on=keys, how="left")
    out["n"] = out["n"].fillna(0).astype(int)
    out["n_degenerate"] = out["n_degenerate"].astype(int)
    out = out[[*keys, "student_params", "n", "n_degenerate", "mean", "std"]]
    return _sorted(out, ["task", "student_arch", "student_params", "teacher", "method"])


def effectiveness_summary(df: pd.DataFrame, rq1: pd.DataFrame | None = None) -> pd.DataFrame:
    """Notebook 01's RQ1 summary per (task[, labels], method): configs (KD configurations), kd_better (delta >
    0), mean_delta, degenerate_runs, testable (a Holm p), significant (Holm p < 0.05, either direction), and
    beside them no_verdict (configurations withheld: a seed at the baseline or unfinished on a side),
    significant_better and significant_worse (KD above / below FT, Holm p < 0.05). ``degenerate_runs``
    counts the study's degenerate student runs of the method, each once (FT's in a row of its own), not
    ``n_degenerate`` summed over rows, which counts an FT run once per KD configuration of its student.
    ``rq1``: ``compare_to_ft(df)`` when already made."""
    rq1 = compare_to_ft(df) if rq1 is None else rq1
    keys = [c for c in ("task", "labels", "method") if c in rq1.columns]
    out = rq1.groupby(keys).agg(
        configs=("delta", "size"),
        kd_better=("delta", lambda d: int((d > 0).sum())),
        mean_delta=("delta", "mean"),
        testable=("p_holm", lambda p: int(p.notna().sum())),
        significant=("p_holm", lambda p: int((p < 0.05).sum())),
    )
    signed = rq1.assign(
        no_verdict=rq1["test"].astype(str).str.startswith("no verdict"),
        significant_better=(rq1["p_holm"] < 0.05) & (rq1["delta"] > 0),
        significant_worse=(rq1["p_holm"] < 0.05) & (rq1["delta"] < 0),
    )
    extra = ["no_verdict", "significant_better", "significant_worse"]
    out = out.join(signed.groupby(keys)[extra].sum())
    s = student_runs(df)
    deg = s[s["degenerate"].astype(bool)].groupby(keys).size().rename("degenerate_runs")
    out = out.join(deg, how="outer") if len(deg) else out.assign(degenerate_runs=0)
    for c in ("configs", "kd_better", "degenerate_runs", "testable", "significant", *extra):
        out[c] = out[c].fillna(0).astype(int)
    out = out[["configs", "kd_better", "mean_delta", "degenerate_runs", "testable", "significant", *extra]]
    out = out.reset_index()
    return _sorted(out, keys).set_index(keys)
