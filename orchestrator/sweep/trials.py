"""The trial stage, the same for every kind: every trial not yet FINISHED in MLflow, as one Ray Tune grid over the
typed trials the planner built (run by the one trial wrapper, ``trial.py``), then the study's final state."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from ray import tune

from orchestrator.core import tracking
from orchestrator.core.log import log, tune_verbosity
from orchestrator.design import packing
from orchestrator.sweep.context import StudyContext
from orchestrator.sweep.cost import plan_tags, spent


def check_packing(ctx: StudyContext) -> None:
    """Before any stage: k students packed on one GPU (``trials_per_gpu``, or a fractional ``trial_resources.gpu``)
    must fit it; tuning packs the same students as the finals, so this runs before either."""
    if (k := packing.per_gpu(ctx.spec)) > 1:
        from orchestrator.sweep.cluster_check import cluster_gpu

        gpu = cluster_gpu()  # the cluster's smallest GPU: the driver's machine may have none
        estimates = packing.estimate_trials(ctx.spec, ctx.plan, gpu)
        log(packing.check_packing(k, estimates, None if gpu is None else gpu.memory))


def stage_trials(ctx: StudyContext) -> None:
    """The plan's trials through Ray Tune; trials already FINISHED in MLflow are not run again."""
    trials = ctx.plan.trials
    done = ctx.finished_keys()
    todo = [t for t in trials if t.trial_key not in done and not getattr(t, "untuned", False)]
    log(
        f"stage student: {len(trials)} trials, {len(trials) - len(todo)} already finished, {len(todo)} to run"
    )
    if not todo:
        return
    from orchestrator.sweep.trial import trainable

    # The grid is over trial keys; the typed trials travel to the workers as they are, once, in the object store
    # (Tune's driver would see only placeholders of objects in the param space).
    units = {t.trial_key: t for t in todo}
    names = TrialNames({t.trial_key: t.run_name for t in todo})
    tuner = tune.Tuner(
        tune.with_resources(
            tune.with_parameters(trainable, context=ctx.trial_context(), trials=units),
            packing.resources(ctx.spec),
        ),
        param_space={"trial": tune.grid_search(list(units))},
        tune_config=tune.TuneConfig(
            max_concurrent_trials=ctx.spec.max_concurrent_trials,
            reuse_actors=True,  # a fresh worker per trial costs seconds of imports
            trial_name_creator=names,
            trial_dirname_creator=names,
        ),
        run_config=run_config(
            ctx,
            ctx.spec.name,
            [Progress(len(todo), ctx.spec.max_concurrent_trials, names), LostWorkers(ctx, "student", units)],
        ),
    )
    tuner.fit()


def run_config(ctx: StudyContext, name: str, callbacks: list[Any]) -> tune.RunConfig:
    """Where Tune keeps a grid's results (under the storage), how often a failing trial is retried, our progress
    lines instead of Tune's tables (unless ``--verbose``). A lost node is not a failure (``node_loss.py``)."""
    from orchestrator.sweep.node_loss import refund_node_loss

    refund_node_loss()
    return tune.RunConfig(
        name=f"{name}-{time.strftime('%Y%m%d-%H%M%S')}",
        storage_path=str((Path(ctx.spec.storage) / ctx.spec.name / "ray_results").resolve()),
        failure_config=tune.FailureConfig(max_failures=ctx.spec.max_failures),
        callbacks=callbacks,
        verbose=tune_verbosity(),
    )


class TrialNames:
    """A Tune trial's name (and folder): its id and its run name, looked up by the trial key its config holds."""

    def __init__(self, names: dict[str, str]) -> None:
        self.names = names

    def run_name(self, trial: Any) -> str:
        return self.names.get(str(trial.config.get("trial")), trial.trial_id)

    def __call__(self, trial: Any) -> str:
        return f"{trial.trial_id}-{self.run_name(trial)}".replace(" ", "_")[:120]


class Progress(tune.Callback):
    """A Tune callback printing trials done / running / failed and an estimate of the time left."""

    def __init__(self, total: int, concurrency: int, names: TrialNames | None = None) -> None:
        self.total, self.concurrency, self.names = total, max(1, concurrency), names or TrialNames({})
        self.done = self.failed = 0
        self.running: set[str] = set()
        self.started: dict[str, float] = {}
        self.durations: list[float] = []

    def _line(self) -> None:
        left = self.total - self.done - self.failed
        # No guess before a trial has finished: the first ones also pay for imports and data loading.
        eta = ", time left: estimating (after the first trial)" if left > 0 else ""
        if self.durations and left > 0:
            secs = sum(self.durations) / len(self.durations) * left / self.concurrency
            eta = f", about {secs / 60:.1f} min left" if secs >= 60 else f", about {secs:.0f} s left"
        log(f"trials: {self.done}/{self.total} done, {len(self.running)} running, {self.failed} failed{eta}")

    def on_trial_start(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        self.running.add(trial.trial_id)
        self.started[trial.trial_id] = time.time()
        if len(self.started) == 1:
            self._line()  # the first line: what runs, and that the time left is not known yet

    def on_trial_complete(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        self.running.discard(trial.trial_id)
        self.done += 1
        self.durations.append(time.time() - self.started.get(trial.trial_id, time.time()))
        self._line()

    def on_trial_error(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        self.running.discard(trial.trial_id)
        self.failed += 1
        log(
            f"trial failed for good: {self.names.run_name(trial)} (reason in its MLflow run, and Tune's traceback "
            "in the study folder's tune.log, also for a trial that failed before it opened a run; --status lists it)"
        )
        self._line()


WORKER_STOPPED = "its worker stopped before the trial ended (killed, or out of memory)"


def trial_error(trial: Any) -> BaseException | None:
    """The error Ray handed Tune for ``trial``, from its local error file (written before the callbacks run;
    ``Trial.get_pickled_error`` reads the synced copy, which may not be there yet)."""
    import cloudpickle

    try:
        with open(trial.pickled_error_file, "rb") as f:
            return cloudpickle.load(f)
    except Exception:  # noqa: BLE001 - no readable error file
        return None


def worker_died(err: BaseException | None) -> bool:
    """True unless ``err`` is the trial's own exception: a dead actor (killed, out of memory, node lost), or no
    readable error at all (a RUNNING run is then left by a worker that stopped)."""
    from ray.exceptions import RayActorError, RayTaskError

    cause = err.as_instanceof_cause() if isinstance(err, RayTaskError) else err
    return cause is None or isinstance(cause, RayActorError)


def worker_lost(err: BaseException | None) -> str:
    """Why Tune lost a trial, in one line: a dead actor's error says how its worker exited."""
    if err is None:
        return WORKER_STOPPED
    lines = [x.strip() for x in str(err).splitlines() if x.strip()] or [WORKER_STOPPED]
    exited = next((x.split(". Some common causes")[0] for x in lines if "exit" in x.lower()), "")
    return " ".join(dict.fromkeys([f"the trial's worker died ({type(err).__name__}): {lines[0]}", exited]))[
        :1000
    ]


class LostWorkers(tune.Callback):
    """A trial whose worker died (killed, out of memory) could not record its own failure: its MLflow run is
    left RUNNING. The driver records it FAILED with the reason Ray gave, saying whether Tune retries it."""

    def __init__(self, ctx: StudyContext, stage: str, units: dict[str, Any]) -> None:
        self.client, self.experiment_id, self.stage, self.units = ctx.client, ctx.experiment_id, stage, units
        self.parent = ctx.parent

    def _record(self, trial: Any, then: str) -> None:
        from orchestrator.sweep.node_loss import is_node_loss

        key = str(trial.config.get("trial"))
        flt = f"tags.stage = '{self.stage}' and tags.trial_key = '{key}' and attributes.status = 'RUNNING'"
        err = trial_error(trial)
        if not worker_died(err):
            return  # the trial raised: its wrapper recorded its run FAILED with the trial's own reason
        lost_node = is_node_loss(err)
        # a lost node is no fault of the trial (node_loss.py): its attempt was interrupted, KILLED
        status, then = (
            ("KILLED", "its node was lost; Tune retries the trial") if lost_node else ("FAILED", then)
        )
        runs = [r.info.run_id for r in self.client.search_runs([self.experiment_id], flt, max_results=10)]
        if (
            not runs and err is not None and key in self.units
        ):  # its worker died before it could open its run: the failure is recorded anyway
            unit = self.units[key]
            # (node_id: every student run has one; which node this attempt was placed on is not known here)
            tags = {**unit.tags, "node_id": "unknown", "mlflow.parentRunId": self.parent}
            runs = [self.client.create_run(self.experiment_id, run_name=unit.run_name, tags=tags).info.run_id]
        for run_id in runs:
            self.client.set_tag(run_id, "error", f"{worker_lost(err)}; {then}")
            self.client.set_terminated(run_id, status)

    def on_trial_recover(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        self._record(trial, "Tune retries the trial (max_failures)")

    def on_trial_error(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        self._record(trial, "max_failures reached: no further attempt")


def stage_finish(ctx: StudyContext) -> None:
    """What MLflow holds now is the study's state: trials finished and failed (each once), teacher passes, hours
    spent beside those planned (``cost.py``), and the parent run FINISHED when every trial is."""
    client, exp_id, outcome = ctx.client, ctx.experiment_id, ctx.outcome
    done = ctx.finished_keys()
    # No trial runs any more: a run still RUNNING belonged to a worker that died unnoticed by LostWorkers (e.g. its
    # node was removed): KILLED when a retry finished its trial, else FAILED with what is known.
    for run in tracking.search_all(client, exp_id, "attributes.status = 'RUNNING' and tags.stage != 'study'"):
        retried = run.data.tags.get("trial_key") in done
        reason = f"{WORKER_STOPPED}; a retry finished the trial" if retried else WORKER_STOPPED
        client.set_tag(run.info.run_id, "error", reason)
        client.set_terminated(run.info.run_id, "KILLED" if retried else "FAILED")
    planned = {t.trial_key for t in ctx.plan.trials}
    outcome.finished = len(planned & done)
    last_failure: dict[str, Any] = {}  # each failed trial once (its last attempt), not once per retry
    failed = tracking.runs_by_stage(client, exp_id, "student", "FAILED")
    for r in sorted(failed, key=lambda r: r.info.start_time or 0):
        if r.data.tags.get("trial_key") in planned - done:
            last_failure[r.data.tags["trial_key"]] = r
    outcome.failed = [
        {"run": r.info.run_name, "error": r.data.tags.get("error", "")} for r in last_failure.values()
    ]
    from orchestrator.sweep.tuning import tuning_status

    outcome.tuning = tuning_status(ctx.plan, client, exp_id)  # failed tuning draws, cells not complete
    if ctx.cache_keys is not None:
        from orchestrator.cache.build import teacher_passes

        # the passes actually made for this study's caches, rebuilds and passes of a killed driver included
        outcome.teacher_passes = teacher_passes(ctx.cache_storage or ctx.spec.storage, ctx.cache_keys)
    elif not outcome.teacher_passes:  # no cache read now (no cached trial was left): an earlier count stands
        earlier = client.get_run(ctx.parent).data.metrics.get("teacher_passes")
        outcome.teacher_passes = int(earlier or 0)
    metrics = {
        "teacher_passes": outcome.teacher_passes,
        "trials_planned": len(planned),
        "trials_finished": outcome.finished,
    }
    # What the study spent beside what --plan estimated (sweep/cost.py).
    tracking.log_metrics(client, ctx.parent, {**metrics, **spent(client, exp_id, ctx.plan.planned_hours)})
    for name, value in plan_tags(ctx.plan).items():  # what planned_gpu_hours rests on: calibrated or flops
        client.set_tag(ctx.parent, name, value)
    client.set_terminated(ctx.parent, "FINISHED" if outcome.complete else "FAILED")
