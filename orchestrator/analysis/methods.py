"""RQ3 tables: ``retention``, ``family_summary``, ``compare_families``, ``rank_methods`` (``rank_methods_per_level``).

Retention is undefined (NaN, with ``retention_note``) when the teacher is at or below its majority baseline: a
teacher that learnt nothing is no 100% to keep a share of. Degenerate students are flagged and left out of the
summaries, tests and ranks, with counts."""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from orchestrator.analysis.load import (
    ALL_LABELS,
    TASK_ORDER,
    label_levels,
    per_labels_level,
    student_runs,
    teacher_scores,
    valid_runs,
)
from orchestrator.analysis.stats import (
    _STAT_COLUMNS,
    MIN_PAIRS,
    _method_key,
    _renamed,
    _sorted,
    _with_holm,
    not_testable,
    paired_comparison,
    unfinished_students,
    withheld,
    withhold,
)

FAMILIES = ("feature", "logit")
MIN_BLOCKS = 6  # Friedman's chi-square approximation is poor below this many blocks: no test then


@per_labels_level
def retention(df: pd.DataFrame) -> pd.DataFrame:
    """RQ3: one row per student run and teacher: retention = student primary / teacher primary, and
    param_ratio = student_params / teacher_params. FT runs appear once per teacher of their task (FT does not
    depend on the teacher; the row says how much of that teacher's score plain fine-tuning reaches).
    ``retention`` is NaN, never inf, where the teacher is at or below its majority baseline (``teacher_degenerate``)
    or scored 0, or has no finished fine-tune run; ``retention_note`` says why. ``degenerate``: the student itself
    is at or below its baseline."""
    # students carry an empty teacher_params column (a teacher metric): the teacher's comes from the merge
    s = student_runs(df).drop(columns="teacher_params")
    t = teacher_scores(df).rename(
        columns={
            "primary": "teacher_primary",
            "baseline": "teacher_baseline",
            "degenerate": "teacher_degenerate",
        }
    )
    t = t[["teacher", "task", "teacher_primary", "teacher_baseline", "teacher_degenerate", "teacher_params"]]
    # a KD run keeps its row when its teacher has no finished fine-tune run (a failed or deleted teacher run), so
    # the summaries count it as excluded instead of losing it; FT rows exist only beside a teacher to compare with
    kd = s[s["method"] != "ft"].merge(t, on=["teacher", "task"], how="left")
    ft = s[s["method"] == "ft"].drop(columns="teacher").merge(t, on="task", how="inner")
    out = pd.concat([kd, ft[kd.columns]], ignore_index=True)
    no_teacher = out["teacher_primary"].isna()
    out["teacher_degenerate"] = out["teacher_degenerate"].astype("boolean").fillna(False).astype(bool)
    undefined = out["teacher_degenerate"] | no_teacher | ~(out["teacher_primary"] > 0)
    out["retention"] = (out["primary"] / out["teacher_primary"]).where(~undefined)
    out["retention_note"] = np.select(
        [no_teacher, out["teacher_degenerate"], undefined],
        [
            "undefined: no finished fine-tune run of this teacher",
            "undefined: teacher at or below its majority baseline",
            "undefined: teacher score 0",
        ],
        default="",
    )
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
        "metric",
        "primary",
        "baseline",
        "degenerate",
        "teacher_primary",
        "teacher_baseline",
        "teacher_degenerate",
        "teacher_params",
        "retention",
        "retention_note",
        "param_ratio",
    ]
    return _sorted(out[columns], ["task", "teacher", "student_arch", "student_params", "method", "seed"])


@per_labels_level
def family_summary(df: pd.DataFrame) -> pd.DataFrame:
    """RQ3: logit vs feature (and FT as ``none``) per (task, teacher): mean retention over the runs where it is
    defined and the student is not degenerate (``n_runs``; ``n_excluded`` the others), the best configuration's
    mean retention over seeds, which (student, method) it is and its parameter ratio; ``note`` when none is left."""
    r = retention(df)
    columns = [
        "task",
        "teacher",
        "method_family",
        "n_runs",
        "n_excluded",
        "retention_mean",
        "retention_best",
        "best_student",
        "best_method",
        "best_param_ratio",
        "note",
    ]
    rows = []
    for (task, teacher, family), g in r.groupby(["task", "teacher", "method_family"], sort=False):
        ok = g[~g["degenerate"] & g["retention"].notna()]
        row = {"task": task, "teacher": teacher, "method_family": family, "n_runs": len(ok)}
        row["n_excluded"] = len(g) - len(ok)
        if ok.empty:
            why = g["retention_note"].iloc[0] or "every student run degenerate"
            rows.append({**row, "retention_mean": math.nan, "note": why})
            continue
        config = ok.groupby(["student", "method"], as_index=False).agg(
            retention=("retention", "mean"), param_ratio=("param_ratio", "mean")
        )
        best = config.loc[config["retention"].idxmax()]
        rows.append(
            {
                **row,
                "retention_mean": ok["retention"].mean(),
                "retention_best": best["retention"],
                "best_student": best["student"],
                "best_method": best["method"],
                "best_param_ratio": best["param_ratio"],
                "note": "",
            }
        )
    out = pd.DataFrame(rows, columns=columns)
    fam_order = {"none": 0, "logit": 1, "feature": 2}
    out["_f"] = out["method_family"].map(lambda f: fam_order.get(f, 3))
    return _sorted(out, ["task", "teacher", "_f"]).drop(columns="_f")


def paired_dominance(a: pd.Series, b: pd.Series) -> float:
    """The paired analogue of Cliff's delta: over the pairs (same index) the share where a > b minus the share
    where a < b; in [-1, 1], NaN without pairs. It is scale-free, so pairs of different metrics may be pooled."""
    pairs = pd.concat({"a": a, "b": b}, axis=1, join="inner").dropna()
    return float(np.sign(pairs["a"] - pairs["b"]).mean()) if len(pairs) else math.nan


@per_labels_level
def compare_families(df: pd.DataFrame) -> pd.DataFrame:
    """RQ3: logit-based vs feature-based KD, paired on (student, teacher, seed): per block the mean primary of
    the logit methods against that of the feature methods, degenerate runs left out (``n_degenerate``). One row
    per task (``family`` = ``per task``, Holm-corrected together) and one pooled over all tasks (``family`` =
    ``pooled``, its own family: it restates its parts, so it is not corrected with them). Columns
    logit_*/feature_*, delta = feature - logit, the Wilcoxon test on the block pairs, p_holm, verdict, Cliff's
    delta (unpaired: every feature block against every logit block) and beside it ``dominance``, the paired
    effect size that goes with the test: the share of blocks where feature > logit minus the share where feature
    < logit (NaN, with a note, under ``MIN_PAIRS`` pairs). The pooled row mixes the tasks' headline metrics
    (accuracy, F1, ...): its means, stds, delta and Cliff's delta are NaN (``note`` says so), and only its
    counts, test and dominance (scale-free) are reported."""
    s = student_runs(df)
    s = s[s["method_family"].isin(["logit", "feature"])].dropna(subset=["seed"])
    un = unfinished_students(df)
    un = un[un["method_family"].isin(["logit", "feature"])]
    n_deg = s.groupby("task")["degenerate"].sum()
    ok = valid_runs(s)
    blocks = ok.groupby(["task", "student", "teacher", "seed", "method_family"])["primary"].mean().unstack()
    rows = []
    if {"logit", "feature"} <= set(blocks.columns):
        tasks = sorted(blocks.index.unique("task"), key=lambda t: ((TASK_ORDER + (t,)).index(t), t))
        groups = [
            (task, "per task", blocks.xs(task, level="task"), int(n_deg.get(task, 0))) for task in tasks
        ]
        groups.append(("all", "pooled", blocks, int(n_deg.sum())))
        for task, family, b, n in groups:
            runs, open_ = (s, un) if family == "pooled" else (s[s["task"] == task], un[un["task"] == task])
            sides = {
                f: (runs[runs["method_family"] == f], open_[open_["method_family"] == f]) for f in FAMILIES
            }
            why = withheld(sides, ("task", "student", "teacher", "seed"), "blocks")
            stats = _renamed(withhold(paired_comparison(b["feature"], b["logit"]), why), "feature", "logit")
            notes = [x for x in stats["note"].split("; ") if x]
            n_pairs = stats["n_pairs"]
            stats["dominance"] = paired_dominance(b["feature"], b["logit"])
            if n_pairs < MIN_PAIRS:
                stats["dominance"] = math.nan
                notes.append(f"dominance {not_testable(n_pairs)}")
            if family == "pooled" and len(tasks) > 1:
                for key in (
                    "feature_mean",
                    "feature_std",
                    "logit_mean",
                    "logit_std",
                    "delta",
                    "cliffs_delta",
                ):
                    stats[key] = math.nan
                notes.append("means and delta per task only: the tasks' metrics differ")
            stats["note"] = "; ".join(notes)
            rows.append({"task": task, "family": family, **stats, "n_degenerate": n})
    columns = [
        "task",
        "family",
        "feature_mean",
        "feature_std",
        "feature_n",
        "logit_mean",
        "logit_std",
        "logit_n",
        *[x for c in _STAT_COLUMNS for x in ((c, "dominance") if c == "cliffs_delta" else (c,))],
    ]
    return _with_holm(rows, columns, family="family")


@dataclass
class MethodRanking:
    """Average ranks of methods (1 = best) over complete blocks, and the tests on them."""

    ranks: pd.Series  # method -> average rank, best first
    block_ranks: pd.DataFrame  # blocks x methods
    block_scores: pd.DataFrame  # blocks x methods, mean primary over seeds
    n_blocks: int
    n_incomplete: int  # blocks dropped because a method is missing there (or only has degenerate runs)
    friedman_statistic: float
    friedman_p: float
    nemenyi: pd.DataFrame | None  # methods x methods p-values; None when not computable
    note: str
    n_degenerate: int = 0  # degenerate runs left out before ranking
    verdict: str = ""  # "not testable (n = ...)" or the Friedman p-value
    labels: str = ALL_LABELS  # the labels level ranked (each level is its own experiment)


def _block_scores(s: pd.DataFrame, keys: list[str]) -> pd.DataFrame:
    """Blocks x methods: FT's mean over seeds, and each KD method's mean over the block's teachers of its means
    over seeds (NaN when it lacks a teacher that another method of the block has). FT does not depend on the
    teacher, so it enters a block once: a (task, student, teacher) block would count every FT run once per
    teacher, as if the teachers' blocks were independent measurements of it."""
    parts = []
    ft = s[s["method"] == "ft"].groupby(keys)["primary"].mean()
    if len(ft):
        parts.append(ft.rename("ft").to_frame())
    kd = s[s["method"] != "ft"]
    if len(kd):
        per = kd.groupby([*keys, "method", "teacher"], as_index=False)["primary"].mean()
        teachers = per.groupby(keys)["teacher"].agg(frozenset).rename("_all")
        cell = per.groupby([*keys, "method"], as_index=False).agg(
            score=("primary", "mean"), _has=("teacher", frozenset)
        )
        cell = cell.merge(teachers.reset_index(), on=keys)
        cell.loc[cell["_has"] != cell["_all"], "score"] = math.nan
        parts.append(cell.pivot_table(index=keys, columns="method", values="score", dropna=False))
    if not parts:
        return pd.DataFrame()
    out = pd.concat(parts, axis=1)
    out.columns.name = "method"
    return out[sorted(out.columns, key=_method_key)]


def _tainted_blocks(runs: pd.DataFrame, open_: pd.DataFrame, keys: list[str]) -> pd.DataFrame:
    """The blocks (``keys``) where a run is degenerate or did not finish on a seed another method of the block
    has too (a seed only one method ever ran is in no comparison)."""
    cols = [*keys, "seed", "method"]
    bad = pd.concat([runs.loc[runs["degenerate"].astype(bool), cols], open_[cols]]).dropna(subset=["seed"])
    every = pd.concat([runs[cols], open_[cols]]).drop_duplicates()
    paired = bad.merge(every, on=[*keys, "seed"], suffixes=("", "_other"))
    return paired.loc[paired["method"] != paired["method_other"], keys].drop_duplicates()


def rank_methods(
    df: pd.DataFrame, blocks: Sequence[str] = ("task", "student"), min_blocks: int = MIN_BLOCKS
) -> MethodRanking:
    """RQ3: rank the methods (FT included) within each (task, student) block by mean primary over seeds (a KD
    method's averaged over the task's teachers, ``_block_scores``; 1 = best, ties averaged), average the ranks,
    and run the Friedman test with the Nemenyi post-hoc (scikit_posthocs). Degenerate runs are left out
    (``n_degenerate``), and a block holding any degenerate or unfinished run is left out of the ranks and the test
    (``n_incomplete``), which then gives no verdict: ranking the survivors would favour the method that collapses
    more often. With fewer than ``min_blocks`` complete blocks or fewer than 3 methods the ranks are still
    returned, the p-values are NaN and ``verdict`` says "not testable (n = ...)". One labels level only (the
    block index carries ``labels``): a study with several is ranked per level by ``rank_methods_per_level``, and
    raises ValueError here rather than rank one level's FT against another level's KD."""
    import scikit_posthocs as sp
    from scipy.stats import friedmanchisquare

    if "teacher" in blocks:
        raise ValueError("blocks: not 'teacher' (FT would count once per teacher); filter df to one teacher")
    runs = student_runs(df)
    levels = label_levels(df)
    if len(levels) > 1:
        raise ValueError(f"labels levels {levels}: rank each alone (rank_methods_per_level)")
    open_ = unfinished_students(df)
    if "labels" in runs.columns:
        runs, open_ = runs[runs["labels"] == levels[0]], open_[open_["labels"] == levels[0]]
    keys = list(blocks)
    if "labels" in runs.columns and "labels" not in keys:
        keys.append("labels")
    has_kd = bool((runs["method"] != "ft").any())
    scores = _block_scores(valid_runs(runs), keys) if has_kd else pd.DataFrame()
    tainted = _tainted_blocks(runs, open_, keys)
    tainted_index = pd.MultiIndex.from_frame(tainted) if len(keys) > 1 else pd.Index(tainted[keys[0]])
    n_tainted = int(scores.index.isin(tainted_index).sum()) if len(scores) else 0
    methods = list(scores.columns)
    complete = scores[~scores.index.isin(tainted_index)].dropna() if len(scores) else scores
    block_ranks = complete.rank(axis=1, ascending=False, method="average")
    ranks = block_ranks.mean().sort_values()
    stat, p, nemenyi, note = math.nan, math.nan, None, ""
    tied = len(complete) and bool((complete.nunique(axis=1) == 1).all())
    if len(complete) < min_blocks or len(methods) < 3:
        note = f"{len(complete)} complete block(s), {len(methods)} method(s): no Friedman test"
        verdict = not_testable(f"{len(complete)} complete blocks, {len(methods)} methods")
    elif tied:  # Friedman's statistic is 0/0: no ranking to test
        note, verdict = "every block ties every method", not_testable("every block tied")
    else:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # scipy warns about ties; its tie correction is applied
            res = friedmanchisquare(*[complete[m].to_numpy() for m in methods])
        stat, p = float(res.statistic), float(res.pvalue)
        nemenyi = sp.posthoc_nemenyi_friedman(complete.reset_index(drop=True))
        verdict = f"{'significant' if p < 0.05 else 'not significant'} (Friedman p = {p:.3g})"
    if n_tainted:
        note = "; ".join(
            x for x in (note, f"{n_tainted} block(s) with degenerate or unfinished runs left out") if x
        )
        if not math.isnan(p):  # the test on the clean blocks is shown, not its post-hoc: no claim rests on it
            why = f"{n_tainted} block(s) hold runs at the majority baseline or unfinished"
            verdict, nemenyi = f"no verdict: {why} (Friedman p = {p:.3g} on the rest)", None
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
        n_degenerate=int(runs["degenerate"].sum()),
        verdict=verdict,
        labels=levels[0],
    )


def rank_methods_per_level(
    df: pd.DataFrame, blocks: Sequence[str] = ("task", "student"), min_blocks: int = MIN_BLOCKS
) -> dict[str, MethodRanking]:
    """``rank_methods`` per labels level (``label_levels`` order: fewest labels first), each level's runs alone
    with its own Friedman test and Nemenyi post-hoc, as every other RQ table is per level; one entry for a study
    without the factor."""
    levels = label_levels(df)
    if len(levels) == 1:
        return {levels[0]: rank_methods(df, blocks, min_blocks)}
    return {lv: rank_methods(df[df["labels"] == lv], blocks, min_blocks) for lv in levels}
