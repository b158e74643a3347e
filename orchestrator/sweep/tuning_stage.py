"""The tuning stage, between the teacher caches and the final student trials (``run.run_stages``).

Every cell (task, teacher, student, method; FT included) gets the same budget: ``tuning.samples`` configurations
from the searcher (Optuna TPE, or Tune's random BasicVariantGenerator), each trained up to ``tuning.max_epochs`` on
a seed no final run uses (``tuning.trial_seed``) from the teacher cache, ASHA stopping weak ones early on the
validation selection score. One ``tune.Tuner`` per cell, cells one after another. Resume: a cell that spent
``samples`` draws (FINISHED or diverged tuning runs) is done; a cell with fewer warm-starts its searcher with its
FINISHED runs (``points_to_evaluate`` + ``evaluated_rewards``) and runs only the missing samples (a draw that failed
for another reason is drawn again). Afterwards each complete cell's best run fixes its final trials
(``tuning.resolve_final``); the finals of a cell whose search is not complete wait for the next study run, and
those of a cell whose every draw diverged are recorded FAILED (``tuning.record_all_diverged``).
"""

from __future__ import annotations

import dataclasses
import time
from typing import Any

from mlflow.tracking import MlflowClient
from ray import tune

from orchestrator.core import tracking
from orchestrator.core.log import log
from orchestrator.design import packing
from orchestrator.design.names import run_name
from orchestrator.sweep.context import StudyContext, TrialContext
from orchestrator.sweep.trials import Progress, run_config
from orchestrator.sweep.tuning import (
    all_diverged,
    diverged_runs,
    record_all_diverged,
    resolve_final,
    score,
    spent_samples,
    tune_runs,
    tuned_values,
    tuning_status,
)
from orchestrator.sweep.tuning_trial import METRIC, param_name, with_sample


def stage_tuning(ctx: StudyContext) -> None:
    """Tune every cell not yet tuned; then set the plan's final trials to each cell's best (``tuning: none``:
    nothing to do, the plan as it is)."""
    spec, t = ctx.spec, getattr(ctx.spec, "tuning", None)
    if t is None:
        return
    finished, diverged = (
        tune_runs(ctx.client, ctx.experiment_id),
        diverged_runs(ctx.client, ctx.experiment_id),
    )
    spent = {c.cell: spent_samples(finished, diverged, c.cell, t.samples) for c in ctx.plan.cells}
    todo = [c for c in ctx.plan.cells if spent[c.cell] < t.samples]
    log(
        f"stage tune: {len(ctx.plan.cells)} cells x {t.samples} samples ({t.searcher} + {t.scheduler}, "
        f"<= {t.max_epochs} epochs), {len(ctx.plan.cells) - len(todo)} cells already tuned, {len(todo)} to tune"
    )
    for i, cell in enumerate(todo, 1):
        runs = finished.get(cell.cell, [])
        name = f"{cell.task}-{cell.student}-{cell.method}-{cell.teacher}"
        log(f"tuning cell {i}/{len(todo)} {name} ({cell.cell}): {t.samples - spent[cell.cell]} to run")
        _tune_cell(ctx, _base_trial(spec, cell), runs, spent[cell.cell])
    current_cells(ctx)
    ctx.plan, untuned = resolve_final(ctx.plan, ctx.client, ctx.experiment_id)
    _say_untuned(ctx, untuned)
    flat = sorted({t.cell for t in ctx.plan.trials if t.tags.get("tuning_degenerate") == "true"})
    if flat:
        log(
            f"  warning: in {len(flat)} of {len(ctx.plan.cells)} cells no configuration beat a constant "
            f"prediction on validation (tag tuning_degenerate): {flat[:8]}{' ...' if len(flat) > 8 else ''}; "
            "their finals run an arbitrary configuration: give tuning more max_epochs or samples"
        )


def _say_untuned(ctx: StudyContext, untuned: list[str]) -> None:
    """Cells without finals: every draw diverged (their finals recorded FAILED), or a search not complete."""
    diverged = sorted({t.cell for t in all_diverged(ctx.plan)})
    if diverged:
        made = record_all_diverged(ctx.plan, ctx.client, ctx.experiment_id, ctx.parent)
        log(
            f"  every tuning sample diverged in {len(diverged)} cell(s) {diverged}: their final trials are "
            f"recorded FAILED as diverged ({made} new); change those methods' search space"
        )
    waiting = [c for c in untuned if c not in diverged]
    if waiting:
        st = tuning_status(ctx.plan, ctx.client, ctx.experiment_id) or {}
        log(
            f"  search not complete in {len(waiting)} cell(s) {waiting} ({st.get('trials_failed', 0)} tuning "
            "trial(s) failed, --status lists them): their final trials wait; run the study again to draw the "
            "missing samples"
        )


def current_cells(ctx: StudyContext) -> None:
    """The plan's cells as tag ``tuning_cells`` of the study's parent run, so the analysis can tell them from the
    cells of the study's earlier versions (analysis/tuning.py); removed when it would be too long for a tag."""
    cells = ",".join(sorted({c.cell for c in ctx.plan.cells}))
    if len(cells) <= 8000:  # MLflow's limit on a tag value
        ctx.client.set_tag(ctx.parent, "tuning_cells", cells)
    elif "tuning_cells" in ctx.client.get_run(ctx.parent).data.tags:
        ctx.client.delete_tag(ctx.parent, "tuning_cells")


def _base_trial(spec: Any, cell: Any) -> Any:
    """The cell's trial on the tuning seed (``tuning.trial_seed``), ``max_epochs`` long, tagged ``stage=tune``; the
    searcher fills in the
    sampled values (``tuning_trial.with_sample``)."""
    from kd_methods import get_method

    names = sorted(spec.tuning.space_for(cell.method))
    seed = spec.tuning.tuning_seed(spec.seeds)  # not a final seed: the finals must not replay the winner
    work = dataclasses.replace(
        cell.work, seed=seed, train=dataclasses.replace(cell.work.train, epochs=spec.tuning.max_epochs)
    )
    params = {**cell.params, "epochs": spec.tuning.max_epochs, "seed": seed}
    defaults = get_method(cell.method).defaults
    for n in (
        names
    ):  # the untuned value of each tuned hyperparameter: how far tuning moved it (analysis/tuning.py)
        params[f"default.{param_name(n)}"] = params.get(param_name(n), defaults.get(n))
    tags = {
        **cell.tags,
        "stage": "tune",
        "seed": str(seed),
        "tuned_params": ",".join(param_name(n) for n in names),
    }
    name = run_name(cell.task, cell.student, cell.method, cell.teacher, seed, cell.labels)
    return dataclasses.replace(
        cell, work=work, params=params, tags=tags, tuned=tuple(names), seed=seed, run_name=name
    )


def _searcher(spec: Any, cell: str, names: list[str], runs: list[Any], spent: int) -> Any:
    """The cell's search algorithm, warm-started with its finished runs (their values and scores). Its seed is
    ``tuning.seed`` mixed with the cell id: reproducible, and not the same draws in every cell."""
    assert spec.tuning is not None
    # A resumed search moves its seed on by the runs already made: the same seed would draw the finished runs'
    # configurations again (Optuna's TPE starts with random draws that ignore the warm-start points).
    seed = (spec.tuning.seed * 1_000_003 + int(cell[:8], 16) + spent) % 2**31
    if spec.tuning.searcher == "random":
        from ray.tune.search.basic_variant import BasicVariantGenerator

        # max_concurrent here: Tune applies max_concurrent_trials to a Searcher only, not to this generator
        return BasicVariantGenerator(random_state=seed, max_concurrent=spec.max_concurrent_trials)
    from ray.tune.search.optuna import OptunaSearch

    points = [{n: v for n, v in tuned_values(r).items() if n in names} for r in runs]
    return OptunaSearch(
        points_to_evaluate=points or None,
        evaluated_rewards=[score(r) for r in runs] or None,
        seed=seed,
    )


def _tune_cell(ctx: StudyContext, base: Any, runs: list[Any], spent: int) -> None:
    """``runs``: the cell's finished tuning runs (the searcher's warm start); ``spent``: the samples already used,
    those and the diverged ones."""
    from ray.tune.schedulers import ASHAScheduler

    spec, t = ctx.spec, ctx.spec.tuning
    space = {n: r.tune_domain() for n, r in t.space_for(base.method).items()}
    trainable = tune.with_parameters(tune_trainable, base=base, context=ctx.trial_context())
    scheduler = None
    if t.scheduler == "asha":
        scheduler = ASHAScheduler(
            max_t=t.max_epochs, grace_period=t.grace_period, reduction_factor=t.reduction_factor
        )
    todo, cell = t.samples - spent, base.cell
    callbacks = [TuneRecorder(ctx.tracking_uri, t.max_epochs), Progress(todo, spec.max_concurrent_trials)]
    tuner = tune.Tuner(
        tune.with_resources(trainable, packing.resources(spec)),
        param_space=space,
        tune_config=tune.TuneConfig(
            metric=METRIC,
            mode="max",
            search_alg=_searcher(spec, cell, sorted(space), runs, spent),
            scheduler=scheduler,
            num_samples=todo,
            max_concurrent_trials=spec.max_concurrent_trials,
            reuse_actors=True,
            trial_name_creator=lambda trial: f"{trial.trial_id}-tune-{cell}",
            trial_dirname_creator=lambda trial: f"{trial.trial_id}-tune-{cell}",
        ),
        run_config=run_config(ctx, f"{spec.name}-tune-{cell}", callbacks),
    )
    tuner.fit()


def tune_trainable(config: dict[str, Any], base: Any, context: TrialContext) -> None:
    """The Tune trainable of a tuning trial: the cell's base trial with the sampled values, run by the trial
    wrapper (which records it as a ``stage=tune`` run)."""
    from orchestrator.sweep.trial import run_trial_unit

    run_trial_unit(with_sample(base, {k: config[k] for k in base.tuned}), context)


class TuneRecorder(tune.Callback):
    """A Tune callback (driver side) that completes the MLflow run of a tuning trial the scheduler stopped: its
    worker stops inside ``tune.report`` without knowing why, the driver knows. Such a run did all the epochs the
    scheduler gave it, so it is FINISHED, with ``epochs_run``, ``best_epoch`` and ``trial_seconds`` (ASHA stops
    even a full-length trial at its last report) and, when it ran fewer than ``max_epochs``, tag
    ``stopped_early=true``; a driver that dies leaves it RUNNING, and the next driver marks it KILLED (and the
    sample is redone)."""

    def __init__(self, uri: str, max_epochs: int) -> None:
        self.client, self.max_epochs = MlflowClient(uri), max_epochs
        self.seen: dict[str, dict[str, Any]] = {}

    def on_trial_result(self, iteration: int, trials: list, trial: Any, result: dict, **info: Any) -> None:
        if "run_id" in result and METRIC in result:
            s = self.seen.setdefault(trial.trial_id, {"score": float("-inf"), "best_epoch": 0})
            s["run_id"], s["epoch"] = result["run_id"], int(result.get("epoch", 0))
            if float(result[METRIC]) > s["score"]:
                s["score"], s["best_epoch"] = float(result[METRIC]), s["epoch"]
            s["row"] = {k: v for k, v in result.items() if k.startswith(("val_", "train_loss"))}

    def on_trial_complete(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        s = self.seen.get(trial.trial_id)
        run = self.client.get_run(s["run_id"]) if s else None
        if run is None or run.info.status != "RUNNING":
            return
        # The worker logs an epoch after reporting it; a stopped worker can be ended between the two, so the last
        # reported epoch is logged here unless the worker got to it (seen in CI: a run with
        # best_val_selection_score but no val_* metrics at all).
        steps = {m.step for m in self.client.get_metric_history(s["run_id"], "val_selection_score")}
        if s["epoch"] not in steps:
            tracking.log_metrics(self.client, s["run_id"], s["row"], step=s["epoch"])
        tracking.log_metrics(self.client, s["run_id"], {METRIC: s["score"]}, step=s["epoch"])
        if s["epoch"] < self.max_epochs:
            self.client.set_tag(s["run_id"], "stopped_early", "true")
        # what the worker logs at its end, which it never reached: the study's spent hours count tuning too
        # (sweep/cost.py); its wall time from the run's start, as the driver sees it now
        seconds = max(0.0, time.time() - (run.info.start_time or 0) / 1000)
        done = {"epochs_run": s["epoch"], "best_epoch": s["best_epoch"], "trial_seconds": seconds}
        tracking.log_metrics(self.client, s["run_id"], done)
        self.client.set_terminated(s["run_id"], "FINISHED")
