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


_STAT_COLUMNS = ["delta", "n_pairs", "p_wilcoxon", "cliffs_delta", "note"]
