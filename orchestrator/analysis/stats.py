"""Statistics: Cliff's delta, Holm correction, seed-paired Wilcoxon comparisons, and the table helpers."""

from __future__ import annotations

import math
import warnings
from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np
import pandas as pd

from orchestrator.analysis.load import ARCH_ORDER, METHOD_ORDER, TASK_ORDER


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


# The exact two-sided Wilcoxon signed-rank test cannot go below 2 / 2**n with n nonzero pairs: under 6 pairs no
# outcome reaches p < 0.05, so no test is run. Cliff's delta is printed only where its Mann-Whitney test can reach
# p < 0.05: the exact two-sided minimum p, 2 / C(n_a + n_b, n_a), must be below 0.05 (``effect_testable``). With
# equal sides that takes 4 scores a side (2 / C(8, 4) = 0.029, ``MIN_EFFECT_N``); unequal sides can need fewer on
# the smaller one (3 vs 5: 0.036, 2 vs 8: 0.044). From 1 vs 1 it is +-1.
MIN_PAIRS = 6
MIN_EFFECT_N = 4
# Scores are ratios of counts (k / N), so two equal paired differences are equal; subtracted in floating point
# they are not (0.57 - 0.55 != 0.54 - 0.52) and the signed-rank test would rank true ties apart. Differences are
# rounded to this many decimals before they are tested, counted as zero or not, and averaged.
DIFF_DECIMALS = 10


def effect_testable(n_a: int, n_b: int, alpha: float = 0.05) -> bool:
    """Whether Cliff's delta of ``n_a`` vs ``n_b`` scores can be significant at all: the exact two-sided
    Mann-Whitney test's least p-value, 2 / C(n_a + n_b, n_a) (complete separation), is below ``alpha``."""
    return n_a > 0 and n_b > 0 and 2 / math.comb(n_a + n_b, n_a) < alpha


def not_testable(n: int | str) -> str:
    """The text tables print instead of a p-value or effect size the sample cannot resolve."""
    return f"not testable (n = {n})"


def paired_comparison(a: pd.Series, b: pd.Series, min_pairs: int = MIN_PAIRS) -> dict[str, Any]:
    """Compare two sets of scores indexed by their pairing key (seed, or a tuple of factors).

    Means/stds/counts use every score of each side; ``delta`` is the mean of the paired differences a - b (the
    keys on both sides only, NaN without any), so its sign agrees with the paired test; the Wilcoxon signed-rank
    test pairs the scores by index, on differences rounded to ``DIFF_DECIMALS`` (ties stay ties); Cliff's delta
    compares all scores of a with all of b. Never raises on small samples: fewer than ``min_pairs`` nonzero
    paired differences give p = NaN and ``test`` = "not testable (n = ...)"; sides too small for the effect to
    be significant (``effect_testable``) give cliffs_delta = NaN, ``note`` says so.
    """
    from scipy.stats import wilcoxon

    a = a.dropna().astype(float)
    b = b.dropna().astype(float)
    pairs = pd.concat({"a": a, "b": b}, axis=1, join="inner")
    n = len(pairs)
    diff = (pairs["a"] - pairs["b"]).round(DIFF_DECIMALS)
    nonzero = int((diff != 0).sum())
    notes = []
    if n < min_pairs:
        p, test = math.nan, not_testable(n)
    elif nonzero < min_pairs:
        p, test = math.nan, not_testable(f"{nonzero} nonzero of {n} pairs")
    else:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # scipy warns about ties; the exact/normal choice is scipy's
            p = float(wilcoxon(diff.to_numpy()).pvalue)
        test = f"p = {p:.3g}"
    delta_ab = cliffs_delta(a, b)
    if not effect_testable(len(a), len(b)):
        delta_ab = math.nan
        notes.append(f"Cliff's delta {not_testable(f'{len(a)} vs {len(b)}')}")
    return {
        "a_mean": a.mean() if len(a) else math.nan,
        "a_std": a.std() if len(a) > 1 else math.nan,
        "a_n": len(a),
        "b_mean": b.mean() if len(b) else math.nan,
        "b_std": b.std() if len(b) > 1 else math.nan,
        "b_n": len(b),
        "delta": float(diff.mean()) if n else math.nan,
        "n_pairs": n,
        "p_wilcoxon": p,
        "cliffs_delta": delta_ab,
        "test": test,
        "note": "; ".join(notes),
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
    # load_runs keeps one run per seed (the newest); a frame made otherwise may hold several: average them
    # rather than count the seed twice
    return frame.dropna(subset=["seed"]).groupby("seed")[value].mean()


def _seed_means(runs: pd.DataFrame, keys: list[str], value: str = "primary") -> pd.DataFrame:
    """One row per (``keys``, seed) of ``runs``: the mean ``value`` of the seed's runs (as ``_by_seed``), so that
    a mean or count over its rows is over seeds, never over runs."""
    return runs.dropna(subset=["seed"]).groupby([*keys, "seed"], as_index=False)[value].mean()


def _with_holm(rows: list[dict[str, Any]], columns: list[str], family: str | None = None) -> pd.DataFrame:
    """The rows as a frame with ``p_holm``: Holm over the rows' tested p-values, one family per value of the
    column ``family`` (all rows one family when None), and ``verdict``: "not testable (n = ...)", or
    "significant" / "not significant" at Holm-adjusted 0.05 with both p-values."""
    out = pd.DataFrame(rows, columns=columns)
    out["p_holm"] = pd.Series(dtype=float) if out.empty else math.nan
    if len(out):
        groups = out.groupby(family, sort=False).groups.values() if family else [out.index]
        for idx in groups:
            out.loc[idx, "p_holm"] = holm(out.loc[idx, "p_wilcoxon"])
    out["verdict"] = [_verdict(r) for r in out[["p_wilcoxon", "p_holm", "test"]].itertuples(index=False)]
    return out


def _verdict(row: Any) -> str:
    p, p_holm, test = row
    if not isinstance(p, float) or math.isnan(p):
        return str(test)
    word = "significant" if p_holm < 0.05 else "not significant"
    return f"{word} (p = {p:.3g}, Holm {p_holm:.3g})"


def unfinished_students(df: pd.DataFrame) -> pd.DataFrame:
    """The student trials of ``df`` that never finished (``load_runs``' rows whose ``status`` is not FINISHED:
    failed, diverged, still running or killed); empty for a frame without the column (one made by hand)."""
    if "status" not in df.columns:
        return df.iloc[0:0]
    return df[(df["stage"] == "student") & (df["status"] != "FINISHED")]


def withheld(
    sides: dict[str, tuple[pd.DataFrame, pd.DataFrame]], unit: Sequence[str] = ("seed",), word: str = "seeds"
) -> str:
    """Why a comparison of ``sides`` (name -> (its finished runs, its unfinished ones)) gives no verdict; "" when
    it may. Tests and means leave degenerate runs out (they are never findings), so a side with a seed at its
    majority baseline, or one that diverged or did not finish, would be judged on its survivors alone: a method
    that collapses on half its seeds could come out a significant winner on the other half. Counted in ``unit``s
    (the pairing key: a seed, or a (student, teacher, seed) block), named ``word``, and only the units another
    side has too (finished or not): those the comparison pairs."""
    cols = list(unit)

    def units(frame: pd.DataFrame) -> set[tuple]:
        return set(frame[cols].dropna().itertuples(index=False, name=None))

    every = {name: units(runs) | units(open_) for name, (runs, open_) in sides.items()}
    parts = []
    for name, (runs, unfinished) in sides.items():
        paired = set().union(*(u for other, u in every.items() if other != name)) & every[name]
        deg = len(units(runs[runs["degenerate"].astype(bool)]) & paired)
        diverged = unfinished["diverged"].fillna(False).astype(bool) if "diverged" in unfinished else None
        n_div = len(units(unfinished[diverged]) & paired) if diverged is not None else 0
        n_open = len(units(unfinished) & paired) - n_div
        total = len(paired)
        what = [
            f"{deg} at the majority baseline" if deg else "",
            f"{n_div} diverged" if n_div else "",
            f"{n_open} not finished" if n_open else "",
        ]
        if any(what):
            parts.append(f"{name} {', '.join(w for w in what if w)} of {total} {word}")
    return "; ".join(parts)


def withhold(stats: dict[str, Any], why: str) -> dict[str, Any]:
    """``stats`` (``paired_comparison``'s) without a p-value when ``why``: ``test`` says "no verdict: ..." and the
    row is left out of the Holm family; means and delta stay, over the seeds that count."""
    if why:
        stats = {**stats, "p_wilcoxon": math.nan, "test": f"no verdict: {why}"}
    return stats


def _split_degenerate(runs: pd.DataFrame) -> tuple[pd.DataFrame, int]:
    """The non-degenerate runs and how many were left out."""
    bad = runs["degenerate"].astype(bool)
    return runs[~bad], int(bad.sum())


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


_STAT_COLUMNS = ["delta", "n_pairs", "p_wilcoxon", "cliffs_delta", "test", "note", "n_degenerate"]
