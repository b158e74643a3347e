"""Running a study of either kind: ``run_study`` holds the study's lock (``core/lock.py``), answers a finished
study from the store (``fastpath.py``), builds its default data under the storage, starts (or joins) MLflow and Ray
with everything under ``--storage``, opens the experiment and parent run, and runs the stages top to bottom:
the kind's teacher stages, the tuning stage (classification, when the study tunes), the trial stage, the study's
final state. Whatever it started is stopped on every way out, before the lock is released."""

from __future__ import annotations

import contextlib
import os
from pathlib import Path
from typing import Any

from orchestrator.core import tracking
from orchestrator.core.errors import StudyError, disk_full
from orchestrator.core.log import log, tune_log
from orchestrator.core.process import start_ray, study_env
from orchestrator.sweep.context import StudyContext, StudyOutcome, experiment, parent_run


def run_study(
    spec: Any, address: str | None = None, wait: bool = False, study_arg: str | None = None
) -> StudyOutcome:
    """Run (or resume) the study while holding its lock; ``wait``: wait for another driver to finish first;
    ``study_arg``: the study as the user typed it (a file or a profile), for advice to name."""
    study_env(address)  # before anything imports ray (see core/process.py)
    from orchestrator.core.lock import StudyLock
    from orchestrator.design.data_source import resolve_spec_data
    from orchestrator.design.validate import check_study
    from orchestrator.sweep.fastpath import nothing_left

    spec = resolve_spec_data(spec.model_copy(update={"storage": str(Path(spec.storage).resolve())}))
    check_study(spec)  # every user error before anything starts
    if os.environ.get("MLFLOW_TRACKING_URI"):  # an unreachable server: one line within seconds, not a hang
        tracking.check_tracking(os.environ["MLFLOW_TRACKING_URI"])
    lock = StudyLock(spec.study_dir)
    lock.acquire(wait=wait, say=log)
    with contextlib.ExitStack() as stack:
        stack.callback(lock.release)  # last out: after the server and Ray are stopped
        # Read from the store only while holding the lock: another driver of this study may be creating it
        # (MLflow's schema migration does not survive two processes at once; others wait on core/store.py's lock).
        done = nothing_left(spec)  # no MLflow server, no Ray (sweep/fastpath.py)
        if done is not None:
            log(f"nothing left to run: {done.finished}/{done.planned} trials FINISHED in {done.tracking_uri}")
            return done
        from orchestrator.design.hub_check import check_hub_assets

        # hub data and teachers the cache lacks, with no hub to fetch them from: one line before MLflow or Ray;
        # with the hub there, the datasets are fetched now, so the plan's keys name their snapshots
        check_hub_assets(spec, study_arg)
        try:
            return _run_locked(spec, address, stack)
        except Exception as err:  # a full disk in any stage: one line naming where (core/errors.py)
            full = None if isinstance(err, StudyError) else disk_full(err, spec.storage)
            if full is None:
                raise
            raise full from err


def _check_address(address: str | None) -> None:
    """A Ray address nobody answers at: one line within seconds, before the MLflow server or Ray starts (ray.init
    retries it for minutes, deaf to SIGTERM)."""
    from orchestrator.core.probe import ray_unreachable_reason

    why = ray_unreachable_reason(address, timeout=5.0) if address else None
    if why:
        source = "--address" if address != os.environ.get("RAY_ADDRESS") else "RAY_ADDRESS"
        raise StudyError(f"{source} {address}: no Ray cluster answers there ({why})")


def _run_locked(spec: Any, address: str | None, stack: contextlib.ExitStack) -> StudyOutcome:
    from orchestrator.design.data_source import prepare_data
    from orchestrator.design.describe import describe
    from orchestrator.design.study import build_plan
    from orchestrator.study_index import remember_storage

    _check_address(address or os.environ.get("RAY_ADDRESS"))  # a study with nothing left never needed Ray
    prepare_data(spec)  # the default data, built under the storage when it is missing
    remember_storage(spec.name, spec.storage)
    plan = build_plan(spec)
    log(describe(plan).replace("\n", "\n    "))
    server = None
    uri = os.environ.get("MLFLOW_TRACKING_URI")
    if not uri:  # our own server (its store made first) starts in the background while Ray starts
        server = tracking.start_server(spec.storage, wait=False, study=spec.name)
        stack.callback(server.stop)  # on every exit path, before the lock is released
        uri = server.uri
    env = {"MLFLOW_TRACKING_URI": uri, "MLFLOW_DISABLE_TELEMETRY": "true", "TOKENIZERS_PARALLELISM": "false"}
    try:
        _start_ray(address, env, Path(spec.storage), stack)
    except (
        BaseException
    ) as err:  # the study's parent run is closed with the reason (the server is stopped later)
        _server_ready(server)
        _close_failed_start(spec, uri, server, err)
        raise
    _server_ready(server)
    if server is not None:  # on the way out, the server's shutdown overlaps Ray's (both take seconds)
        stack.callback(server.terminate)
    from orchestrator.sweep.cluster_check import check_cluster

    try:  # nodes of other hosts see the storage and reach MLflow, before the first stage (sweep/cluster_check.py)
        checked = check_cluster(spec.storage, uri)
    except StudyError as err:
        _close_failed_start(spec, uri, server, err)
        raise
    if checked:
        log(f"cluster: {checked} node(s) on other hosts see the storage and reach MLflow")
    from orchestrator.core.server_watch import watched

    stack.enter_context(watched(server))  # a lost server is started again (stopped before the server is)
    return _open_and_run(spec, plan, uri, server)


def _start_ray(address: str | None, env: dict[str, str], storage: Path, stack: contextlib.ExitStack) -> None:
    import ray

    from orchestrator.core.paths import remove_link

    links: list[Path | None] = []
    stack.callback(lambda: [remove_link(x) for x in links])  # after Ray has stopped
    if not ray.is_initialized():
        stack.callback(ray.shutdown)  # also when ray.init fails half-way (a start-up timeout)
    links.append(start_ray(address, env, storage)[1])


def _server_ready(server: tracking.MlflowServer | None) -> None:
    if server:
        server.wait_ready()
        pid = server.process.pid if server.process else "?"
        log(f"MLflow server (started by this study, PID {pid}): {server.uri}")


def _close_failed_start(spec: Any, uri: str, server: Any, err: BaseException) -> None:
    """A start-up fault (Ray did not start): the parent run records it, FAILED with the reason."""
    from mlflow.tracking import MlflowClient

    try:
        client = MlflowClient(uri)
        tracking.close_parent(client, parent_run(client, experiment(client, spec, uri, server), spec), err)
    except Exception:  # noqa: BLE001, S110 - MLflow may be what failed too; the start-up fault is what is raised
        pass


def _open_and_run(spec: Any, plan: Any, uri: str, server: Any) -> StudyOutcome:
    """The study's experiment and parent run, then the stages."""
    from mlflow.tracking import MlflowClient

    from orchestrator.sweep.mlflow_view import describe_experiment

    client = MlflowClient(uri)
    exp_id = experiment(client, spec, uri, server)
    describe_experiment(client, exp_id, spec)
    # Safe only because this driver holds the study's lock: a RUNNING run now belongs to no live driver.
    stale = tracking.mark_stale_running(client, exp_id, "left RUNNING by an earlier driver that stopped")
    _clear_scratch(spec)
    if stale:
        log(f"marked {stale} run(s) left RUNNING by an earlier driver as KILLED")
    parent = parent_run(client, exp_id, spec)
    ui = server.ui_command() if server else f"open {uri}"
    outcome = StudyOutcome(spec.name, uri, exp_id, planned=len(plan.trials), finished=0, ui_command=ui)
    try:
        run_stages(StudyContext(spec, plan, client, exp_id, parent, uri, outcome))
    except BaseException as err:
        if isinstance(err, KeyboardInterrupt):  # Ctrl-C: the trials running now were stopped, not failed
            tracking.mark_stale_running(client, exp_id, "the study was interrupted (Ctrl-C); rerun to resume")
        full = disk_full(err, spec.storage) if isinstance(err, Exception) else None
        tracking.close_parent(client, parent, full or err)  # the reason as the user reads it
        if full is not None:
            raise full from err
        raise
    return outcome


def _clear_scratch(spec: Any) -> None:
    """Scratch folders of trials a killed driver (or a killed worker) left: no trial of this study runs now (the
    lock), so whatever is in its scratch is a leftover."""
    import shutil

    from orchestrator.core.paths import scratch_dir

    root = scratch_dir(spec.storage, spec.name)
    for old in root.glob("trial-*") if root.is_dir() else []:
        shutil.rmtree(old, ignore_errors=True)


def run_stages(ctx: StudyContext) -> None:
    """The stages in order; each skips what exists: the kind's teacher stages (classification: tokenizers, teacher
    fine-tunes, teacher caches; completion: teachers, teacher caches), tuning (a classification study that tunes),
    the trials, the study's final state."""
    from orchestrator.sweep import completion_stages, stages
    from orchestrator.sweep.trials import check_packing, stage_finish, stage_trials
    from orchestrator.sweep.tuning_stage import stage_tuning

    if ctx.spec.kind == "classification":  # k packed students per GPU must fit, before the first teacher
        check_packing(ctx)
    teacher_stages = {"classification": stages.teacher_stages, "completion": completion_stages.teacher_stages}
    teacher_stages[ctx.spec.kind](ctx)
    with tune_log(Path(ctx.spec.study_dir) / "tune.log"):  # Tune's tracebacks: there, not on the console
        stage_tuning(ctx)  # tuning: none (and every completion study): nothing to do
        stage_trials(ctx)
    stage_finish(ctx)
