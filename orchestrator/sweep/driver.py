"""Run a study: the whole grid as one resumable Ray Tune sweep, every unit recorded in MLflow.

    python -m orchestrator.study smoke              # run (or resume) a built-in profile: smoke, local, full
    python -m orchestrator.study my_study.yaml      # or a YAML file
    python -m orchestrator.study smoke --plan [--json] [--calibrate]
    python -m orchestrator.study smoke --status [--json]

Stages: tokenizers -> teacher fine-tuning per (teacher, task) -> teacher cache per (teacher, task) -> student
trials. A stage whose output exists is skipped; a trial whose trial_key has a FINISHED MLflow run is not rerun.
When MLFLOW_TRACKING_URI is unset the study starts its own MLflow server on 127.0.0.1 (SQLite under the storage
path). With RAY_ADDRESS (or --address) it joins that cluster; otherwise it starts Ray on this machine.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import time
from pathlib import Path
from typing import Any

os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
# Ray reads this when it is imported: set here, before anything imports ray (a later setdefault is too late and Ray
# listens on every interface). A driver joining a cluster (RAY_ADDRESS/--address) does not start Ray here.
if not os.environ.get("RAY_ADDRESS"):
    os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")

from typing import TYPE_CHECKING  # noqa: E402

from orchestrator.cli_help import HelpFormatter  # noqa: E402

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
    server = tracking.start_server(spec.storage, wait=False)  # _run_locked waits for it after starting Ray
    return server.uri, server


def _init_ray(
    address: str | None, env: dict[str, str], storage: Path | None = None
) -> tuple[bool, Path | None]:
    """Join ``address`` (or RAY_ADDRESS) or start Ray here with its temp folder under the storage.
    Returns (whether this call started Ray, a symlink to remove when it stops)."""
    import ray

    from orchestrator.sweep import runenv
    from orchestrator.sweep.stages import log

    if ray.is_initialized():
        return False, None
    runtime_env = {"env_vars": {**env, **runenv.worker_env()}}
    address = address or os.environ.get("RAY_ADDRESS")
    if address:
        # Joining a cluster (or running as a Ray job): the job's own runtime environment (its working_dir) is
        # merged with ours (Ray >= 2.8), which only adds the declared tasks and quietness; trials get the tracking
        # URI as a parameter.
        extra = runenv.worker_env()
        ray.init(
            address=address, log_to_driver=False, **({"runtime_env": {"env_vars": extra}} if extra else {})
        )
        return True, None
    # Keep every connection on loopback on a single machine (see ENVIRONMENT.md).
    os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")
    temp_dir, link, note = runenv.ray_temp_dir(storage) if storage is not None else (None, None, None)
    if note:
        log(note)
    ray.init(
        address="local",
        runtime_env=runtime_env,
        include_dashboard=False,
        log_to_driver=False,
        _temp_dir=temp_dir,
        logging_level="WARNING" if not runenv.verbose() else "INFO",
    )
    return True, link


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


def run_study(spec: StudySpec, address: str | None = None, wait: bool = False) -> StudyOutcome:
    """Run (or resume) the study while holding its lock (sweep/lock.py); ``wait``: wait for another driver."""
    from orchestrator.sweep.fastpath import nothing_left
    from orchestrator.sweep.lock import StudyLock
    from orchestrator.sweep.stages import log
    from orchestrator.sweep.startup import check_tracking
    from orchestrator.sweep.validate import check_study

    check_study(spec)  # every user error before anything starts
    if os.environ.get("MLFLOW_TRACKING_URI"):  # an unreachable server: one line within seconds, not a hang
        check_tracking(os.environ["MLFLOW_TRACKING_URI"])
    storage = Path(spec.storage).resolve()
    spec = spec.model_copy(update={"storage": str(storage)})
    lock = StudyLock(spec.study_dir)
    lock.acquire(wait=wait, say=log)
    with contextlib.ExitStack() as stack:
        stack.callback(lock.release)  # last out: after the server and Ray are stopped
        # Read from the store only while holding the lock: another driver may be creating it (MLflow's schema
        # migration does not survive two processes at once).
        done = nothing_left(spec, status)  # no MLflow server, no Ray (sweep/fastpath.py)
        if done is not None:
            log(f"nothing left to run: {done.finished}/{done.planned} trials FINISHED in {done.tracking_uri}")
            return done
        return _run_locked(spec, address, stack)


def _run_locked(spec: StudySpec, address: str | None, stack: contextlib.ExitStack) -> StudyOutcome:
    from orchestrator.study_index import remember_storage
    from orchestrator.sweep.data_source import resolve_spec_data, study_data
    from orchestrator.sweep.plan import build_plan, describe
    from orchestrator.sweep.stages import log

    spec = resolve_spec_data(spec)
    data = study_data(spec)  # absolute (see data_source.py); built under the storage when it is the default
    remember_storage(spec.name, spec.storage)
    plan = build_plan(spec)
    log(describe(plan).replace("\n", "\n    "))

    uri, server = _tracking_uri(spec, start=True)  # our own server starts in the background ...
    if server:
        stack.callback(server.stop)  # on every exit path, before the lock is released
    env = {"MLFLOW_TRACKING_URI": uri, "MLFLOW_DISABLE_TELEMETRY": "true", "TOKENIZERS_PARALLELISM": "false"}
    try:
        _start_ray(address, env, Path(spec.storage), stack)  # ... while Ray starts (tens of seconds each)
    except (
        BaseException
    ) as err:  # the study's parent run is closed with the reason (the server is stopped later)
        _server_ready(server)
        _close_failed_start(spec, uri, server, err)
        raise
    _server_ready(server)
    return _open_and_run(spec, plan, data, uri, server)


def _server_ready(server: tracking.MlflowServer | None) -> None:
    from orchestrator.sweep.stages import log

    if server:
        server.wait_ready()
        pid = server.process.pid if server.process else "?"
        log(f"MLflow server (started by this study, PID {pid}): {server.uri}")


def _experiment(client: Any, spec: StudySpec, uri: str, server: tracking.MlflowServer | None) -> str:
    """The study's experiment id, created with its artifact location when new."""
    from orchestrator.sweep import tracking

    # With our own server, artifacts go straight to files under the storage path, so the SQLite store can be read
    # (notebooks, --status) after the server is gone. A user's server decides where its artifacts go.
    location = None
    if server:
        location = (server.artifacts / spec.name).as_uri()
    elif uri.startswith("sqlite:///"):
        # MLflow would default to ./mlruns in the current folder: keep artifacts beside the database instead.
        location = (Path(uri.removeprefix("sqlite:///")).resolve().parent / "artifacts" / spec.name).as_uri()
    return tracking.experiment_id(client, spec.name, artifact_location=location)


def _close_failed_start(
    spec: StudySpec, uri: str, server: tracking.MlflowServer | None, err: BaseException
) -> None:
    """A start-up fault (Ray did not start): the parent run records it, FAILED with the reason."""
    from mlflow.tracking import MlflowClient

    from orchestrator.sweep.startup import close_parent

    try:
        client = MlflowClient(uri)
        close_parent(client, _parent_run(client, _experiment(client, spec, uri, server), spec), err)
    except Exception:  # noqa: BLE001, S110 - MLflow may be what failed too; the start-up fault is what is raised
        pass


def _start_ray(address: str | None, env: dict[str, str], storage: Path, stack: contextlib.ExitStack) -> None:
    import ray

    from orchestrator.sweep import runenv

    links: list[Path | None] = []
    stack.callback(lambda: [runenv.remove_link(x) for x in links])  # after Ray has stopped
    if not ray.is_initialized():
        stack.callback(ray.shutdown)  # also when ray.init fails half-way (a start-up timeout)
    links.append(_init_ray(address, env, storage)[1])


def _open_and_run(
    spec: StudySpec, plan: StudyPlan, data: str, uri: str, server: tracking.MlflowServer | None
) -> StudyOutcome:
    """The study's experiment and parent run, then the stages."""
    from mlflow.tracking import MlflowClient

    from orchestrator.sweep import mlflow_view, tracking
    from orchestrator.sweep.stages import StudyOutcome, log
    from orchestrator.sweep.startup import close_parent

    client = MlflowClient(uri)
    exp_id = _experiment(client, spec, uri, server)
    mlflow_view.describe_experiment(client, exp_id, spec)
    # Safe only because this driver holds the study's lock: a RUNNING run now belongs to no live driver.
    stale = tracking.mark_stale_running(client, exp_id, "left RUNNING by an earlier driver that stopped")
    if stale:
        log(f"marked {stale} run(s) left RUNNING by an earlier driver as KILLED")
    parent = _parent_run(client, exp_id, spec)
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
    except BaseException as err:
        close_parent(client, parent, err)
        raise
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
    stage_finish(plan, client, exp_id, parent, outcome, {c["key"] for c in caches.values()})


def status(spec: StudySpec) -> dict[str, Any]:
    """Done, running, orphaned, failed and remaining trials, from MLflow and the study's lock (sweep/counts.py)."""
    from mlflow.tracking import MlflowClient

    from orchestrator.sweep import tracking
    from orchestrator.sweep.counts import driver_of, require_store, trial_counts
    from orchestrator.sweep.data_source import resolve_spec_data
    from orchestrator.sweep.plan import build_plan, data_key
    from orchestrator.sweep.spec import StudyError
    from orchestrator.sweep.startup import check_tracking
    from orchestrator.sweep.tracking import local_store_uri
    from orchestrator.sweep.tuning import resolve_final, tuning_status

    uri = os.environ.get("MLFLOW_TRACKING_URI") or local_store_uri(spec.storage)
    require_store(spec, uri)
    check_tracking(uri)
    client = MlflowClient(uri)
    # the data as the run resolved it (data_source.py), so trial keys and the data key agree with the run's
    spec = resolve_spec_data(spec.model_copy(update={"storage": str(Path(spec.storage).resolve())}))
    plan = build_plan(spec)
    exp = client.get_experiment_by_name(spec.name)
    if exp is None:
        raise StudyError(f"no study '{spec.name}' in {uri}; run it first, or pass the --storage it ran with")
    plan, _ = resolve_final(plan, client, exp.experiment_id)
    planned = {
        t.trial_key for t in plan.trials
    }  # a tuned study's final trials are keyed by their cell's best
    runs = tracking.runs_by_stage(client, exp.experiment_id, "student")
    return {
        "study": spec.name,
        "tracking_uri": uri,
        "planned": len(planned),
        **trial_counts(runs, planned, data_key(spec), driver_of(spec)),
        "tuning": tuning_status(plan, client, exp.experiment_id),
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        prog="python -m orchestrator.study", description=__doc__, formatter_class=HelpFormatter
    )
    p.add_argument("study", help="a profile (smoke, local, full) or a study YAML file")
    p.add_argument("--plan", action="store_true", help="print what the study would run, run nothing")
    p.add_argument(
        "--status", action="store_true", help="done / running / failed / remaining trials from MLflow"
    )
    p.add_argument(
        "--calibrate", action="store_true", help="time its units here first; --plan then uses that"
    )
    p.add_argument("--json", action="store_true", help="with --plan or --status: print JSON")
    p.add_argument(
        "--storage",
        help="where caches, checkpoints, MLflow (if started here), Ray's temp files and results live "
        "(default: the study's `storage:`, runs)",
    )
    p.add_argument("--address", help="Ray cluster address (default: RAY_ADDRESS, else start Ray here)")
    p.add_argument(
        "--wait",
        action="store_true",
        help="when another driver runs this study, wait for it instead of stopping (README: two drivers)",
    )
    p.add_argument("--debug", action="store_true", help="print the traceback of an error, too")
    p.add_argument(
        "--verbose", action="store_true", help="also print MLflow's run links and Ray Tune's tables"
    )
    args = p.parse_args(argv)
    from orchestrator.sweep import runenv
    from orchestrator.sweep.errors import run_guarded

    runenv.set_verbosity(args.verbose)
    return run_guarded(lambda: _command(args), args.debug)


def _command(args: argparse.Namespace) -> int:
    from orchestrator.sweep.completion_spec import is_completion_study  # task: completion has its own stages

    if is_completion_study(args.study):
        from orchestrator.sweep.completion_driver import completion_main
        from orchestrator.sweep.spec import StudyError

        if args.calibrate:
            raise StudyError("--calibrate: a completion study is planned by FLOP count only")

        return completion_main(args)
    from orchestrator.sweep import report
    from orchestrator.sweep.spec import load_spec
    from orchestrator.sweep.validate import check_study

    storage = args.storage
    if storage is None and (args.status or args.plan or args.calibrate):
        storage = report.remembered_for(args.study)  # where it ran, so --status needs no --storage
    spec = load_spec(args.study, {"storage": storage} if storage else None)
    if args.plan or args.calibrate:
        check_study(spec)
        return report.plan_command(spec, status, args.json, args.calibrate, args.plan)
    if args.status:
        st = status(spec)
        if args.json:
            print(json.dumps(st, indent=2))
        else:
            print(
                f"study {st['study']} ({st['tracking_uri']}): {st['done']}/{st['planned']} done, "
                f"{st['running']} running, {st['failed']} failed, {st['remaining']} remaining"
            )
            if st["driver"]:
                print(f"  driver running it: {st['driver']}")
            if st["orphaned"]:
                print(
                    f"  {st['orphaned']} run(s) RUNNING without a live driver (orphaned; the next run redoes them)"
                )
            if st["stale_finished"]:
                why = f"{st['stale_data']} on other data: the data changed since" if st["stale_data"] else ""
                print(
                    f"  {st['stale_finished']} finished run(s) no longer match the study ({why or 'settings changed'}); "
                    "not counted as done"
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

    start = time.time()
    outcome = run_study(spec, args.address, wait=args.wait)
    from orchestrator.sweep.stages import log  # MLflow: not for --plan

    for line in report.summary_lines(outcome, spec.storage, time.time() - start, args.study):
        log(line)
    return 0 if outcome.complete else 1


if __name__ == "__main__":
    raise SystemExit(main())
