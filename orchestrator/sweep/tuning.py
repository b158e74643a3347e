"""Tuning bookkeeping from MLflow: each cell's finished tuning runs, its best configuration, and the final trials
that run it (one per study seed).

A cell's search is complete when it has spent ``tuning.samples`` draws: FINISHED tuning runs (a draw that repeated an
earlier configuration included: ``tuning_trial.repeat_draw``) and diverged ones. A draw that failed for another
reason is no sample: the next study run draws it again, and until then the cell's final trials wait (its failed
draws are listed by ``tuning_status``). The best configuration of a complete cell is its FINISHED ``stage=tune`` run
with the highest ``best_val_selection_score`` (ties: the earliest start, then the run id), so a resumed study
derives the same best as before. A final trial carries the tuned values (typed: the winning run's tag
``tuned_values``) as its train settings / method params, tag ``tuned_from`` (that run's id) and a ``trial_key`` made
of its settings, its cell and the tuned values. A complete cell whose every draw diverged has no configuration to
train: its final trials are recorded FAILED as diverged (``record_all_diverged``), so the analysis counts them.
"""

from __future__ import annotations

import copy
import dataclasses
import json
from typing import Any

from orchestrator.core import tracking
from orchestrator.core.paths import stable_key
from orchestrator.design.tuning_spec import TRAIN_KEYS
from orchestrator.sweep.tuning_trial import BASELINE, DIVERGED, METRIC, is_diverged, param_name
from tasks.base import DEGENERATE_MARGIN

# The error of the final runs of a cell whose every tuning draw diverged (read as diverged: analysis/progress.py).
ALL_DIVERGED = f"{DIVERGED}: every tuning sample of its cell diverged"


def tune_runs(client: Any, exp_id: str, status: str | None = "FINISHED") -> dict[str, list[Any]]:
    """The study's tuning runs (FINISHED by default) by cell, oldest first."""
    out: dict[str, list[Any]] = {}
    for run in tracking.runs_by_stage(client, exp_id, "tune", status):
        out.setdefault(run.data.tags.get("cell", ""), []).append(run)
    for runs in out.values():
        runs.sort(key=lambda r: (r.info.start_time, r.info.run_id))
    return out


def _draw(run: Any) -> tuple[str, str]:
    """One draw of the searcher: its configuration and Tune trial (the retries of a draw share both; a run made
    before ``tune_trial_id`` was tagged is keyed by its configuration alone)."""
    return run.data.tags.get("trial_key", run.info.run_id), run.data.tags.get("tune_trial_id", "")


def _failed_draws(failed: dict[str, list[Any]], diverged: bool) -> dict[str, list[Any]]:
    """Of the FAILED tuning runs by cell (``tune_runs(..., "FAILED")``), those that diverged (``diverged``) or
    failed otherwise, one run per draw, by cell, oldest first."""
    out: dict[str, list[Any]] = {}
    for cell, runs in failed.items():
        draws: dict[tuple[str, str], Any] = {}
        for r in runs:
            if is_diverged(r) != diverged:
                continue
            if diverged:  # the run of the draw; its retries make none (trial.earlier_runs)
                draws.setdefault(_draw(r), r)
            else:  # each retry of the draw made a run: the last one says why the draw failed
                draws[_draw(r)] = r
        if draws:
            out[cell] = list(draws.values())
    return out


def diverged_runs(client: Any, exp_id: str) -> dict[str, list[Any]]:
    """The FAILED tuning runs whose loss diverged, one per draw (a Tune trial of one configuration), by cell. A
    configuration that diverges is a result of the search, a sample spent like any other: it counts against
    ``samples``, so a method whose space often diverges gets no extra draws, and a rerun does not draw
    replacements."""
    return _failed_draws(tune_runs(client, exp_id, "FAILED"), diverged=True)


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


LITERALS = {"True": True, "False": False, "None": None}  # how Python's str() logged them as params


def _value(text: str) -> Any:
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return LITERALS.get(text, text)


def tuned_values(run: Any) -> dict[str, Any]:
    """The sampled values of a tuning run, typed: from its tag ``tuned_values`` (JSON), else (runs made before it)
    from its params, parsed as JSON ('4.0' stays a float) or as Python wrote them ('False' is False)."""
    typed = json.loads(run.data.tags.get("tuned_values") or "{}")
    return {n: typed[n] if n in typed else _value(run.data.params[param_name(n)]) for n in tuned_names(run)}


def final_trial(plan: Any, t: Any, best: Any) -> Any:
    """The trial ``t`` (a cell x seed) with its cell's best configuration, rebuilt by the plan from its settings."""
    values = tuned_values(best)
    settings = copy.deepcopy(t.settings)
    sparams = settings.pop("student_params", None)
    for name, value in values.items():
        settings["train" if name in TRAIN_KEYS else "method_params"][name] = value
    key = stable_key({**settings, "cell": t.cell, "tuned": values})
    settings["student_params"] = sparams
    tags = {
        "tuned_from": best.info.run_id,
        "tuned_params": best.data.tags.get("tuned_params", ""),
        "tuned_values": json.dumps(values, sort_keys=True),
    }
    final = plan.trial(settings, key, t.cell, tags)
    final.gpu_seconds = t.gpu_seconds
    return final


def resolve_final(plan: Any, client: Any, exp_id: str) -> tuple[Any, list[str]]:
    """The plan with its final trials keyed by each cell's best configuration. Cells whose search is not complete
    (fewer than ``samples`` draws spent: a draw failed, or the study was stopped), and complete cells whose every
    draw diverged (tag ``tuning_all_diverged=true``), keep placeholder trials tagged ``untuned``: not run, the study
    stays incomplete. Returns those cells."""
    if getattr(plan.spec, "tuning", None) is None:
        return plan, []
    samples = plan.spec.tuning.samples
    finished, diverged = tune_runs(client, exp_id), diverged_runs(client, exp_id)
    # the best of the first ``samples`` runs: lowering samples after a search does not leave a best-of-more
    best = {cell: best_run(runs[:samples]) for cell, runs in finished.items()}
    trials, untuned = [], []
    for t in plan.trials:
        spent = spent_samples(finished, diverged, t.cell, samples)
        counts = {"tuning_samples": str(spent), "tuning_diverged": str(len(diverged.get(t.cell, [])))}
        if spent >= samples and best.get(t.cell) is not None:
            final = final_trial(plan, t, best[t.cell])
            final.tags.update(counts)
            flat = degenerate(best[t.cell])
            if flat is not None:
                final.tags["tuning_degenerate"] = str(flat).lower()
            trials.append(final)
            continue
        tags = {**t.tags, **counts, "tuning_all_diverged": "true"} if spent >= samples else t.tags
        trials.append(dataclasses.replace(t, untuned=True, tags=tags))
        untuned.append(t.cell)
    return dataclasses.replace(plan, trials=trials), sorted(set(untuned))


def all_diverged(plan: Any) -> list[Any]:
    """The plan's final trials (after ``resolve_final``) whose cell spent its search and every draw diverged."""
    return [t for t in plan.trials if t.untuned and t.tags.get("tuning_all_diverged") == "true"]


def record_all_diverged(plan: Any, client: Any, exp_id: str, parent: str) -> int:
    """Each final trial of a cell whose every draw diverged, recorded once as a FAILED student run: error
    ``ALL_DIVERGED`` (read as diverged, as a final whose loss diverged: the analysis gives "no verdict"), tag
    ``diverged=true``. No configuration is left to train, and a rerun draws none: only another search space (a new
    cell) changes that. Returns how many runs it made."""
    trials = all_diverged(plan)
    if not trials:
        return 0
    failed = tracking.runs_by_stage(client, exp_id, "student", "FAILED")
    made = {
        r.data.tags.get("trial_key") for r in failed if r.data.tags.get("error", "").startswith(ALL_DIVERGED)
    }
    n = 0
    for t in (t for t in trials if t.trial_key not in made):
        k = t.tags["tuning_diverged"]
        error = f"{ALL_DIVERGED} ({k} of {k}): no configuration to train; change its method's search space"
        tags = {**t.tags, "error": error, "diverged": "true", "node_id": "none", "mlflow.parentRunId": parent}
        run_id = client.create_run(exp_id, run_name=t.run_name, tags=tags).info.run_id
        tracking.log_params(client, run_id, t.params)
        client.set_terminated(run_id, "FAILED")
        n += 1
    return n


def tuning_status(plan: Any, client: Any, exp_id: str | None) -> dict[str, Any] | None:
    """Tuning progress for ``--status``: cells whose search is complete (``cells_done``; ``cells_diverged`` of them
    with every draw diverged), samples spent / planned, and the draws that failed for another reason in cells not
    complete yet (``failed_trials``: the next study run draws them again)."""
    t = getattr(plan.spec, "tuning", None)
    if t is None:
        return None
    runs = tune_runs(client, exp_id) if exp_id else {}
    failed_runs = (
        tune_runs(client, exp_id, "FAILED") if exp_id else {}
    )  # one search for both kinds of failure
    diverged = _failed_draws(failed_runs, diverged=True)
    failed = _failed_draws(failed_runs, diverged=False)
    counts = {c.cell: spent_samples(runs, diverged, c.cell, t.samples) for c in plan.cells}
    done = [cell for cell, n in counts.items() if n >= t.samples]
    ran = {_draw(r) for rs in runs.values() for r in rs}  # a draw whose retry finished did not fail
    open_failed = [
        r for cell, n in counts.items() if n < t.samples for r in failed.get(cell, []) if _draw(r) not in ran
    ]
    return {
        "cells": len(plan.cells),
        "cells_done": len(done),
        "cells_diverged": sum(not runs.get(cell) for cell in done),
        "trials_finished": sum(counts.values()),
        "trials_planned": len(plan.cells) * t.samples,
        "trials_failed": len(open_failed),
        "failed_trials": [
            {
                "run": r.info.run_name,
                "cell": r.data.tags.get("cell", ""),
                "error": r.data.tags.get("error", ""),
            }
            for r in open_failed
        ],
    }


def tuning_lines(tu: dict[str, Any] | None, summary: bool = False) -> list[str]:
    """A tuned study's search: cells tuned, samples spent, cells whose every draw diverged, and the tuning draws
    that failed (their cell's finals wait for the next run). The end summary says only what is wrong."""
    if not tu:
        return []
    tuned = tu["cells_done"] - tu.get("cells_diverged", 0)
    waiting = tu["cells"] - tu["cells_done"]
    lines = []
    if not summary or waiting or tu.get("cells_diverged") or tu.get("trials_failed"):
        lines.append(
            f"  tuning: {tuned}/{tu['cells']} cells tuned, "
            f"{tu['trials_finished']}/{tu['trials_planned']} tuning trials finished"
            + (f", {tu['trials_failed']} failed" if tu.get("trials_failed") else "")
        )
    if tu.get("cells_diverged"):
        lines.append(
            f"  tuning: every sample diverged in {tu['cells_diverged']} cell(s): their final trials are recorded "
            "FAILED (diverged); change those methods' search space"
        )
    if waiting and (summary or tu.get("trials_failed")):
        lines.append(
            f"  tuning: {waiting} cell(s) not fully searched: their final trials wait; run the study again to draw "
            "the missing samples"
        )
    lines += [f"  FAILED tuning trial {f['run']}: {f['error']}" for f in tu.get("failed_trials", [])]
    return lines
