"""The paper's Figure 2 numbers beside ours (``beside_paper``) and the figure itself (``figure2``)."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

import numpy as np
import pandas as pd

from orchestrator.analysis.load import (
    ARCH_ORDER,
    PRIMARY_METRIC,
    TASK_ORDER,
    default_teacher,
    student_runs,
    teacher_scores,
)
from orchestrator.analysis.stats import _method_key
from orchestrator.analysis.tables import size_key

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
