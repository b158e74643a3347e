"""The paper's Figure 2 numbers beside ours (``beside_paper``) and the figure itself (``figure2``)."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from orchestrator.analysis.load import (
    ARCH_ORDER,
    NONE,
    TASK_ORDER,
    default_teacher,
    label_levels,
    per_labels_level,
    regime,
    student_runs,
    teacher_scores,
    valid_runs,
    why_none,
)
from orchestrator.analysis.notebooks import NotApplicable
from orchestrator.analysis.stats import _method_key, _seed_means
from orchestrator.analysis.tables import size_key

# The paper's Figure 2 (UniXcoder teacher), read off the plot (+-0.2), transcribed in docs/STUDY.md.
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


@per_labels_level
def beside_paper(df: pd.DataFrame, teacher: str | None = None) -> pd.DataFrame:
    """Every cell of the paper's Figure 2 with our mean (percent) beside it: columns task, arch, size, method,
    paper, ours, n (our non-degenerate seeds), diff = ours - paper. ``teacher``: which of our teachers stands for UniXcoder
    (default: ``default_teacher``); FT rows use FT. NaN where the study lacks the cell."""
    teacher = teacher or default_teacher(df)
    s = valid_runs(student_runs(df))
    s = s[(s["method"] == "ft") | (s["teacher"] == teacher)].copy()
    factor = percent_factor(df.loc[df["stage"].isin(["student", "teacher_finetune"]), "primary"])
    s["size"] = s["student"].map(size_key)
    keys = ["task", "student_arch", "size", "method"]
    # over seeds: a rerun seed's runs are averaged first (as in compare_to_ft)
    ours = (
        _seed_means(s, keys)
        .groupby(keys, as_index=False)
        .agg(ours=("primary", "mean"), n=("primary", "size"))
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


def _metric_label(runs: pd.DataFrame) -> str:
    """The headline metric the runs are scored by (``load_runs``'s ``metric``), e.g. ``macro_f1``."""
    names = sorted(set(runs["metric"].dropna()) - {"unknown", NONE}) if "metric" in runs else []
    return " / ".join(names) or "score"


def _dodge(k: int, m: int, width: float = 0.06) -> float:
    """The x factor that sets the k-th of m methods beside the others on a log axis (0.06 decades apart)."""
    return float(10 ** ((k - (m - 1) / 2) * width))


def _panel(
    ax, runs: pd.DataFrame, methods: list[str], factor: float, paper_rows: pd.DataFrame | None
) -> None:
    """One (teacher, task, architecture) panel: mean +- std of the non-degenerate runs per method and student
    size, methods dodged sideways; degenerate runs as grey crosses (at the baseline when below it)."""
    ok = runs[~runs["degenerate"]]
    agg = ok.groupby(["student", "method"], as_index=False).agg(
        params=("student_params", "mean"), mean=("primary", "mean"), std=("primary", "std")
    )
    for k, method in enumerate(methods):
        color, marker = _METHOD_STYLE.get(method, ("black", "x"))
        m = agg[agg["method"] == method].sort_values("params")
        x = m["params"].astype(float) * _dodge(k, len(methods))
        ax.errorbar(
            x,
            m["mean"] * factor,
            yerr=(m["std"] * factor).fillna(0),
            color=color,
            marker=marker,
            capsize=3,
            label=method.upper(),
        )
        if paper_rows is not None:
            p = paper_rows[paper_rows["method"] == method]
            ax.scatter(p["params"], p["score"], facecolors="none", edgecolors=color, marker=marker)
        bad = runs[runs["degenerate"] & (runs["method"] == method)]
        if len(bad):
            y = np.maximum(bad["primary"], bad["baseline"]) * factor
            ax.scatter(
                bad["student_params"].astype(float) * _dodge(k, len(methods)),
                y,
                color="gray",
                marker="x",
                zorder=3,
                label=f"{method.upper()} degenerate ({len(bad)})",
            )


def _row(
    df: pd.DataFrame, s: pd.DataFrame, teacher: str, task: str, level: str | None
) -> tuple[pd.DataFrame, pd.DataFrame, str]:
    """One panel row's student runs (FT and the teacher's KD runs of the task), the teacher's score and, with a
    labels factor (``level``) or unlabelled inputs, the regime in words for the title (`` | 500 labels + ...``)."""
    if level is not None:
        df, s = df[df["labels"] == level], s[s["labels"] == level]
    runs = s[(s["task"] == task) & ((s["method"] == "ft") | (s["teacher"] == teacher))]
    tscore = teacher_scores(df)
    words = regime(runs, task, level or str(runs["labels"].iloc[0])) if "labels" in runs and len(runs) else ""
    show = level is not None or "unlabelled" in words
    return (
        runs,
        tscore[(tscore["task"] == task) & (tscore["teacher"] == teacher)],
        f" | {words}" if show else "",
    )


def figure2(
    df: pd.DataFrame,
    out_png: Path,
    paper: bool = False,
    teacher: str | None = None,
    study: str | None = None,
) -> Path:
    """``build_figure2`` written to ``out_png`` (folders created); returns ``out_png``."""
    fig = build_figure2(df, paper, teacher, study)
    out_png = Path(out_png)
    out_png.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out_png, dpi=100)
    return out_png


def _size_axis(ax: Any, runs: pd.DataFrame) -> None:
    """Figure 2's x axis: student parameters on a log scale."""
    from matplotlib.ticker import EngFormatter, FixedLocator, NullFormatter

    ax.set_xscale("log")
    sizes = sorted(set(runs["student_params"].dropna().astype(float)))
    # within a decade no power of ten shows: label the students' sizes
    if sizes and sizes[-1] < 10 * sizes[0]:
        ax.xaxis.set_major_locator(FixedLocator(sizes))
    # parameter counts as 300k / 7M; minor ticks unlabelled, their default labels collide on a log axis
    ax.xaxis.set_major_formatter(EngFormatter(sep=""))
    ax.xaxis.set_minor_formatter(NullFormatter())


def build_figure2(
    df: pd.DataFrame, paper: bool = False, teacher: str | None = None, study: str | None = None
):
    """The paper's Figure 2 for this study: primary score (percent) vs student parameters (log x), one line per
    method (mean +- std over the non-degenerate seeds; methods dodged sideways so overlapping ones stay visible),
    the teacher's score as a dashed line; one panel row per (teacher, task), one column per architecture, every
    KD teacher of the study shown (``teacher``: only that one). Each panel's caption names the study, the teacher
    and n (runs, of which degenerate: grey crosses); its y axis starts at the task's majority baseline (dotted).
    With ``paper`` the paper's numbers are drawn as hollow markers at the nominal sizes and its teacher as a
    dotted grey line. Returns the matplotlib Figure (Agg canvas, no pyplot state)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    s = student_runs(df)
    if s.empty:  # the notebook says so and the command goes on (a study whose every trial failed, say)
        raise NotApplicable(why_none(df, "no student runs to plot"))
    teachers = [teacher] if teacher else sorted(set(s["teacher"]) - {NONE}) or [NONE]
    factor = percent_factor(df.loc[df["stage"].isin(["student", "teacher_finetune"]), "primary"])
    tasks = [t for t in TASK_ORDER if t in set(s["task"])] + sorted(set(s["task"]) - set(TASK_ORDER))
    archs = [a for a in ARCH_ORDER if a in set(s["student_arch"])] + sorted(
        set(s["student_arch"]) - set(ARCH_ORDER)
    )
    levels = label_levels(df)
    rows = [(t, task, level) for t in teachers for task in tasks for level in levels]
    # one column (a single architecture) still gets room for its panel title and the figure's title
    fig = Figure(figsize=(max(5.0 * len(archs), 7.5), 3.8 * len(rows)), layout="constrained")
    FigureCanvasAgg(fig)
    fig.suptitle(f"Figure 2, study {study or '?'}: score vs student size\n(teachers: {', '.join(teachers)})")
    axes = fig.subplots(len(rows), len(archs), squeeze=False)
    for i, (t_name, task, level) in enumerate(rows):
        runs_t, t, words = _row(df, s, t_name, task, level if len(levels) > 1 else None)
        for j, arch in enumerate(archs):
            ax = axes[i][j]
            runs = runs_t[runs_t["student_arch"] == arch]
            methods = sorted(runs["method"].unique(), key=_method_key)
            paper_rows = None
            if paper:
                paper_rows = PAPER_FIGURE2[(PAPER_FIGURE2["task"] == task) & (PAPER_FIGURE2["arch"] == arch)]
            _panel(ax, runs, methods, factor, paper_rows)
            if len(t):
                deg = " (degenerate)" if t["degenerate"].iloc[0] else ""
                ax.axhline(
                    t["primary"].iloc[0] * factor,
                    color="black",
                    ls="--",
                    lw=1,
                    label=f"teacher {t_name}{deg}",
                )
            if paper:
                pt = PAPER_TEACHER_SCORES[PAPER_TEACHER_SCORES["task"] == task]
                if len(pt):
                    ax.axhline(
                        pt["score"].iloc[0], color="gray", ls=":", lw=1, label="paper teacher / hollow: paper"
                    )
            base = runs_t["baseline"].dropna()
            if len(base):
                ax.axhline(base.iloc[0] * factor, color="tab:purple", ls=":", lw=1, label="majority baseline")
                low, top = base.iloc[0] * factor, ax.get_ylim()[1]
                ax.set_ylim(bottom=low - 0.02 * (top - low))  # the dotted baseline just inside the axes
            _size_axis(ax, runs)
            n_bad = int(runs["degenerate"].sum())
            ax.set_title(
                f"{study or '?'} | teacher {t_name} | {task} / {arch}{words}\nn = {len(runs)} runs, "
                f"{n_bad} degenerate",
                fontsize=9,
            )
            ax.set_xlabel("student parameters")
            metric = _metric_label(runs_t)
            ax.set_ylabel(f"{metric} (%)" if factor == 100.0 else metric)
            ax.grid(True, which="both", alpha=0.3)
            ax.legend(fontsize=6)
    return fig
