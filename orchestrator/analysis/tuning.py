"""The tuning stage as MLflow recorded it: every tuning trial (``stage=tune``), each cell's best configuration,
how far tuning moved each method from its untuned default, and the tuning curves. Reads MLflow only.

A cell's best run is the one its final runs were trained with (tag ``tuned_from`` of the cell's newest FINISHED
final run): the study picks it among the cell's first ``tuning.samples`` runs, which a frame of tuning runs alone
cannot tell once ``samples`` was lowered after a search. A cell without final runs yet falls back to the rule: its
FINISHED tuning run with the highest ``best_val_selection_score`` (ties: earliest start, then run id).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from tasks.base import DEGENERATE_MARGIN

SCORE = "best_val_selection_score"
# What a constant prediction scores on validation (Task.selection_baseline); a run at most this + DEGENERATE_MARGIN
# learnt nothing in its epochs, and a cell whose best run is such has found no configuration that learns.
BASELINE = "val_baseline_selection_score"
CELL_COLUMNS = ("cell", "task", "teacher", "student", "method", "labels")  # labels: a study's labels level


def load_tuning(study: str, tracking_uri: str | None = None) -> pd.DataFrame:
    """One row per FINISHED tuning run: run_id, start_time, the cell's factors, trial_key, score, ``baseline``
    (what a constant prediction scores on validation; NaN for runs made before it was recorded), ``degenerate``
    (score at most baseline + ``DEGENERATE_MARGIN``), stopped_early, tuned (the MLflow param names it sampled),
    ``chosen`` (the cell's final runs were trained with it), ``trial`` (its index in the cell, by start) and one
    column per tuned param and per ``default.<param>``."""
    from mlflow import MlflowClient

    client = MlflowClient(tracking_uri=tracking_uri)
    exp = client.get_experiment_by_name(study)
    if exp is None:
        raise LookupError(f"no MLflow experiment named {study!r} at {client.tracking_uri}")
    rows = [_row(r) for r in _search(client, exp.experiment_id, "tune")]
    base = ["run_id", "start_time", *CELL_COLUMNS, "trial_key", SCORE, "baseline", "degenerate"]
    base += ["stopped_early", "tuned", "chosen"]
    df = pd.DataFrame(rows)
    if df.empty:
        return pd.DataFrame(columns=[*base, "trial"])
    df["degenerate"] = (df[SCORE] <= df["baseline"] + DEGENERATE_MARGIN).fillna(False).astype(bool)
    df["chosen"] = df["run_id"].isin(_tuned_from(client, exp.experiment_id))
    df = df.sort_values(["cell", "start_time", "run_id"], ignore_index=True)
    df["trial"] = df.groupby("cell").cumcount()
    return df


def _search(client: Any, experiment_id: str, stage: str) -> list[Any]:
    """The FINISHED runs of ``stage``, every page (a full study has thousands of tuning runs)."""
    from orchestrator.core.tracking import runs_by_stage

    return runs_by_stage(client, experiment_id, stage, "FINISHED")


def _tuned_from(client: Any, experiment_id: str) -> set[str]:
    """The tuning run each cell's newest FINISHED final run was trained with (its tag ``tuned_from``): after a
    search was redone, the finals of the old best are older and do not count, as in ``load_runs``."""
    finals = _search(client, experiment_id, "student")
    newest: dict[str, Any] = {}
    for run in sorted(finals, key=lambda r: (r.info.start_time or 0, r.info.run_id)):
        if run.data.tags.get("tuned_from"):
            newest[run.data.tags.get("cell", "")] = run.data.tags["tuned_from"]
    return set(newest.values())


def _row(run: Any) -> dict[str, Any]:
    tags, params = run.data.tags, run.data.params
    tuned = [n for n in tags.get("tuned_params", "").split(",") if n]
    row: dict[str, Any] = {
        "run_id": run.info.run_id,
        "start_time": run.info.start_time,
        **{c: tags.get(c, "all" if c == "labels" else "none") for c in CELL_COLUMNS},
        "trial_key": tags.get("trial_key"),
        SCORE: run.data.metrics.get(SCORE, np.nan),
        "baseline": run.data.metrics.get(BASELINE, np.nan),
        "stopped_early": tags.get("stopped_early") == "true",
        "tuned": ",".join(tuned),
    }
    for name in tuned:
        row[name] = _number(params.get(name))
        row[f"default.{name}"] = _number(params.get(f"default.{name}"))
    return row


def _number(text: str | None) -> Any:
    try:
        return float(text) if text not in (None, "None") else np.nan
    except ValueError:
        return text


def best_params(df: pd.DataFrame) -> pd.DataFrame:
    """Each cell's best tuning run: the cell's factors, run_id, score, trials, ``chosen_by`` (``finals``: the run
    its final runs were trained with; ``score``: no final run yet, the highest score), ``degenerate`` (the best at
    a constant's score: the search found nothing that learns) and the tuned values."""
    columns = [*CELL_COLUMNS, "run_id", SCORE, "trials", "chosen_by", "degenerate"]
    if df.empty:
        return pd.DataFrame(columns=columns)
    chosen = df["chosen"] if "chosen" in df else pd.Series(False, index=df.index)
    # the finals' choice first, then the rule: highest score, earliest start, run id
    ranked = df.assign(_first=~chosen.astype(bool), _neg=-df[SCORE].fillna(-np.inf)).sort_values(
        ["cell", "_first", "_neg", "start_time", "run_id"]
    )
    best = ranked.groupby("cell", as_index=False).first()
    best["chosen_by"] = np.where(best["_first"], "score", "finals")
    best["trials"] = best["cell"].map(df.groupby("cell").size())
    if "degenerate" not in best:  # a frame made without the column
        best["degenerate"] = False
    params = sorted({n for t in df["tuned"] for n in t.split(",") if n})
    return best[[*columns, *params]].reset_index(drop=True)


def moved_from_default(df: pd.DataFrame) -> pd.DataFrame:
    """Per cell and tuned hyperparameter: the untuned default, the best run's value, and their ratio (tuned /
    default; for lr the factor tuning moved the learning rate by)."""
    best = best_params(df)
    rows = []
    for _, b in best.iterrows():
        run = df[df["run_id"] == b["run_id"]].iloc[0]
        for name in (n for n in run["tuned"].split(",") if n):
            default, tuned = run.get(f"default.{name}"), run.get(name)
            ratio = tuned / default if isinstance(default, float) and default else np.nan
            rows.append(
                {
                    **{c: b[c] for c in CELL_COLUMNS},
                    "param": name,
                    "default": default,
                    "tuned": tuned,
                    "ratio": ratio,
                }
            )
    return pd.DataFrame(rows, columns=[*CELL_COLUMNS, "param", "default", "tuned", "ratio"])


def moved_by_method(df: pd.DataFrame) -> pd.DataFrame:
    """The geometric mean of tuned / default per method and hyperparameter, over cells (1 = not moved)."""
    moved = moved_from_default(df).dropna(subset=["ratio"])
    moved = moved[moved["ratio"] > 0]
    out = moved.groupby(["method", "param"])["ratio"].agg(lambda r: float(np.exp(np.log(r).mean())))
    return out.rename("geo_mean_ratio").reset_index()


def tuning_curves(df: pd.DataFrame) -> pd.DataFrame:
    """Best-so-far validation selection score by trial index (start order) in each cell."""
    if df.empty:
        return pd.DataFrame(columns=[*CELL_COLUMNS, "trial", SCORE, "best_so_far"])
    out = df.sort_values(["cell", "trial"])[[*CELL_COLUMNS, "trial", SCORE]].copy()
    out["best_so_far"] = out.groupby("cell")[SCORE].cummax()
    return out.reset_index(drop=True)


def plot_tuning_curves(df: pd.DataFrame) -> Any:
    """One panel per task: the best-so-far curve of every cell (labelled student / method / teacher)."""
    import matplotlib.pyplot as plt

    curves = tuning_curves(df)
    tasks = sorted(curves["task"].unique()) or ["(no tuning runs)"]
    fig, axes = plt.subplots(1, len(tasks), figsize=(5 * len(tasks), 3.6), squeeze=False)
    for ax, task in zip(axes[0], tasks, strict=True):
        for _cell, c in curves[curves["task"] == task].groupby("cell"):
            first = c.iloc[0]
            label = f"{first['student']} / {first['method']} / {first['teacher']}"
            ax.plot(c["trial"] + 1, c["best_so_far"], marker="o", label=label)
        ax.set(title=task, xlabel="tuning trial", ylabel="best validation selection score so far")
        if ax.lines:
            ax.legend(fontsize=7)
    fig.tight_layout()
    return fig
