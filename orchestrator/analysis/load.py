"""Analysis of a KD study recorded in MLflow (see docs/CONTRACTS.md, section MLflow).

One tidy frame of FINISHED runs (`load_runs`), then one small function per research question of
/work/shared/STUDY.md: RQ1 `compare_to_ft`, RQ2 `compare_teachers`, RQ3 `retention` / `family_summary` /
`compare_families` / `rank_methods`, RQ4 `compare_architectures` / `score_vs_params`, plus `efficiency`,
`agreement` (behaviour), `figure2` and the paper's Figure 2 numbers (`PAPER_FIGURE2`). The notebooks in
notebooks/ call these and stay short; `run_notebooks` executes them headless.

Statistics: Wilcoxon signed-rank (scipy.stats.wilcoxon) on seed-paired scores, Cliff's delta (implemented here
from its definition), Holm correction (statsmodels.stats.multitest.multipletests, installed with
scikit-posthocs), Friedman (scipy.stats.friedmanchisquare) and Nemenyi (scikit_posthocs).
"""

from __future__ import annotations

import json
import math
import os
import tempfile
import warnings
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from itertools import combinations
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

# The primary metric of each task, as in the paper's Figure 2; tasks not listed fall back to accuracy.
PRIMARY_METRIC: dict[str, str] = {"defect": "test_accuracy", "clone": "test_f1", "exception": "test_accuracy"}
TEST_METRICS: tuple[str, ...] = ("test_accuracy", "test_f1", "test_top3_accuracy", "test_macro_f1")
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
TAG_COLUMNS: tuple[str, ...] = (
    "stage",
    "task",
    "teacher",
    "student",
    "student_arch",
    "method",
    "method_family",
    "trial_key",
)
COLUMNS: tuple[str, ...] = (
    "run_id",
    "start_time",
    *TAG_COLUMNS,
    "student_params",
    "seed",
    *TEST_METRICS,
    "primary",
    *RUN_METRICS,
    *RUN_PARAMS,
)
METHOD_ORDER: tuple[str, ...] = ("ft", "kd", "dist", "pkd", "ckd")
ARCH_ORDER: tuple[str, ...] = ("roberta", "bigru")
TASK_ORDER: tuple[str, ...] = ("defect", "clone", "exception")
NONE = "none"  # the contract's value for a factor that does not apply (e.g. the teacher of an FT run)

REPO_ROOT = Path(__file__).resolve().parent.parent
NOTEBOOK_DIR = REPO_ROOT / "notebooks"
NOTEBOOKS: tuple[str, ...] = (
    "01_rq1_effectiveness.ipynb",
    "02_rq2_teachers.ipynb",
    "03_rq3_methods.ipynb",
    "04_rq4_students.ipynb",
    "05_efficiency.ipynb",
    "06_behaviour.ipynb",
    "figure2.ipynb",
)


# --------------------------------------------------------------------------------------------- loading


def _client(tracking_uri: str | None) -> Any:
    from mlflow import MlflowClient

    return MlflowClient(tracking_uri=tracking_uri)


def _finished_runs(client: Any, experiment_id: str) -> list[Any]:
    from mlflow.entities import ViewType

    runs: list[Any] = []
    token: str | None = None
    while True:  # paged: a full study has more runs than one page
        page = client.search_runs(
            [experiment_id],
            filter_string="attributes.status = 'FINISHED'",
            run_view_type=ViewType.ACTIVE_ONLY,
            max_results=1000,
            page_token=token,
        )
        runs.extend(page)
        token = page.token
        if not token:
            return runs


def _run_row(run: Any) -> dict[str, Any]:
    tags, metrics, params = run.data.tags, run.data.metrics, run.data.params
    row: dict[str, Any] = {"run_id": run.info.run_id, "start_time": run.info.start_time}
    for tag in TAG_COLUMNS:
        row[tag] = tags.get(tag, NONE)
    # student_params is both a tag (text) and a metric; the metric survives a missing tag
    row["student_params"] = metrics.get("student_params", tags.get("student_params"))
    row["seed"] = tags.get("seed")
    for name in (*TEST_METRICS, *RUN_METRICS):
        row[name] = metrics.get(name)
    for name in RUN_PARAMS:
        row[name] = params.get(name)
    return row


def load_runs(study: str, tracking_uri: str | None = None) -> pd.DataFrame:
    """One row per FINISHED run of the experiment named ``study``, columns ``COLUMNS``.

    ``seed`` and ``student_params`` are nullable integers (``Int64``: teacher runs have none), metrics and the
    params epochs/batch_size/train_samples are floats (NaN where a run did not log them), ``primary`` is the
    task's primary metric (``PRIMARY_METRIC``). Raises LookupError naming the existing experiments when the
    study has none.
    """
    from mlflow.entities import ViewType

    client = _client(tracking_uri)
    experiment = client.get_experiment_by_name(study)
    # a deleted experiment is still found by name; its runs are no study to analyse
    if experiment is None or experiment.lifecycle_stage != "active":
        names = sorted(e.name for e in client.search_experiments(view_type=ViewType.ACTIVE_ONLY))
        raise LookupError(
            f"no MLflow experiment named {study!r} at {client.tracking_uri}; existing experiments: {names}"
        )
    rows = [_run_row(r) for r in _finished_runs(client, experiment.experiment_id)]
    df = pd.DataFrame(rows, columns=list(COLUMNS))
    df["start_time"] = pd.to_datetime(df["start_time"], unit="ms")
    for tag in TAG_COLUMNS:
        df[tag] = df[tag].astype(str)
    for name in ("student_params", "seed"):
        # via float: the tag "none" and missing values become <NA>, "7100000" and 7100000.0 the same integer
        df[name] = pd.to_numeric(df[name], errors="coerce").round().astype("Int64")
    for name in (*TEST_METRICS, *RUN_METRICS, *RUN_PARAMS):
        df[name] = pd.to_numeric(df[name], errors="coerce").astype(float)
    df["primary"] = _primary(df)
    return df.sort_values(["stage", "task", "student", "teacher", "method", "seed"], ignore_index=True)


def _primary(df: pd.DataFrame) -> pd.Series:
    out = pd.Series(np.nan, index=df.index, dtype=float)
    for task in df["task"].unique():
        metric = PRIMARY_METRIC.get(task, "test_accuracy")
        rows = df["task"] == task
        out[rows] = df.loc[rows, metric]
    return out


def student_runs(df: pd.DataFrame) -> pd.DataFrame:
    """The student trials (stage ``student``) that logged their primary metric."""
    out = df[(df["stage"] == "student") & df["primary"].notna()]
    return out.reset_index(drop=True)


def teacher_scores(df: pd.DataFrame) -> pd.DataFrame:
    """Fine-tuned teachers: columns teacher, task, primary (mean over their runs), teacher_params, and the
    teacher's inference_samples_per_s (NaN where not logged)."""
    t = df[(df["stage"] == "teacher_finetune") & df["primary"].notna()]
    out = t.groupby(["teacher", "task"], as_index=False).agg(
        primary=("primary", "mean"),
        teacher_params=("teacher_params", "mean"),
        inference_samples_per_s=("inference_samples_per_s", "mean"),
    )
    return out


def default_teacher(df: pd.DataFrame) -> str | None:
    """The teacher of the paper's Figure 2 (UniXcoder) when the study has it, else the first KD teacher."""
    teachers = sorted(set(student_runs(df)["teacher"]) - {NONE})
    for t in teachers:
        if "unixcoder" in t.lower():
            return t
    return teachers[0] if teachers else None


# ------------------------------------------------------------------------------------------ statistics


def cliffs_delta(x: Iterable[float], y: Iterable[float]) -> float:
    """Cliff's delta: P(X > Y) - P(X < Y) over all pairs (x_i, y_j); in [-1, 1], NaN when a side is empty."""
    a = np.asarray(list(x), dtype=float)
    b = np.asarray(list(y), dtype=float)
    if a.size == 0 or b.size == 0:
        return math.nan
    return float(np.sign(a[:, None] - b[None, :]).mean())


def holm(pvalues: Sequence[float] | np.ndarray | pd.Series) -> np.ndarray:
    """Holm-Bonferroni adjusted p-values (statsmodels' multipletests); NaN entries stay NaN and are not counted
    as hypotheses."""
    from statsmodels.stats.multitest import multipletests

    p = np.asarray(pvalues, dtype=float)
    out = np.full(p.shape, np.nan)
    tested = ~np.isnan(p)
    if tested.any():
        out[tested] = multipletests(p[tested], method="holm")[1]
    return out


MIN_PAIRS = 2  # fewer seed pairs leave nothing to rank: no test


def paired_comparison(a: pd.Series, b: pd.Series, min_pairs: int = MIN_PAIRS) -> dict[str, Any]:
    """Compare two sets of scores indexed by their pairing key (seed, or a tuple of factors).

    Means/stds/counts use every score of each side; the Wilcoxon signed-rank test pairs the scores by index;
    Cliff's delta compares all scores of a with all of b. Never raises on small samples: fewer than
    ``min_pairs`` pairs gives p = NaN, all paired differences zero gives p = 1; ``note`` says which, or that
    the sample is too small for p < 0.05 to be attainable.
    """
    from scipy.stats import wilcoxon

    a = a.dropna().astype(float)
    b = b.dropna().astype(float)
    pairs = pd.concat({"a": a, "b": b}, axis=1, join="inner")
    n = len(pairs)
    diff = pairs["a"] - pairs["b"]
    nonzero = int((diff != 0).sum())
    if n < min_pairs:
        p, note = math.nan, f"{n} pair(s): no test"
    elif nonzero == 0:
        p, note = 1.0, "all paired differences are zero"
    else:
        with warnings.catch_warnings():
            # scipy warns about small samples and ties; the note below carries that to the reader
            warnings.simplefilter("ignore")
            p = float(wilcoxon(pairs["a"], pairs["b"]).pvalue)
        # the exact two-sided test cannot go below 2 / 2**nonzero: say so when that is above 0.05
        floor = 2.0 ** (1 - nonzero)
        note = f"{nonzero} nonzero pair(s): smallest attainable p {floor:.3g}" if floor > 0.05 else ""
    return {
        "a_mean": a.mean() if len(a) else math.nan,
        "a_std": a.std() if len(a) > 1 else math.nan,
        "a_n": len(a),
        "b_mean": b.mean() if len(b) else math.nan,
        "b_std": b.std() if len(b) > 1 else math.nan,
        "b_n": len(b),
        "delta": (a.mean() - b.mean()) if len(a) and len(b) else math.nan,
        "n_pairs": n,
        "p_wilcoxon": p,
        "cliffs_delta": cliffs_delta(a, b),
        "note": note,
    }


def _renamed(stats: dict[str, Any], a: str, b: str) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in stats.items():
        if key.startswith("a_"):
            key = f"{a}_{key[2:]}"
        elif key.startswith("b_"):
            key = f"{b}_{key[2:]}"
        out[key] = value
    return out


def _by_seed(frame: pd.DataFrame, value: str = "primary") -> pd.Series:
    # a re-run trial leaves two finished runs for one seed: average them rather than count the seed twice
    return frame.dropna(subset=["seed"]).groupby("seed")[value].mean()


def _with_holm(rows: list[dict[str, Any]], columns: list[str]) -> pd.DataFrame:
    out = pd.DataFrame(rows, columns=columns)
    out["p_holm"] = holm(out["p_wilcoxon"]) if len(out) else pd.Series(dtype=float)
    return out


def _order(df: pd.DataFrame, column: str, order: Sequence[str]) -> pd.Series:
    # known values first, in the paper's order, then any others alphabetically
    rank = {v: i for i, v in enumerate(order)}
    return df[column].map(lambda v: (rank.get(v, len(order)), v))


def _method_key(method: str) -> tuple[int, str]:
    return (METHOD_ORDER.index(method) if method in METHOD_ORDER else len(METHOD_ORDER), method)


def _sorted(df: pd.DataFrame, by: list[str]) -> pd.DataFrame:
    orders = {"task": TASK_ORDER, "method": METHOD_ORDER, "student_arch": ARCH_ORDER}
    if df.empty:
        return df.reset_index(drop=True)
    keys = {c: _order(df, c, orders[c]) if c in orders else df[c] for c in by}
    order = pd.DataFrame(keys).sort_values(by).index
    return df.loc[order].reset_index(drop=True)


# ------------------------------------------------------------------------------------------------ RQ1

_STAT_COLUMNS = ["delta", "n_pairs", "p_wilcoxon", "cliffs_delta", "note"]


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


# ------------------------------------------------------------------------------------------------ RQ2


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


# ------------------------------------------------------------------------------------------------ RQ3


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


# ------------------------------------------------------------------------------------------------ RQ4


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


# ----------------------------------------------------------------------------------------- efficiency


@dataclass
class Efficiency:
    cost: pd.DataFrame  # KD train time over FT of the same (task, student, seed), with the cache
    passes: pd.DataFrame  # teacher passes made with the cache vs what online KD would have made
    throughput: pd.DataFrame  # student inference speed and size vs the teacher's
    online: pd.DataFrame | None  # the overhead benchmark per method, when a benchmark JSON is given
    bench: dict[str, Any] | None  # the benchmark's teacher_passes, cache_bytes, device
    recorded_teacher_passes: float  # the study run's teacher_passes metric (NaN without one)


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
    t = teacher_scores(df).rename(columns={"inference_samples_per_s": "teacher_samples_per_s"})
    out = st.merge(t[["task", "teacher", "teacher_params", "teacher_samples_per_s"]], on="task", how="left")
    out["speedup"] = out["student_samples_per_s"] / out["teacher_samples_per_s"]
    out["param_ratio"] = out["student_params"].astype(float) / out["teacher_params"]
    return _sorted(out, ["task", "student_arch", "student_params", "teacher"])


def efficiency(df: pd.DataFrame, bench_json: Path | None = None) -> Efficiency:
    """Efficiency (STUDY.md discussion). ``cost``: train_seconds of each KD method over FT of the same
    (task, student, seed) as run here, i.e. with the teacher cache; ``online``: the overhead benchmark's
    per-method figures (JSON schema {"methods": {m: {ft_s, cached_s, online_s, teacher_s_cached,
    cached_over_ft, online_over_ft}}, "teacher_passes", "cache_bytes", "device"}); ``passes``: teacher_cache
    runs (the passes they made: metric teacher_passes, 0 when the cache already existed) vs the teacher passes
    (epochs per KD trial) and forward steps (the trial's ``steps`` metric, else epochs x ceil(train_samples /
    batch_size)) online KD would have made; ``throughput``: student vs teacher inference speed and size."""
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


# ------------------------------------------------------------------------------------------ behaviour


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


def load_predictions(client: Any, run_id: str) -> pd.DataFrame:
    """A run's predictions/test.json as a frame indexed by idx with columns label, pred."""
    with tempfile.TemporaryDirectory() as tmp, _quiet_downloads():
        path = client.download_artifacts(run_id, "predictions/test.json", tmp)
        data = json.loads(Path(path).read_text())
    return pd.DataFrame(
        {"label": data["label"], "pred": data["pred"]}, index=pd.Index(data["idx"], name="idx")
    ).astype(int)


def agreement(df: pd.DataFrame, client: Any) -> pd.DataFrame:
    """Behaviour: per student run and teacher, how often the student predicts what the teacher predicts.

    The teacher's predictions come from the latest teacher_cache run of (teacher, task); FT runs are compared
    with every teacher of their task. Samples are aligned by idx. Columns: agreement, accuracy,
    teacher_accuracy, n_ft_disagreed (samples where the FT run of the same task/student/seed disagreed with
    the teacher), acc_on_ft_disagreed and agree_on_ft_disagreed (this run's accuracy and agreement with the
    teacher on those samples), note. ``client`` is an mlflow.MlflowClient on the study's store.
    """
    from mlflow.exceptions import MlflowException

    s = student_runs(df)
    caches = df[df["stage"] == "teacher_cache"].sort_values("start_time")
    cache_run = {(r.teacher, r.task): r.run_id for r in caches.itertuples()}  # the latest wins
    memo: dict[str, pd.DataFrame | None] = {}

    def preds(run_id: str) -> pd.DataFrame | None:
        if run_id not in memo:
            try:
                memo[run_id] = load_predictions(client, run_id)
            except (MlflowException, OSError):
                memo[run_id] = None  # reported per row, so one run without artifacts spoils nothing else
        return memo[run_id]

    ft_run = {
        (r.task, r.student, r.seed): r.run_id
        for r in s[s["method"] == "ft"].sort_values("start_time").itertuples()
    }
    rows = []
    for r in s.itertuples():
        teachers = [r.teacher] if r.method != "ft" else sorted(t for (t, task) in cache_run if task == r.task)
        for teacher in teachers:
            row: dict[str, Any] = {
                "run_id": r.run_id,
                "task": r.task,
                "student": r.student,
                "student_arch": r.student_arch,
                "teacher": teacher,
                "method": r.method,
                "method_family": r.method_family,
                "seed": r.seed,
            }
            tp = preds(cache_run[(teacher, r.task)]) if (teacher, r.task) in cache_run else None
            sp_ = preds(r.run_id)
            if tp is None or sp_ is None:
                row["note"] = "no teacher predictions" if tp is None else "no student predictions"
                rows.append(row)
                continue
            both = sp_.join(tp["pred"].rename("teacher_pred"), how="inner")
            agree = both["pred"] == both["teacher_pred"]
            row.update(
                agreement=agree.mean(),
                accuracy=(both["pred"] == both["label"]).mean(),
                teacher_accuracy=(both["teacher_pred"] == both["label"]).mean(),
                n_samples=len(both),
                note="",
            )
            fid = ft_run.get((r.task, r.student, r.seed))
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
            rows.append(row)
    columns = [
        "run_id",
        "task",
        "student",
        "student_arch",
        "teacher",
        "method",
        "method_family",
        "seed",
        "n_samples",
        "agreement",
        "accuracy",
        "teacher_accuracy",
        "n_ft_disagreed",
        "acc_on_ft_disagreed",
        "agree_on_ft_disagreed",
        "note",
    ]
    out = pd.DataFrame(rows, columns=columns)
    out["note"] = out["note"].fillna("")
    return _sorted(out, ["task", "teacher", "student", "method", "seed"])


def agreement_summary(agr: pd.DataFrame) -> pd.DataFrame:
    """FT vs KD: per (task, teacher, method) the mean agreement with the teacher, accuracy, and accuracy /
    agreement on the samples the FT student got different from the teacher; agreement_minus_ft compares with
    the FT row of the same (task, teacher)."""
    out = agr.groupby(["task", "teacher", "method"], as_index=False).agg(
        n_runs=("run_id", "size"),
        agreement=("agreement", "mean"),
        accuracy=("accuracy", "mean"),
        acc_on_ft_disagreed=("acc_on_ft_disagreed", "mean"),
        agree_on_ft_disagreed=("agree_on_ft_disagreed", "mean"),
    )
    ft = out[out["method"] == "ft"][["task", "teacher", "agreement"]].rename(
        columns={"agreement": "ft_agreement"}
    )
    out = out.merge(ft, on=["task", "teacher"], how="left")
    out["agreement_minus_ft"] = out["agreement"] - out.pop("ft_agreement")
    return _sorted(out, ["task", "teacher", "method"])


# ------------------------------------------------------------------------------------------- Figure 2

# The paper's Figure 2 (UniXcoder teacher), read off the plot (+-0.2), transcribed from STUDY.md.
_PAPER_ROWS: dict[tuple[str, str], dict[str, tuple[float, float, float]]] = {
    ("defect", "roberta"): {
        "ft": (60.6, 58.9, 58.1),
        "kd": (63.7, 62.4, 61.5),
        "dist": (64.2, 63.2, 62.2),
        "pkd": (63.4, 63.1, 62.3),
        "ckd": (64.6, 64.2, 64.3),
    },
    ("clone", "roberta"): {
        "ft": (91.7, 91.0, 87.8),
        "kd": (91.6, 91.2, 91.2),
        "dist": (91.9, 92.4, 91.6),
        "pkd": (92.6, 92.9, 91.3),
        "ckd": (94.1, 93.2, 92.0),
    },
    ("exception", "roberta"): {
        "ft": (69.9, 69.7, 68.6),
        "kd": (71.1, 72.5, 70.5),
        "dist": (73.1, 73.7, 70.6),
        "pkd": (72.9, 73.4, 71.9),
        "ckd": (73.1, 72.6, 70.8),
    },
    ("defect", "bigru"): {
        "ft": (62.4, 60.7, 60.2),
        "kd": (64.1, 63.3, 61.7),
        "dist": (65.2, 62.2, 61.7),
        "pkd": (64.5, 63.6, 61.9),
        "ckd": (65.2, 63.4, 62.2),
    },
    ("clone", "bigru"): {
        "ft": (89.2, 86.9, 85.6),
        "kd": (89.0, 87.7, 86.0),
        "dist": (88.8, 88.0, 86.3),
        "pkd": (89.7, 87.8, 86.3),
        "ckd": (90.2, 90.2, 87.2),
    },
    ("exception", "bigru"): {
        "ft": (56.2, 55.7, 50.4),
        "kd": (58.2, 58.3, 51.6),
        "dist": (60.7, 58.4, 55.1),
        "pkd": (58.5, 57.7, 53.1),
        "ckd": (59.2, 57.3, 52.8),
    },
}
PAPER_SIZES: dict[str, float] = {"30M": 30e6, "7M": 7e6, "1.5M": 1.5e6}
PAPER_FIGURE2 = pd.DataFrame(
    [
        {
            "task": task,
            "arch": arch,
            "size": size,
            "params": PAPER_SIZES[size],
            "method": method,
            "score": score,
        }
        for (task, arch), methods in _PAPER_ROWS.items()
        for method, scores in methods.items()
        for size, score in zip(PAPER_SIZES, scores)
    ]
)
PAPER_TEACHER_SCORES = pd.DataFrame(
    {"teacher": "unixcoder", "task": ["defect", "clone", "exception"], "score": [65.2, 94.1, 82.3]}
)


def percent_factor(values: Iterable[float]) -> float:
    """100 when the scores are fractions (all <= 1), else 1: the paper reports percentages."""
    v = np.asarray(list(values), dtype=float)
    v = v[~np.isnan(v)]
    return 100.0 if v.size and v.max() <= 1.0 else 1.0


def beside_paper(df: pd.DataFrame, teacher: str | None = None) -> pd.DataFrame:
    """Every cell of the paper's Figure 2 with our mean (percent) beside it: columns task, arch, size, method,
    paper, ours, n (our seeds), diff = ours - paper. ``teacher``: which of our teachers stands for UniXcoder
    (default: ``default_teacher``); FT rows use FT. NaN where the study lacks the cell."""
    teacher = teacher or default_teacher(df)
    s = student_runs(df)
    s = s[(s["method"] == "ft") | (s["teacher"] == teacher)].copy()
    factor = percent_factor(df.loc[df["stage"].isin(["student", "teacher_finetune"]), "primary"])
    s["size"] = s["student"].map(size_key)
    ours = s.groupby(["task", "student_arch", "size", "method"], as_index=False).agg(
        ours=("primary", "mean"), n=("primary", "size")
    )
    ours["ours"] *= factor
    ours = ours.rename(columns={"student_arch": "arch"})
    paper = PAPER_FIGURE2.rename(columns={"score": "paper"}).assign(key=lambda p: p["size"].str.lower())
    out = paper.merge(
        ours.rename(columns={"size": "key"}), on=["task", "arch", "key", "method"], how="left"
    ).drop(columns=["key", "params"])
    out["n"] = out["n"].fillna(0).astype(int)
    out["diff"] = out["ours"] - out["paper"]
    return out


_METHOD_STYLE: dict[str, tuple[str, str]] = {
    "ft": ("tab:gray", "o"),
    "kd": ("tab:blue", "s"),
    "dist": ("tab:orange", "^"),
    "pkd": ("tab:green", "D"),
    "ckd": ("tab:red", "v"),
}


def figure2(df: pd.DataFrame, out_png: Path, paper: bool = False, teacher: str | None = None) -> Path:
    """The paper's Figure 2 for this study: primary score (percent) vs student parameters (log x), one line per
    method (mean +- std over seeds), the teacher's score as a dashed line, one panel per (task, architecture).
    ``teacher``: the KD teacher to plot (default ``default_teacher``). With ``paper`` the paper's numbers are
    drawn as hollow markers at the nominal sizes and its teacher as a dotted line. Returns ``out_png``."""
    # Object-oriented matplotlib with the Agg canvas: no pyplot state, no backend switch in a notebook.
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    from matplotlib.ticker import EngFormatter, NullFormatter

    teacher = teacher or default_teacher(df)
    s = student_runs(df)
    s = s[(s["method"] == "ft") | (s["teacher"] == teacher)]
    if s.empty:
        raise ValueError("no student runs to plot")
    factor = percent_factor(df.loc[df["stage"].isin(["student", "teacher_finetune"]), "primary"])
    agg = s.groupby(["task", "student_arch", "student", "method"], as_index=False).agg(
        params=("student_params", "mean"), mean=("primary", "mean"), std=("primary", "std")
    )
    tasks = [t for t in TASK_ORDER if t in set(agg["task"])] + sorted(set(agg["task"]) - set(TASK_ORDER))
    archs = [a for a in ARCH_ORDER if a in set(agg["student_arch"])] + sorted(
        set(agg["student_arch"]) - set(ARCH_ORDER)
    )
    tscore = teacher_scores(df)
    fig = Figure(figsize=(5.0 * len(archs), 3.6 * len(tasks)), layout="constrained")
    FigureCanvasAgg(fig)
    axes = fig.subplots(len(tasks), len(archs), squeeze=False)
    for i, task in enumerate(tasks):
        for j, arch in enumerate(archs):
            ax = axes[i][j]
            panel = agg[(agg["task"] == task) & (agg["student_arch"] == arch)]
            methods = sorted(panel["method"].unique(), key=_method_key)
            for method in methods:
                color, marker = _METHOD_STYLE.get(method, ("black", "x"))
                m = panel[panel["method"] == method].sort_values("params")
                ax.errorbar(
                    m["params"],
                    m["mean"] * factor,
                    yerr=(m["std"] * factor).fillna(0),
                    color=color,
                    marker=marker,
                    capsize=3,
                    label=method.upper(),
                )
                if paper:
                    p = PAPER_FIGURE2[
                        (PAPER_FIGURE2["task"] == task)
                        & (PAPER_FIGURE2["arch"] == arch)
                        & (PAPER_FIGURE2["method"] == method)
                    ]
                    ax.scatter(p["params"], p["score"], facecolors="none", edgecolors=color, marker=marker)
            t = tscore[(tscore["task"] == task) & (tscore["teacher"] == teacher)]
            if len(t):
                ax.axhline(
                    t["primary"].iloc[0] * factor, color="black", ls="--", lw=1, label=f"teacher {teacher}"
                )
            if paper:
                pt = PAPER_TEACHER_SCORES[PAPER_TEACHER_SCORES["task"] == task]
                if len(pt):
                    ax.axhline(
                        pt["score"].iloc[0], color="gray", ls=":", lw=1, label="paper teacher / hollow: paper"
                    )
            ax.set_xscale("log")
            # parameter counts as 300k / 7M; minor ticks unlabelled, their default labels collide on a log axis
            ax.xaxis.set_major_formatter(EngFormatter(sep=""))
            ax.xaxis.set_minor_formatter(NullFormatter())
            ax.set_title(f"{task} / {arch}")
            ax.set_xlabel("student parameters")
            metric = PRIMARY_METRIC.get(task, "test_accuracy").removeprefix("test_")
            ax.set_ylabel(f"{metric} (%)" if factor == 100.0 else metric)
            ax.grid(True, which="both", alpha=0.3)
            ax.legend(fontsize=7)
    out_png = Path(out_png)
    out_png.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out_png, dpi=110)
    return out_png


# ------------------------------------------------------------------------------------------ notebooks


def run_notebooks(
    out_dir: Path,
    study: str,
    tracking_uri: str,
    notebooks: Sequence[str] | None = None,
    figures_dir: Path | None = None,
    timeout: int = 600,
    fresh_kernels: bool = False,
) -> list[Path]:
    """Execute the analysis notebooks headless (nbclient) against ``study`` at ``tracking_uri`` and write the
    executed copies into ``out_dir`` (the sources in notebooks/ stay output-free). Figures go to
    ``figures_dir`` (default ``out_dir/figures``).

    The kernel runs this very interpreter (a private ``python3`` kernelspec written by ipykernel for
    sys.executable), so the notebooks see the packages this process sees whatever kernelspecs the machine
    has. One kernel serves all notebooks, its namespace cleared (``%reset -f``) before each, so none can lean
    on another's variables while the imports are paid once; ``fresh_kernels`` restarts it instead. A failing
    cell raises nbclient's CellExecutionError after the partly executed notebook has been written."""
    import nbformat
    from ipykernel.kernelspec import write_kernel_spec
    from jupyter_client.kernelspec import KernelSpecManager
    from jupyter_client.manager import KernelManager
    from nbclient import NotebookClient
    from nbclient.exceptions import CellExecutionError

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    figures = Path(figures_dir) if figures_dir is not None else out_dir / "figures"
    env = dict(os.environ)
    env.update(
        STUDY=study,
        MLFLOW_TRACKING_URI=tracking_uri,
        FIGURES_DIR=str(figures),
        MLFLOW_DISABLE_TELEMETRY="true",
        MPLBACKEND="Agg",
        # the notebooks import orchestrator.analysis even when the project is not pip-installed
        PYTHONPATH=os.pathsep.join(p for p in (str(REPO_ROOT), os.environ.get("PYTHONPATH", "")) if p),
    )
    written = []
    with tempfile.TemporaryDirectory(prefix="kdstudy-kernels-") as kdir:
        write_kernel_spec(Path(kdir) / "python3")
        km = KernelManager(kernel_name="python3", kernel_spec_manager=KernelSpecManager(kernel_dirs=[kdir]))
        km.start_kernel(env=env, cwd=str(NOTEBOOK_DIR))
        try:
            for i, name in enumerate(notebooks or NOTEBOOKS):
                if i and fresh_kernels:
                    km.restart_kernel(now=True)  # same env and cwd
                elif i:
                    _reset_namespace(km, timeout)
                nb = nbformat.read(NOTEBOOK_DIR / name, as_version=4)
                client = NotebookClient(nb, km=km, timeout=timeout)
                try:
                    client.execute()
                except CellExecutionError:
                    nbformat.write(nb, out_dir / name)
                    raise
                finally:
                    if client.kc is not None:
                        client.kc.stop_channels()
                nbformat.write(nb, out_dir / name)
                written.append(out_dir / name)
        finally:
            km.shutdown_kernel(now=True)
    return written


def _reset_namespace(km: Any, timeout: int) -> None:
    kc = km.blocking_client()
    kc.start_channels()
    try:
        kc.wait_for_ready(timeout=timeout)
        reply = kc.execute_interactive("%reset -f", timeout=timeout, output_hook=lambda msg: None)
        if reply["content"]["status"] != "ok":
            raise RuntimeError(f"could not reset the kernel between notebooks: {reply['content']}")
    finally:
        kc.stop_channels()


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m orchestrator.analysis notebooks --study smoke --out runs/notebooks``: run every notebook headless
    against a study in MLflow (``MLFLOW_TRACKING_URI``, or the SQLite store under ``--storage``)."""
    import argparse

    p = argparse.ArgumentParser(prog="python -m orchestrator.analysis")
    sub = p.add_subparsers(dest="command", required=True)
    nb = sub.add_parser("notebooks", help="execute the analysis notebooks headless")
    nb.add_argument("--study", default=os.environ.get("STUDY", "smoke"))
    nb.add_argument("--out", default="runs/notebooks", help="where the executed copies and figures go")
    nb.add_argument(
        "--storage", default="runs", help="the study's storage, when MLFLOW_TRACKING_URI is unset"
    )
    args = p.parse_args(argv)
    uri = (
        os.environ.get("MLFLOW_TRACKING_URI")
        or f"sqlite:///{Path(args.storage).resolve() / 'mlflow' / 'mlflow.db'}"
    )
    for path in run_notebooks(Path(args.out), args.study, uri):
        print(f"executed {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
