"""The tuning stage as MLflow recorded it: every tuning draw (``stage=tune``), each cell's best configuration, how
far tuning moved each method from its untuned default, and the tuning curves. Reads MLflow only.

Every draw a cell spent is a row: FINISHED runs (a draw that repeated an earlier configuration is a run of its own,
``duplicate_of`` the earlier one) and diverged ones (``status`` FAILED, ``diverged``, score NaN), so the trial
counts and curves show the same ``samples`` per cell whatever diverged. A draw that failed for another reason is a
row too, but no sample (``spent`` False, ``trial`` NA): the study draws it again. Only the cells of the study's
current version are loaded: those its last run named (tag ``tuning_cells`` of the study run), else the newest cell
of each (task, teacher, student, method, labels); ``all_cells=True`` keeps the cells of earlier versions (another
search space or budget) too, and ``df.attrs["stale_cells"]`` counts those left out.

A cell's best run is the one its final runs were trained with (tag ``tuned_from`` of the cell's newest FINISHED
final run): the study picks it among the cell's first ``tuning.samples`` runs, which a frame of tuning runs alone
cannot tell once ``samples`` was lowered after a search. A cell without final runs yet falls back to the rule: its
FINISHED tuning run with the highest ``best_val_selection_score`` (ties: earliest start, then run id).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from orchestrator.analysis.progress import is_diverged
from tasks.base import DEGENERATE_MARGIN

SCORE = "best_val_selection_score"
# What a constant prediction scores on validation (Task.selection_baseline); a run at most this + DEGENERATE_MARGIN
# learnt nothing in its epochs, and a cell whose best run is such has found no configuration that learns.
BASELINE = "val_baseline_selection_score"
CELL_COLUMNS = ("cell", "task", "teacher", "student", "method", "labels")  # labels: a study's labels level
FACTORS = [c for c in CELL_COLUMNS if c != "cell"]


def load_tuning(study: str, tracking_uri: str | None = None, all_cells: bool = False) -> pd.DataFrame:
    """One row per tuning draw (FINISHED or FAILED run) of the study's current cells (``all_cells``: every cell):
    run_id, start_time, the cell's factors, trial_key, score (NaN unless FINISHED), ``baseline`` (what a constant
    prediction scores on validation; NaN for runs made before it was recorded), ``degenerate`` (score at most
    baseline + ``DEGENERATE_MARGIN``), ``status``, ``diverged``, ``spent`` (the draw counts against the cell's
    budget: FINISHED or diverged), ``duplicate_of`` (the earlier run a repeated configuration was not trained
    again after; "" for a trained one), stopped_early, tuned (the MLflow param names it sampled), ``chosen`` (the
    cell's final runs were trained with it), ``trial`` (its index among the cell's spent draws, by start; NA for a
    draw that is no sample) and one column per tuned param and per ``default.<param>``."""
    from mlflow import MlflowClient

    client = MlflowClient(tracking_uri=tracking_uri)
    exp = client.get_experiment_by_name(study)
    if exp is None:
        raise LookupError(f"no MLflow experiment named {study!r} at {client.tracking_uri}")
    runs = [
        r for r in _search(client, exp.experiment_id, "tune", None) if r.info.status in ("FINISHED", "FAILED")
    ]
    base = ["run_id", "start_time", *CELL_COLUMNS, "trial_key", SCORE, "baseline", "degenerate", "status"]
    base += ["diverged", "spent", "duplicate_of", "stopped_early", "tuned", "chosen"]
    df = pd.DataFrame([_row(r) for r in _one_run_per_diverged_draw(runs)])
    if df.empty:
        return pd.DataFrame(columns=[*base, "trial"])
    n_cells = df["cell"].nunique()
    if not all_cells:
        df = df[df["cell"].isin(_current_cells(client, exp.experiment_id, df))]
    df["degenerate"] = (df[SCORE] <= df["baseline"] + DEGENERATE_MARGIN).fillna(False).astype(bool)
    df["chosen"] = df["run_id"].isin(_tuned_from(client, exp.experiment_id))
    df = df.sort_values(["cell", "start_time", "run_id"], ignore_index=True)
    df["trial"] = pd.array([pd.NA] * len(df), dtype="Int64")
    df.loc[df["spent"], "trial"] = df[df["spent"]].groupby("cell").cumcount()
    df.attrs["stale_cells"] = n_cells - df["cell"].nunique()
    return df


def _search(client: Any, experiment_id: str, stage: str, status: str | None = "FINISHED") -> list[Any]:
    """The runs of ``stage`` (FINISHED by default), every page (a full study has thousands of tuning runs)."""
    from orchestrator.core.tracking import runs_by_stage

    return runs_by_stage(client, experiment_id, stage, status)


def _one_run_per_diverged_draw(runs: list[Any]) -> list[Any]:
    """``runs`` less the later runs of a diverged draw (same configuration and Tune trial: made before a retry of
    a diverged draw stopped without a run), as the study counts its samples (sweep/tuning.diverged_runs)."""
    seen, out = set(), []
    for r in sorted(runs, key=lambda r: (r.info.start_time or 0, r.info.run_id)):
        draw = (r.data.tags.get("trial_key"), r.data.tags.get("tune_trial_id", ""))
        if is_diverged(r.info.status, r.data.tags.get("error")):
            if draw in seen:
                continue
            seen.add(draw)
        out.append(r)
    return out


def _current_cells(client: Any, experiment_id: str, df: pd.DataFrame) -> set[str]:
    """The cells of the study's current version: tag ``tuning_cells`` of its study run (written by each run of
    the study), else the cell of each (task, teacher, student, method, labels) with the newest tuning run."""
    study = _search(client, experiment_id, "study", None)
    named = study[0].data.tags.get("tuning_cells") if study else None
    if named:
        return set(named.split(","))
    newest = df.sort_values(["start_time", "run_id"]).groupby(FACTORS)["cell"].last()
    return set(newest)


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
    tags, params, status = run.data.tags, run.data.params, run.info.status
    tuned = [n for n in tags.get("tuned_params", "").split(",") if n]
    diverged = is_diverged(status, tags.get("error"))
    row: dict[str, Any] = {
        "run_id": run.info.run_id,
        "start_time": run.info.start_time,
        **{c: tags.get(c, "all" if c == "labels" else "none") for c in CELL_COLUMNS},
        "trial_key": tags.get("trial_key"),
        # a run that failed may have logged its running best before it did: no result of the draw
        SCORE: run.data.metrics.get(SCORE, np.nan) if status == "FINISHED" else np.nan,
        "baseline": run.data.metrics.get(BASELINE, np.nan),
        "status": status,
        "diverged": diverged,
        "spent": status == "FINISHED" or diverged,
        "duplicate_of": tags.get("duplicate_of", ""),
        "stopped_early": tags.get("stopped_early") == "true",
        "tuned": ",".join(tuned),
    }
    for name in tuned:
        row[name] = _number(params.get(name))
        row[f"default.{name}"] = _number(params.get(f"default.{name}"))
    return row


LITERALS = {"True": True, "False": False}  # a boolean as Python's str() logged it


def _number(text: str | None) -> Any:
    if text in LITERALS:
        return LITERALS[text]
    try:
        return float(text) if text not in (None, "None") else np.nan
    except ValueError:
        return text


def _spent(df: pd.DataFrame) -> pd.Series:
    """The rows that are samples of their cell (a frame made without ``spent``: all)."""
    return df["spent"].astype(bool) if "spent" in df else pd.Series(True, index=df.index)


def best_params(df: pd.DataFrame) -> pd.DataFrame:
    """Each cell's best tuning run: the cell's factors, run_id, score, ``trials`` (the samples it spent, diverged
    ones included), ``diverged`` (how many of them diverged), ``chosen_by`` (``finals``: the run its final runs
    were trained with; ``score``: no final run yet, the highest score; ``diverged``: every sample diverged, no run
    and no configuration), ``degenerate`` (the best at a constant's score: the search found nothing that learns)
    and the tuned values."""
    columns = [*CELL_COLUMNS, "run_id", SCORE, "trials", "diverged", "chosen_by", "degenerate"]
    if df.empty:
        return pd.DataFrame(columns=columns)
    spent = df[_spent(df)]
    done = df[df["status"] == "FINISHED"] if "status" in df else df
    chosen = done["chosen"] if "chosen" in done else pd.Series(False, index=done.index)
    # the finals' choice first, then the rule: highest score, earliest start, run id
    ranked = done.assign(_first=~chosen.astype(bool), _neg=-done[SCORE].fillna(-np.inf)).sort_values(
        ["cell", "_first", "_neg", "start_time", "run_id"]
    )
    best = ranked.groupby("cell", as_index=False).first()
    best["chosen_by"] = np.where(best["_first"], "score", "finals")
    lost = spent[~spent["cell"].isin(best["cell"])].groupby("cell", as_index=False).first()
    if len(lost):  # every sample of the cell diverged: no best run
        lost = lost[list(CELL_COLUMNS)].assign(run_id=None, chosen_by="diverged", degenerate=False)
        best = pd.concat([best, lost], ignore_index=True)  # its score and tuned values: NaN
    best["trials"] = best["cell"].map(spent.groupby("cell").size()).fillna(0).astype(int)
    n_div = spent[spent["diverged"].astype(bool)].groupby("cell").size() if "diverged" in spent else {}
    best["diverged"] = best["cell"].map(n_div).fillna(0).astype(int)
    if "degenerate" not in best:  # a frame made without the column
        best["degenerate"] = False
    best["degenerate"] = best["degenerate"].fillna(False).astype(bool)
    params = sorted({n for t in df["tuned"] for n in t.split(",") if n})
    for name in params:
        if name not in best:
            best[name] = np.nan
    return best.sort_values("cell")[[*columns, *params]].reset_index(drop=True)


def moved_from_default(df: pd.DataFrame) -> pd.DataFrame:
    """Per cell and tuned hyperparameter: the untuned default, the best run's value, and their ratio (tuned /
    default; for lr the factor tuning moved the learning rate by)."""
    best = best_params(df)
    rows = []
    for _, b in best[best["run_id"].notna()].iterrows():  # a cell whose every sample diverged has no value
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
    """Best-so-far validation selection score by trial index (start order) in each cell, over every sample the
    cell spent: a diverged one (score NaN) keeps the best so far (NaN until a sample finished), so every cell's
    curve is as long as its budget."""
    if df.empty:
        return pd.DataFrame(columns=[*CELL_COLUMNS, "trial", SCORE, "best_so_far"])
    out = df[_spent(df)].sort_values(["cell", "trial"])[[*CELL_COLUMNS, "trial", SCORE]].copy()
    out["trial"] = out["trial"].astype(int)
    out["best_so_far"] = out.groupby("cell")[SCORE].transform(lambda x: x.cummax().ffill())
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
