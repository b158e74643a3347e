"""Run, plan or inspect a completion study (``task: completion``); ``python -m orchestrator.study`` routes here.

    python -m orchestrator.study completion-smoke            # run (or resume)
    python -m orchestrator.study completion-full --plan [--json]
    python -m orchestrator.study completion-smoke --status [--json]

Like a classification study: MLflow server on 127.0.0.1 (SQLite under the storage path) unless MLFLOW_TRACKING_URI
is set, Ray started here unless RAY_ADDRESS/--address names a cluster, a parent run ``stage=study``, trials already
FINISHED skipped (and with nothing left to run, neither Ray nor the caches are touched).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import Any

from models.teacher import ModelNotAvailableError
from orchestrator.sweep import tracking
from orchestrator.sweep.completion_plan import CompletionPlan, build_completion_plan, describe, plan_dict
from orchestrator.sweep.completion_spec import CompletionStudySpec, load_completion_spec
from orchestrator.sweep.spec import StudyError
from orchestrator.sweep.stages import StudyOutcome, log

DEFAULT_DATA = "data/local/completion"


def _uri(spec: CompletionStudySpec, start: bool, address: str | None = None) -> tuple[str, Any]:
    """MLFLOW_TRACKING_URI; else, on a cluster, an MLflow server started here; else the SQLite store itself (on one
    machine every trial can open it, and a server costs half a minute to start on a loaded 2-core machine)."""
    uri = os.environ.get("MLFLOW_TRACKING_URI")
    if uri:
        return uri, None
    if not start or not (address or os.environ.get("RAY_ADDRESS")):
        return tracking.local_store(spec.storage)[0], None
    server = tracking.start_server(spec.storage)
    return server.uri, server


def _init_ray(address: str | None, env: dict[str, str]) -> bool:
    import ray

    if ray.is_initialized():
        return False
    address = address or os.environ.get("RAY_ADDRESS")
    if address:
        ray.init(address=address, log_to_driver=False)
    else:
        ray.init(address="local", runtime_env={"env_vars": env}, include_dashboard=False, log_to_driver=False)
    return True


def _parent(client: Any, exp_id: str, spec: CompletionStudySpec) -> str:
    runs = tracking.runs_by_stage(client, exp_id, "study")
    if runs:
        client.update_run(runs[0].info.run_id, status="RUNNING")
        return runs[0].info.run_id
    tags = {"stage": "study", "study": spec.name, "task": "completion"}
    run = client.create_run(exp_id, run_name=f"study-{spec.name}", tags=tags)
    tracking.log_params(
        client, run.info.run_id, {"study_name": spec.name, **json.loads(spec.model_dump_json())}
    )
    return run.info.run_id


def run_completion_study(
    spec: CompletionStudySpec, address: str | None = None, wait: bool = False
) -> StudyOutcome:
    """Run (or resume) the study while holding its lock (``sweep/lock.py``, as a classification study does): one
    driver per study, so marking RUNNING runs as stale is safe. ``wait``: wait for another driver to finish."""
    from orchestrator.sweep.lock import StudyLock

    spec = spec.model_copy(update={"storage": str(Path(spec.storage).resolve())})
    plan = _prepare(spec)  # every user error (data, storage) before anything starts
    lock = StudyLock(spec.study_dir)
    lock.acquire(wait=wait, say=log)
    try:
        return _run_locked(spec, plan, address)
    finally:
        lock.release()


def _prepare(spec: CompletionStudySpec) -> CompletionPlan:
    """The plan, once its data exist (the default proxy is built on first use) and the storage can be written."""
    from orchestrator.sweep.completion_run import load_data

    plan = build_completion_plan(spec)
    log(describe(plan).replace("\n", "\n    "))
    if spec.data == DEFAULT_DATA and not (Path(plan.data) / "train.txt").is_file():
        from tasks.build_local import build_local

        log(
            f"building the offline completion proxy into {plan.data} (python -m tasks.build_local --tasks completion)"
        )
        build_local(Path(plan.data).parent, tasks=["completion"])
        plan = build_completion_plan(spec)  # the data fingerprint is part of the keys
    load_data(plan.data, spec.max_files.model_dump())  # missing data: one line (CompletionDataError)
    try:
        Path(spec.storage).mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise StudyError(
            f"storage {spec.storage}: cannot create it ({err.strerror}); set storage or --storage"
        ) from None
    return plan


def _run_locked(spec: CompletionStudySpec, plan: CompletionPlan, address: str | None) -> StudyOutcome:
    from mlflow.tracking import MlflowClient

    from orchestrator.sweep.completion_stages import stage_caches, stage_teachers, stage_trials, trial_config

    uri, server = _uri(spec, start=True, address=address)
    client = MlflowClient(uri)
    location, ui = None, f"open {uri}"
    if server:
        location, ui = (server.artifacts / spec.name).as_uri(), server.ui_command()
    elif uri.startswith("sqlite:///"):  # artifacts beside the database, not in ./mlruns
        db = Path(uri.removeprefix("sqlite:///"))
        location = (db.parent / "artifacts" / spec.name).as_uri()
        ui = f"mlflow ui --backend-store-uri {uri} --host 127.0.0.1"
    outcome = StudyOutcome(spec.name, uri, "", planned=len(plan.trials), finished=0, ui_command=ui)
    started_ray = False
    try:
        exp_id = outcome.experiment_id = tracking.experiment_id(client, spec.name, artifact_location=location)
        stale = tracking.mark_stale_running(client, exp_id, "left RUNNING by an earlier driver that stopped")
        if stale:
            log(f"marked {stale} run(s) left RUNNING by an earlier driver as KILLED")
        parent = _parent(client, exp_id, spec)
        env = {
            "MLFLOW_TRACKING_URI": uri,
            "MLFLOW_DISABLE_TELEMETRY": "true",
            "TOKENIZERS_PARALLELISM": "false",
        }
        if spec.teacher_resources.gpu > 0:  # teachers and caches then run as Ray tasks on a GPU node
            started_ray = _init_ray(address, env)
        stage_teachers(spec, plan, client, exp_id, parent)
        done = tracking.finished_keys(client, exp_id)
        todo = [trial_config(spec, plan, t, parent) for t in plan.trials if t.trial_key not in done]
        finished = len(plan.trials) - len(todo)
        log(f"stage trials: {len(plan.trials)} planned, {finished} already finished, {len(todo)} to run")
        if todo:
            started_ray = _init_ray(address, env) or started_ray
            outcome.teacher_passes = stage_caches(spec, plan, todo)
            stage_trials(spec, todo, uri, exp_id)
        _finish(plan, client, exp_id, parent, outcome)
    finally:
        if started_ray:
            import ray

            ray.shutdown()
        if server:
            server.stop()
    return outcome


def _finish(plan: CompletionPlan, client: Any, exp_id: str, parent: str, outcome: StudyOutcome) -> None:
    keys = {t.trial_key for t in plan.trials}
    runs = tracking.runs_by_stage(client, exp_id, "student")
    done = {r.data.tags.get("trial_key") for r in runs if r.info.status == "FINISHED"} & keys
    outcome.finished = len(done)
    outcome.failed = [
        {"run": r.info.run_name, "error": r.data.tags.get("error", "")}
        for r in runs
        if r.info.status == "FAILED" and r.data.tags.get("trial_key") in keys - done
    ]
    tracking.log_metrics(client, parent, {"trials_finished": len(done), "trials_planned": len(keys)})
    client.set_terminated(parent, "FINISHED" if outcome.complete else "FAILED")


def completion_status(spec: CompletionStudySpec) -> dict[str, Any]:
    from mlflow.tracking import MlflowClient

    uri, _ = _uri(spec, start=False)
    plan = build_completion_plan(spec.model_copy(update={"storage": str(Path(spec.storage).resolve())}))
    planned = {t.trial_key for t in plan.trials}
    client = MlflowClient(uri)
    exp = client.get_experiment_by_name(spec.name)
    runs = tracking.runs_by_stage(client, exp.experiment_id, "student") if exp else []
    done = {r.data.tags.get("trial_key") for r in runs if r.info.status == "FINISHED"} & planned
    failed = [r for r in runs if r.info.status == "FAILED" and r.data.tags.get("trial_key") not in done]
    return {
        "study": spec.name,
        "task": "completion",
        "tracking_uri": uri,
        "planned": len(planned),
        "done": len(done),
        "running": sum(r.info.status == "RUNNING" for r in runs),
        "failed": len({r.data.tags.get("trial_key") for r in failed}),
        "remaining": len(planned - done),
        "failed_trials": [
            {
                "run": r.info.run_name,
                "trial_key": r.data.tags.get("trial_key"),
                "error": r.data.tags.get("error", ""),
            }
            for r in failed
        ],
    }


def completion_main(args: argparse.Namespace) -> int:
    """The study command for a completion study (``args`` as ``driver.main`` parsed them)."""
    try:
        spec = load_completion_spec(args.study, {"storage": args.storage} if args.storage else None)
        if args.plan:
            plan = build_completion_plan(spec)
            print(json.dumps(plan_dict(plan), indent=2) if args.json else describe(plan))
            return 0
        if args.status:
            st = completion_status(spec)
            if args.json:
                print(json.dumps(st, indent=2))
                return 0
            print(f"study {st['study']} ({st['tracking_uri']}): {st['done']}/{st['planned']} done, {st['running']} "
                  f"running, {st['failed']} failed, {st['remaining']} remaining")  # fmt: skip
            for f in st["failed_trials"]:
                print(f"  FAILED {f['run']}: {f['error']}")
            return 0
        outcome = run_completion_study(spec, args.address, getattr(args, "wait", False))
    except (
        StudyError,
        FileNotFoundError,
        ModelNotAvailableError,
    ) as err:  # bad file, data or model: one line
        print(f"error: {err}", file=sys.stderr)
        return 2
    log(f"done: {outcome.finished}/{outcome.planned} trials FINISHED, {len(outcome.failed)} failed, "
        f"teacher passes made by this study: {outcome.teacher_passes}")  # fmt: skip
    for f in outcome.failed:
        log(f"  FAILED {f['run']}: {f['error']}")
    log(f"MLflow UI: {outcome.ui_command}")
    return 0 if outcome.complete else 1
