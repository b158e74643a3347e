"""The one trial wrapper: a Ray Tune trainable, a plain function of one trial's config, for every kind of trial.

``trainable(config, context)`` takes the typed trial the planner built (``config["trial"]``: a
``design.units.TrialUnit``) and does what every trial needs, whatever its work: registers the study's declared
tasks, returns at once when the ``trial_key`` already has a FINISHED run of its stage (a retried or resumed trial
is never recorded twice; a tuning draw that repeats another draw's configuration is recorded once as a run of its
own, untrained: ``tuning_trial.repeat_draw``), creates the trial's MLflow run (not Tune's MLflow callback, which forgets its run map when
a study is restored) RUNNING with its tags, params and node, gives the work a scratch folder under ``--storage``
(removed once MLflow holds the artifacts), records a failure (FAILED with the reason; a node loss is retried by
Tune without counting, ``node_loss.py``; a diverged loss is not retried, see ``earlier_runs``) and reports the
result. The work itself (``work.py``, one function per
kind) trains, evaluates and logs its metrics and artifacts into the run.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from orchestrator.core import tracking
from orchestrator.core.paths import scratch
from orchestrator.sweep.context import TrialContext, TrialRun


def register_tasks(declared: list[dict[str, Any]]) -> None:
    """The study's declared tasks (docs/OWN_DATA.md), registered in this worker process from the trial config."""
    if not declared:
        return
    from tasks import declare, registered

    known = registered()
    for d in declared:
        if d["name"] not in known:
            declare(d, None)


def student_epoch(client: Any, run_id: str) -> Callable[[dict[str, float]], None]:
    """The per-epoch callback of a trial: log the epoch's metrics, then report them to Tune."""
    from ray import tune

    def on_epoch(row: dict[str, float]) -> None:
        tracking.log_metrics(
            client, run_id, {k: v for k, v in row.items() if k != "epoch"}, step=int(row["epoch"])
        )
        tune.report(dict(row))

    return on_epoch


def trainable(config: dict[str, Any], context: TrialContext, trials: dict[str, Any]) -> None:
    """The Tune trainable of the trial stage: the trial whose key ``config["trial"]`` names (``trials``: the typed
    trials of the grid, by key, sent once through the object store)."""
    run_trial_unit(trials[config["trial"]], context)


def tune_attempt() -> str | None:
    """The Tune trial this process runs (its retries keep the id), or None outside Tune (a trial run by hand)."""
    from ray import tune

    try:
        return tune.get_context().get_trial_id()
    except Exception:  # noqa: BLE001 - no Tune session in this process
        return None


def trial_runs(client: Any, exp_id: str, trial: Any) -> list[Any]:
    """Every run of the trial's stage and ``trial_key`` (few: its retries and reruns; for a tuning trial, also
    other draws of the same configuration)."""
    flt = f"tags.stage = '{trial.stage}' and tags.trial_key = '{trial.trial_key}'"
    return tracking.search_all(client, exp_id, flt)


def earlier_runs(runs: list[Any], attempt: str | None) -> tuple[Any | None, Any | None]:
    """Of the trial's ``runs``: its FINISHED run, if any, and the FAILED run in which this Tune trial (``attempt``)
    already diverged, if any.

    A diverged run's configuration, seed and data are the same on a retry, so it would diverge again: the retry
    Tune makes (``max_failures``) stops at once instead of training up to the same NaN. A later study run tries the
    trial again (a tuning cell counts the diverged configuration as a spent sample and draws no replacement:
    ``sweep/tuning.diverged_runs``)."""
    from orchestrator.sweep.tuning_trial import is_diverged

    done = next((r for r in runs if r.info.status == "FINISHED"), None)
    mine = [r for r in runs if attempt is not None and r.data.tags.get("tune_trial_id") == attempt]
    return done, next((r for r in mine if is_diverged(r)), None)


def run_trial_unit(trial: Any, context: TrialContext) -> None:
    """Run one typed trial and record it in MLflow; see the module docstring."""
    import ray
    import torch
    from mlflow.tracking import MlflowClient
    from ray import tune

    from orchestrator.sweep.tuning_trial import repeat_draw, tuning_epoch
    from orchestrator.sweep.work import WORK

    register_tasks(trial.declared_tasks)
    torch.set_num_threads(max(1, int(trial.cpus)))
    client = MlflowClient(context.tracking_uri)
    attempt = tune_attempt()
    runs = trial_runs(client, context.experiment_id, trial)
    node = ray.get_runtime_context().get_node_id() if ray.is_initialized() else "local"
    tags = {**trial.tags, "node_id": node, "mlflow.parentRunId": context.parent}
    if attempt is not None:
        tags["tune_trial_id"] = attempt  # its retries share it (earlier_runs)
    # a tuning draw of a configuration another draw already ran: a sample of its own, recorded, not trained
    if trial.stage == "tune" and repeat_draw(client, context.experiment_id, trial, runs, tags):
        return
    done, diverged = earlier_runs(runs, attempt)
    if done is not None:
        keep = ("test_", "best_val_")
        tune.report({"skipped": 1.0, **{k: v for k, v in done.data.metrics.items() if k.startswith(keep)}})
        return
    if diverged is not None:
        from orchestrator.train.trainer import NonFiniteLossError

        # no new run: the failure is recorded once, in the attempt that diverged
        raise NonFiniteLossError(
            f"not retried: this trial diverged in run {diverged.info.run_id} "
            f"({diverged.data.tags['error'][:200]}), and would again with the same configuration and seed"
        )
    run_id = client.create_run(context.experiment_id, run_name=trial.run_name, tags=tags).info.run_id
    epoch = tuning_epoch if trial.stage == "tune" else student_epoch
    try:
        tracking.log_params(client, run_id, trial.params)
        with scratch(trial.scratch) as out_dir:
            final = WORK[trial.kind](trial, TrialRun(client, run_id, out_dir, context, epoch(client, run_id)))
        client.set_terminated(run_id, "FINISHED")
    except SystemExit:
        # Tune stops a trial by raising SystemExit inside report(): the trial did not fail, it was stopped. A
        # tuning trial stopped by ASHA is completed by the driver (tuning_stage.TuneRecorder), which knows why.
        if trial.stage != "tune":
            client.set_terminated(run_id, "KILLED")
        raise
    except BaseException as err:  # noqa: BLE001 - every failure is recorded, then Tune retries or gives up
        tracking.record_failure(client, run_id, err)
        raise
    # Outside the try: the run is FINISHED whatever Tune does with this last report.
    tune.report({**final, "trial_finished": 1.0})
