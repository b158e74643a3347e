"""Tuning bookkeeping from MLflow: each cell's finished tuning runs, its best configuration, and the final trials
that run it (one per study seed).

The best configuration of a cell is its FINISHED ``stage=tune`` run with the highest ``best_val_selection_score``
(ties: the earliest start, then the run id), so a resumed study derives the same best as before. A final trial
carries the tuned values as its train settings / method params, tag ``tuned_from`` (that run's id) and a
``trial_key`` made of its settings, its cell and the tuned values.
"""

from __future__ import annotations

import copy
import dataclasses
import json
from typing import Any

from orchestrator.core import tracking
from orchestrator.core.paths import stable_key
from orchestrator.design.tuning_spec import TRAIN_KEYS
from orchestrator.sweep.tuning_trial import BASELINE, METRIC, param_name
from tasks.base import DEGENERATE_MARGIN


def tune_runs(client: Any, exp_id: str, status: str | None = "FINISHED") -> dict[str, list[Any]]:
    """The study's tuning runs (FINISHED by default) by cell, oldest first."""
    out: dict[str, list[Any]] = {}
    for run in tracking.runs_by_stage(client, exp_id, "tune", status):
        out.setdefault(run.data.tags.get("cell", ""), []).append(run)
    for runs in out.values():
        runs.sort(key=lambda r: (r.info.start_time, r.info.run_id))
    return out


DIVERGED = "NonFiniteLossError"  # the error tag of a trial whose loss stopped being finite (train/trainer.py)


def is_diverged(run: Any) -> bool:
    """Whether a run failed because its loss stopped being finite (its ``error`` tag names ``DIVERGED``)."""
    return run.info.status == "FAILED" and run.data.tags.get("error", "").startswith(f"{DIVERGED}:")


def diverged_runs(client: Any, exp_id: str) -> dict[str, list[Any]]:
    """The FAILED tuning runs whose loss diverged, one per configuration (``trial_key``), by cell. A configuration
    that diverges is a result of the search, a sample spent like any other: it counts against ``samples``, so a
    method whose space often diverges gets no extra draws, and a rerun does not draw replacements."""
    out: dict[str, list[Any]] = {}
    for cell, runs in tune_runs(client, exp_id, "FAILED").items():
        keys: dict[str, Any] = {}
        for r in runs:
            if is_diverged(r):
                keys.setdefault(r.data.tags.get("trial_key", r.info.run_id), r)
        if keys:
            out[cell] = list(keys.values())
    return out


def spent_samples(
    finished: dict[str, list[Any]], diverged: dict[str, list[Any]], cell: str, samples: int
) -> int:
    """The samples a cell has used: its finished runs and its diverged configurations, at most ``samples`` (a
    budget lowered after a search)."""
    return min(samples, len(finished.get(cell, [])) + len(diverged.get(cell, [])))


def score(run: Any) -> float:
    value = run.data.metrics.get(METRIC)
    return float("-inf") if value is None or value != value else float(value)


def degenerate(run: Any) -> bool | None:
    """Whether a tuning run's best validation selection score is at most what a constant prediction scores
    (``BASELINE``) + ``DEGENERATE_MARGIN``: the best of a cell's search at its baseline means no configuration
    learnt anything in ``max_epochs``, and the configuration its finals use is then an arbitrary one. None when
    the baseline was not recorded (tuning runs made before it was)."""
    base = run.data.metrics.get(BASELINE)
    if base is None or base != base:
        return None
    return score(run) <= base + DEGENERATE_MARGIN


def best_run(runs: list[Any]) -> Any | None:
    """The cell's best tuning run: highest best validation selection score, then earliest start, then run id."""
    if not runs:
        return None
    return min(runs, key=lambda r: (-score(r), r.info.start_time, r.info.run_id))


def tuned_names(run: Any) -> list[str]:
    """The hyperparameters a tuning run sampled (tag ``tuned_params`` holds their MLflow param names)."""
    names = [n for n in run.data.tags.get("tuned_params", "").split(",") if n]
    return [n.removeprefix("method.") for n in names]


def _value(text: str) -> Any:
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return text


def tuned_values(run: Any) -> dict[str, Any]:
    """The sampled values of a tuning run, read back from its params (json, so '4.0' stays a float)."""
    return {n: _value(run.data.params[param_name(n)]) for n in tuned_names(run)}


def final_trial(plan: Any, t: Any, best: Any) -> Any:
    """The trial ``t`` (a cell x seed) with its cell's best configuration, rebuilt by the plan from its settings."""
    values = tuned_values(best)
    settings = copy.deepcopy(t.settings)
    sparams = settings.pop("student_params", None)
    for name, value in values.items():
        settings["train" if name in TRAIN_KEYS else "method_params"][name] = value
    key = stable_key({**settings, "cell": t.cell, "tuned": values})
    settings["student_params"] = sparams
    tags = {"tuned_from": best.info.run_id, "tuned_params": best.data.tags.get("tuned_params", "")}
    final = plan.trial(settings, key, t.cell, tags)
    final.gpu_seconds = t.gpu_seconds
    return final


def resolve_final(plan: Any, client: Any, exp_id: str) -> tuple[Any, list[str]]:
    """The plan with its final trials keyed by each cell's best configuration. Cells without a finished tuning
    run keep placeholder trials tagged ``untuned`` (not run; the study stays incomplete). Returns those cells."""
    if getattr(plan.spec, "tuning", None) is None:
        return plan, []
    samples = plan.spec.tuning.samples
    finished, diverged = tune_runs(client, exp_id), diverged_runs(client, exp_id)
    # the best of the first ``samples`` runs: lowering samples after a search does not leave a best-of-more
    best = {cell: best_run(runs[:samples]) for cell, runs in finished.items()}
    trials, untuned = [], []
    for t in plan.trials:
        if best.get(t.cell) is not None:
            final = final_trial(plan, t, best[t.cell])
            final.tags.update(
                tuning_samples=str(spent_samples(finished, diverged, t.cell, samples)),
                tuning_diverged=str(len(diverged.get(t.cell, []))),
            )
            flat = degenerate(best[t.cell])
            if flat is not None:
                final.tags["tuning_degenerate"] = str(flat).lower()
            trials.append(final)
        else:
            trials.append(dataclasses.replace(t, untuned=True))
            untuned.append(t.cell)
    return dataclasses.replace(plan, trials=trials), sorted(set(untuned))


def tuning_status(plan: Any, client: Any, exp_id: str | None) -> dict[str, Any] | None:
    """Tuning progress for ``--status``: cells done, tuning trials finished / planned."""
    t = getattr(plan.spec, "tuning", None)
    if t is None:
        return None
    runs = tune_runs(client, exp_id) if exp_id else {}
    diverged = diverged_runs(client, exp_id) if exp_id else {}
    counts = {c.cell: spent_samples(runs, diverged, c.cell, t.samples) for c in plan.cells}
    return {
        "cells": len(plan.cells),
        "cells_done": sum(n >= t.samples for n in counts.values()),
        "trials_finished": sum(counts.values()),
        "trials_planned": len(plan.cells) * t.samples,
    }
