"""Analysis of a completion study (``task=completion``) in MLflow: the poster's table, frozen vs in-training, size.

``load_completion_runs`` gives one row per FINISHED completion trial (its newest run: ``latest_completion_runs``;
the teacher runs too, ``stage=teacher``);
``poster_table`` the DISTIL-CodeGPT poster's table (parameters, size, speed, ES, EM per student, the teacher as the
baseline row) with the poster's numbers beside ours when asked; ``compare_modes`` every teacher mode and the LM-only
baseline side by side per student (frozen = ``cached``); ``plot_size_curve`` ES and EM against student size.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

# The poster (docs/STUDY.md, Study 2): params M, size MB, samples/s, ES, EM. "baseline" is the 12-layer teacher.
POSTER = pd.DataFrame(
    [
        ("teacher", 124, 510, 26, 39.1, 14.5),
        ("gpt2-12l", 124, 510, 24, 30.3, 6.4),
        ("gpt2-10l", 110, 450, 27, 29.5, 6.1),
        ("gpt2-8l", 96, 390, 31, 29.6, 6.3),
        ("gpt2-6l", 82, 340, 36, 28.7, 6.4),
        ("gpt2-4l", 68, 280, 43, 27.6, 5.9),
    ],
    columns=["student", "poster_params_m", "poster_mb", "poster_samples_per_s", "poster_es", "poster_em"],
).set_index("student")
METRICS = (
    "test_es",
    "test_em",
    "test_score",
    "best_val_ppl",
    "student_params",
    "teacher_params",
    "model_mb",
    "inference_samples_per_s",
    "generated_tokens_per_s",
    "train_seconds",
    "teacher_seconds",
    "teacher_test_es",
    "teacher_test_em",
)
TAGS = ("stage", "teacher", "student", "student_init", "teacher_mode", "method", "seed", "codexglue_version")
MODE_ORDER = ("cached", "cached-topk", "online", "in_training", "none")


def load_completion_runs(study: str, tracking_uri: str | None = None) -> pd.DataFrame:
    """FINISHED ``task=completion`` runs of the experiment ``study``, one per trial (``latest_completion_runs``;
    ``attrs["n_superseded"]`` counts the older runs left out); an empty frame when it has none. LookupError for
    a deleted experiment: its runs are no study to analyse."""
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri)
    exp = client.get_experiment_by_name(study)
    if exp is not None and exp.lifecycle_stage != "active":
        raise LookupError(f"the MLflow experiment {study!r} was deleted: restore it to analyse it")
    rows: list[dict[str, Any]] = []
    if exp is not None:
        flt = "tags.task = 'completion' and attributes.status = 'FINISHED' and tags.stage != 'study'"
        token = None
        while True:
            page = client.search_runs([exp.experiment_id], flt, max_results=1000, page_token=token)
            for r in page:
                row = {t: r.data.tags.get(t, "") for t in (*TAGS, "trial_key")}
                row.update(run_id=r.info.run_id, start_time=r.info.start_time)
                row.update({m: r.data.metrics.get(m, np.nan) for m in METRICS})
                rows.append(row)
            token = page.token
            if not token:
                break
    df = pd.DataFrame(rows, columns=[*TAGS, *METRICS, "trial_key", "run_id", "start_time"])
    df["seed"] = pd.to_numeric(df["seed"], errors="coerce").astype("Int64")
    df["layers"] = df["student"].str.extract(r"gpt2-(\d+)l", expand=False).astype(float)
    for m in METRICS:
        df[m] = pd.to_numeric(df[m], errors="coerce").astype(float)
    return latest_completion_runs(df)


def latest_completion_runs(df: pd.DataFrame) -> pd.DataFrame:
    """``df`` with one run per trial: the newest (``start_time``) of the runs sharing a ``trial_key`` tag, or, for
    runs without one, sharing every tag of ``TAGS`` (a student run whose seed is unknown is kept: no rerun of
    another). A trial finished twice (rerun, or its recipe changed under the same factors) otherwise counts
    twice in every mean and in ``seeds``. ``attrs["n_superseded"]`` counts the older runs left out."""
    if df.empty:
        df.attrs["n_superseded"] = 0
        return df
    key = df["trial_key"].fillna("").astype(str)
    factors = df[list(TAGS)].map(str).agg("|".join, axis=1)
    key = key.where(key != "", "factors:" + factors)
    unknown_seed = (df["stage"] == "student") & df["seed"].isna() & (df["trial_key"].fillna("") == "")
    order = df.assign(_key=key).sort_values(["start_time", "run_id"], kind="stable")
    dup = order[~unknown_seed.loc[order.index]].duplicated("_key", keep="last")
    older = dup.index[dup]
    out = df.drop(index=older).reset_index(drop=True)
    out.attrs["n_superseded"] = int(len(older))
    return out


def _per_student(df: pd.DataFrame) -> pd.DataFrame:
    cols = {
        "params_m": ("student_params", lambda s: s.mean() / 1e6),
        "mb": ("model_mb", "mean"),
        "samples_per_s": ("inference_samples_per_s", "mean"),
        "tokens_per_s": ("generated_tokens_per_s", "mean"),
        "es": ("test_es", "mean"),
        "es_sd": ("test_es", "std"),
        "em": ("test_em", "mean"),
        "val_ppl": ("best_val_ppl", "mean"),
        "seeds": ("seed", "count"),
    }
    return df.groupby("student").agg(**cols)


POSTER_DATA = ("codexglue-2020", "codexglue-2021")  # the line-level sets the poster's figures come from


def poster_comparable(df: pd.DataFrame) -> tuple[bool, str]:
    """Whether the poster's figures may stand beside these runs, and why: only when every run was scored on
    CodeXGLUE's own line-level set (``codexglue_version`` 2020 or 2021), whatever the study is called; the local
    proxy and a set cut from your own corpus (``own``) give relative effects only."""
    versions = sorted(set(df["codexglue_version"]) - {""}) if "codexglue_version" in df else []
    if not versions:
        return False, "no run records its line-level set: the poster's figures are left out"
    other = [v for v in versions if v not in POSTER_DATA]
    if other:
        return False, f"scored on {', '.join(other)}, not CodeXGLUE's set: the poster's figures are left out"
    return True, f"scored on {', '.join(versions)}: the poster's figures stand beside these"


def poster_table(
    df: pd.DataFrame,
    mode: str = "cached",
    method: str = "distil",
    init: str = "teacher_layers",
    poster: bool = False,
) -> pd.DataFrame:
    """Per student (deepest first, the teacher first): params (M), size (MB), samples/s, ES, EM, mean over seeds of
    the ``method`` runs with ``teacher_mode=mode`` and ``student_init=init``; the poster's numbers beside them when
    ``poster`` (only runs on CodeXGLUE's own set are comparable: ``poster_comparable``)."""
    runs = df[(df["stage"] == "student") & (df["teacher_mode"] == mode) & (df["method"] == method)]
    runs = runs[runs["student_init"] == init]
    table = _per_student(runs)
    teachers = df[df["stage"] == "teacher"]
    if len(teachers):
        row = teachers.iloc[0]
        table.loc["teacher"] = {
            "params_m": row["teacher_params"] / 1e6,
            "mb": row["model_mb"],
            "samples_per_s": row["inference_samples_per_s"],
            "tokens_per_s": row["generated_tokens_per_s"],
            "es": row["test_es"],
            "em": row["test_em"],
            "seeds": 1,
        }
    order = sorted(table.index, key=lambda s: (s != "teacher", -int(s[5:-1]) if s.startswith("gpt2-") else 0))
    table = table.loc[order]
    if poster:
        table = table.join(POSTER, how="left")
        table["es_minus_poster"] = table["es"] - table["poster_es"]
        table["em_minus_poster"] = table["em"] - table["poster_em"]
    return table


def compare_modes(df: pd.DataFrame, value: str = "test_es") -> pd.DataFrame:
    """Per (student, init): ``value`` (mean over seeds) for every teacher mode and the LM-only baseline (``none``),
    plus ``frozen_minus_in_training`` (cached - in_training) and ``distil_minus_lm_only`` (cached - none)."""
    runs = df[df["stage"] == "student"]
    if runs.empty:
        return pd.DataFrame()
    table = runs.pivot_table(
        index=["student", "student_init"], columns="teacher_mode", values=value, aggfunc="mean"
    )
    table = table[[m for m in MODE_ORDER if m in table.columns]]
    if {"cached", "in_training"} <= set(table.columns):
        table["frozen_minus_in_training"] = table["cached"] - table["in_training"]
    if {"cached", "none"} <= set(table.columns):
        table["distil_minus_lm_only"] = table["cached"] - table["none"]
    return table


def mode_costs(df: pd.DataFrame) -> pd.DataFrame:
    """Training and teacher seconds per teacher mode (mean over trials): what frozen vs in-training costs."""
    runs = df[df["stage"] == "student"]
    cols = ["train_seconds", "teacher_seconds", "best_val_ppl", "teacher_test_es", "teacher_test_em"]
    return (
        runs.groupby("teacher_mode")[cols]
        .mean()
        .reindex([m for m in MODE_ORDER if m in set(runs["teacher_mode"])])
    )


def plot_size_curve(df: pd.DataFrame) -> Any:
    """ES and EM against student parameters, one line per teacher mode (mean over seeds and inits)."""
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(10, 3.5))
    runs = df[df["stage"] == "student"]
    for ax, metric, label in ((axes[0], "test_es", "ES"), (axes[1], "test_em", "EM")):
        for mode in [m for m in MODE_ORDER if m in set(runs["teacher_mode"])]:
            pts = runs[runs["teacher_mode"] == mode].groupby("student_params")[metric].mean()
            ax.plot(pts.index / 1e6, pts.values, marker="o", label="lm_only" if mode == "none" else mode)
        ax.set_xlabel("student parameters (M)")
        ax.set_ylabel(label)
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=8)
    fig.tight_layout()
    return fig
