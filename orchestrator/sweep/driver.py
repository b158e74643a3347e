"""Run a study: the whole grid as one resumable Ray Tune sweep, every unit recorded in MLflow.

    python -m orchestrator.study smoke              # run (or resume) a built-in profile: smoke, local, full
    python -m orchestrator.study my_study.yaml      # or a YAML file
    python -m orchestrator.study smoke --plan [--json]
    python -m orchestrator.study smoke --status [--json]

Stages: tokenizers -> teacher fine-tuning per (teacher, task) -> teacher cache per (teacher, task) -> student
trials. A stage whose output exists is skipped; a trial whose trial_key has a FINISHED MLflow run is not rerun.
When MLFLOW_TRACKING_URI is unset the study starts its own MLflow server on 127.0.0.1 (SQLite under the storage
path). With RAY_ADDRESS (or --address) it joins that cluster; otherwise it starts Ray on this machine.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import Any

os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

from typing import TYPE_CHECKING  # noqa: E402

if TYPE_CHECKING:  # pydantic, MLflow, torch and Ray load where a command needs them: --help stays instant
    from orchestrator.sweep import tracking
    from orchestrator.sweep.plan import StudyPlan
    from orchestrator.sweep.spec import StudySpec
    from orchestrator.sweep.stages import StudyOutcome


def _tracking_uri(spec: StudySpec, start: bool) -> tuple[str, tracking.MlflowServer | None]:
    from orchestrator.sweep import tracking

    uri = os.environ.get("MLFLOW_TRACKING_URI")
    if uri:
        return uri, None
    if not start:
        return tracking.local_store(spec.storage)[0], None
    server = tracking.start_server(spec.storage)
    return server.uri, server


def _init_ray(address: str | None, env: dict[str, str]) -> bool:
    """Join ``address`` (or RAY_ADDRESS) or start Ray here. Returns True when this call started it."""
    import ray

    if ray.is_initialized():
        return False
    runtime_env = {"env_vars": env}
    address = address or os.environ.get("RAY_ADDRESS")
    if address:
        # Joining a cluster (or running as a Ray job): keep the job's own runtime environment (its working_dir);
        # trials get the tracking URI as a parameter, not from the environment.
        ray.init(address=address, log_to_driver=False)
    else:
        # Keep every connection on loopback on a single machine (see ENVIRONMENT.md).
        os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")
        ray.init(address="local", runtime_env=runtime_env, include_dashboard=False, log_to_driver=False)
    return True


def _parent_run(client: Any, exp_id: str, spec: StudySpec) -> str:
    from orchestrator.sweep import tracking

    runs = tracking.runs_by_stage(client, exp_id, "study")
    if runs:
        run_id = runs[0].info.run_id
        client.update_run(run_id, status="RUNNING")
        return run_id
    run = client.create_run(
        exp_id, run_name=f"study-{spec.name}", tags={"stage": "study", "study": spec.name}
    )
    tracking.log_params(
        client, run.info.run_id, {"study_name": spec.name, **json.loads(spec.model_dump_json())}
    )
    return run.info.run_id


def run_study(spec: StudySpec, address: str | None = None) -> StudyOutcome:
    import ray
    from mlflow.tracking import MlflowClient

    from orchestrator.sweep import tracking
    from orchestrator.sweep.plan import build_plan, describe
    from orchestrator.sweep.stages import StudyOutcome, log
    from orchestrator.train.trial import resolve_data

    storage = Path(spec.storage).resolve()
    storage.mkdir(parents=True, exist_ok=True)
    # An absolute path: Tune runs each trial in its own working folder, where a relative "data/local" would name
    # another (freshly built) data set than the one the teachers were fine-tuned and cached on.
    resolved = resolve_data(spec.data)
    data = resolved if resolved == "hub" else str(Path(resolved).resolve())
    spec = spec.model_copy(update={"storage": str(storage)})
    from orchestrator.sweep.fastpath import nothing_left

    done = nothing_left(spec, status)  # read from the store: no MLflow server, no Ray
    if done is not None:
        log(f"nothing left to run: {done.finished}/{done.planned} trials FINISHED in {done.tracking_uri}")
        return done
    plan = build_plan(spec)
    log(describe(plan).replace("\n", "\n    "))

    uri, server = _tracking_uri(spec, start=True)
    if server:
        log(f"MLflow server (started by this study): {server.uri}")
    client = MlflowClient(uri)
    # With our own server, artifacts go straight to files under the storage path, so the SQLite store can be read
    # (notebooks, --status) after the server is gone. A user's server decides where its artifacts go.
    location = None
    if server:
        location = (server.artifacts / spec.name).as_uri()
    elif uri.startswith("sqlite:///"):
        # MLflow would default to ./mlruns in the current folder: keep artifacts beside the database instead.
        location = (Path(uri.removeprefix("sqlite:///")).resolve().parent / "artifacts" / spec.name).as_uri()
    exp_id = tracking.experiment_id(client, spec.name, artifact_location=location)
    stale = tracking.mark_stale_running(client, exp_id, "left RUNNING by an earlier driver that stopped")
    if stale:
        log(f"marked {stale} run(s) left RUNNING by an earlier driver as KILLED")
    parent = _parent_run(client, exp_id, spec)
    env = {"MLFLOW_TRACKING_URI": uri, "MLFLOW_DISABLE_TELEMETRY": "true", "TOKENIZERS_PARALLELISM": "false"}
    started_ray = _init_ray(address, env)
    outcome = StudyOutcome(
        spec.name,
        uri,
        exp_id,
        planned=len(plan.trials),
        finished=0,
        ui_command=server.ui_command() if server else f"open {uri}",
    )
    try:
        _run_stages(spec, plan, data, client, exp_id, parent, uri, outcome)
    finally:
        if started_ray:
            ray.shutdown()
        if server:
            server.stop()
    return outcome


def _run_stages(
    spec: StudySpec,
    plan: StudyPlan,
    data: str,
    client: Any,
    exp_id: str,
    parent: str,
    uri: str,
    outcome: StudyOutcome,
) -> None:
    """The stages in order; each skips what exists (see the module docstring)."""
    from orchestrator.sweep.stages import (
        stage_finish,
        stage_teacher_cache,
        stage_teacher_finetune,
        stage_tokenizers,
    )
    from orchestrator.sweep.students import stage_students
    from orchestrator.sweep.tuning_stage import stage_tuning

    stage_tokenizers(spec, plan, data)
    stage_teacher_finetune(spec, plan, data, client, exp_id, parent)
    caches = stage_teacher_cache(spec, plan, data, client, exp_id, parent)
    plan = stage_tuning(spec, plan, data, caches, uri, client, exp_id, parent)  # tuning: none -> plan as is
    stage_students(spec, plan, data, caches, uri, client, exp_id, parent)
    stage_finish(plan, client, exp_id, parent, outcome)


def status(spec: StudySpec) -> dict[str, Any]:
    """Done, running, failed and remaining trials, from MLflow."""
    from mlflow.tracking import MlflowClient

    from orchestrator.sweep import tracking
    from orchestrator.sweep.plan import build_plan
    from orchestrator.sweep.tuning import resolve_final, tuning_status

    uri, _ = _tracking_uri(spec, start=False)
    client = MlflowClient(uri)
    plan = build_plan(spec.model_copy(update={"storage": str(Path(spec.storage).resolve())}))
    exp = client.get_experiment_by_name(spec.name)
    planned = {t.trial_key for t in plan.trials}
    if exp is None:
        return {
            "study": spec.name,
            "tracking_uri": uri,
            "planned": len(planned),
            "done": 0,
            "running": 0,
            "failed": 0,
            "remaining": len(planned),
            "failed_trials": [],
            "tuning": tuning_status(plan, client, None),
        }
    plan, _ = resolve_final(plan, client, exp.experiment_id)
    planned = {
        t.trial_key for t in plan.trials
    }  # a tuned study's final trials are keyed by their cell's best
    runs = tracking.runs_by_stage(client, exp.experiment_id, "student")
    done = {r.data.tags.get("trial_key") for r in runs if r.info.status == "FINISHED"} & planned
    running = [r for r in runs if r.info.status == "RUNNING"]
    failed = [r for r in runs if r.info.status == "FAILED" and r.data.tags.get("trial_key") not in done]
    return {
        "study": spec.name,
        "tracking_uri": uri,
        "planned": len(planned),
        "done": len(done),
        "running": len(running),
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
        "tuning": tuning_status(plan, client, exp.experiment_id),
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        prog="python -m orchestrator.study",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("study", help="a profile (smoke, local, full) or a study YAML file")
    p.add_argument("--plan", action="store_true", help="print what the study would run, run nothing")
    p.add_argument(
        "--status", action="store_true", help="done / running / failed / remaining trials from MLflow"
    )
    p.add_argument("--json", action="store_true", help="with --plan or --status: print JSON")
    p.add_argument(
        "--storage", help="where caches, checkpoints, MLflow (if started here) and Ray results live"
    )
    p.add_argument("--address", help="Ray cluster address (default: RAY_ADDRESS, else start Ray here)")
    args = p.parse_args(argv)
    from orchestrator.sweep.spec import StudyError, load_spec

    try:
        spec = load_spec(args.study, {"storage": args.storage} if args.storage else None)
    except StudyError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    from orchestrator.sweep.plan import build_plan, describe, plan_dict

    if args.plan:
        plan = build_plan(spec)
        print(json.dumps(plan_dict(plan), indent=2) if args.json else describe(plan))
        return 0
    if args.status:
        st = status(spec)
        if args.json:
            print(json.dumps(st, indent=2))
        else:
            print(
                f"study {st['study']} ({st['tracking_uri']}): {st['done']}/{st['planned']} done, "
                f"{st['running']} running, {st['failed']} failed, {st['remaining']} remaining"
            )
            if st["tuning"]:
                tu = st["tuning"]
                print(
                    f"  tuning: {tu['cells_done']}/{tu['cells']} cells tuned, "
                    f"{tu['trials_finished']}/{tu['trials_planned']} tuning trials finished"
                )
            for f in st["failed_trials"]:
                print(f"  FAILED {f['run']}: {f['error']}")
        return 0

    from orchestrator.sweep.stages import log

    outcome = run_study(spec, args.address)
    log(
        f"done: {outcome.finished}/{outcome.planned} trials FINISHED, {len(outcome.failed)} failed, "
        f"teacher passes made by this study: {outcome.teacher_passes}"
    )
    for f in outcome.failed:
        log(f"  FAILED {f['run']}: {f['error']}")
    log(f"MLflow UI: {outcome.ui_command}")
    return 0 if outcome.complete else 1


if __name__ == "__main__":
    raise SystemExit(main())
