"""``--status``, for either kind, with counts that are true: a RUNNING run is "running" only while a live driver
holds the study's lock (else it is "orphaned": its driver died), each failed trial counts once, and finished runs
whose key is no longer planned (the data or the settings changed since) are counted apart instead of as done."""

from __future__ import annotations

import calendar
import os
import time
from pathlib import Path
from typing import Any

from orchestrator.core.errors import StudyError
from orchestrator.core.lock import StudyLock
from orchestrator.core.progress import stage_line


def require_store(spec: Any, uri: str) -> None:
    """A local store that does not exist holds no study: say so instead of creating an empty one."""
    if uri.startswith("sqlite:///") and not Path(uri.removeprefix("sqlite:///")).is_file():
        raise StudyError(
            f"no study '{spec.name}' under storage {spec.storage} (no MLflow store at {uri}); "
            "pass the --storage it ran with, or MLFLOW_TRACKING_URI"
        )


def driver_of(spec: Any) -> tuple[str | None, float | None]:
    """The live driver holding the study, described, and when it took the lock (epoch seconds); or None, None."""
    holder = StudyLock(Path(spec.storage).resolve() / spec.name).holder()
    if not (holder and holder.alive()):
        return None, None
    return holder.describe(), calendar.timegm(time.strptime(holder.since, "%Y-%m-%dT%H:%M:%SZ"))


def trial_counts(
    runs: list[Any], planned: set[str], data_key: str, driver: str | None, since: float | None = None
) -> dict[str, Any]:
    """Done / running / orphaned / failed / stale from the study's ``student`` runs. A run left RUNNING from before
    the live driver took the lock (``since``) is an earlier driver's, orphaned, until that driver marks it KILLED
    (the live driver does so once MLflow and Ray are up)."""
    finished = [r for r in runs if r.info.status == "FINISHED"]
    done = {r.data.tags.get("trial_key") for r in finished} & planned
    running = [r for r in runs if r.info.status == "RUNNING"]
    earlier = [r for r in running if since is not None and (r.info.start_time or 0) / 1000 < since - 1]
    live = [r for r in running if r not in earlier]
    failed: dict[str, Any] = {}
    for r in sorted(runs, key=lambda r: r.info.start_time or 0):
        key = r.data.tags.get("trial_key")
        if r.info.status == "FAILED" and key not in done and key in planned:
            failed[key] = r  # the latest attempt of each failed trial, once
    stale = [r for r in finished if r.data.tags.get("trial_key") not in planned]
    other_data = [r for r in stale if r.data.tags.get("data_key", "") != data_key]
    return {
        "done": len(done),
        "running": len(live) if driver else 0,
        "orphaned": len(earlier) + (0 if driver else len(live)),
        "driver": driver,
        "failed": len(failed),
        "remaining": len(planned - done),
        "stale_finished": len(stale),
        "stale_data": len(other_data),
        "failed_trials": [
            {"run": r.info.run_name, "trial_key": k, "error": r.data.tags.get("error", "")}
            for k, r in failed.items()
        ],
    }


def status(spec: Any) -> dict[str, Any]:
    """Done, running, orphaned, failed and remaining trials, from MLflow and the study's lock (either kind)."""
    from mlflow.tracking import MlflowClient

    from orchestrator.core import tracking
    from orchestrator.core.paths import local_store_uri
    from orchestrator.core.store import ready_store
    from orchestrator.design.data_source import resolve_spec_data
    from orchestrator.design.study import build_plan
    from orchestrator.sweep.tuning import resolve_final, tuning_status

    uri = os.environ.get("MLFLOW_TRACKING_URI") or local_store_uri(spec.storage)
    require_store(spec, uri)
    tracking.check_tracking(uri)
    ready_store(uri)
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
    driver, since = driver_of(spec)
    return {
        "study": spec.name,
        **({"task": "completion"} if spec.kind == "completion" else {}),
        "tracking_uri": uri,
        "planned": len(planned),
        **trial_counts(runs, planned, plan.data_key, driver, since),
        "tuning": tuning_status(plan, client, exp.experiment_id),
        **teacher_counts(spec, plan, client, exp.experiment_id),
        "in_progress": unfinished_stages(spec) if driver else [],
        "interrupted": [] if driver else unfinished_stages(spec),
    }


def teacher_counts(spec: Any, plan: Any, client: Any, exp_id: str) -> dict[str, int]:
    """The plan's teachers (fine-tuned, or built for a completion study) and teacher caches recorded FINISHED in
    this study: a driver stopped in its teacher stages has no student run yet, and this is what it had done."""
    from orchestrator.core import tracking

    if spec.kind == "completion":  # scored on this data's line set
        from orchestrator.sweep.completion_stages import teacher_score_key

        runs = tracking.runs_by_stage(client, exp_id, "teacher", "FINISHED")
        scored = {r.data.tags.get("score_key") for r in runs}
        done = sum(teacher_score_key(u.key, plan.data_key) in scored for u in plan.teachers)
        return {"teachers": len(plan.teachers), "teachers_done": done}
    # a cache run's key is its content's (teacher folder and data fingerprints), not the plan unit's: by its slot
    cache_runs = tracking.runs_by_stage(client, exp_id, "teacher_cache", "FINISHED")
    cached = {
        (r.data.tags.get("teacher"), r.data.tags.get("task"), r.data.tags.get("labels", "all"))
        for r in cache_runs
    }
    return {
        "teachers": len(plan.teachers),
        "teachers_done": len(
            {u.key for u in plan.teachers} & tracking.finished_keys(client, exp_id, "teacher_finetune")
        ),
        "caches": len(plan.caches),
        "caches_done": len({(u.teacher, u.task, u.labels) for u in plan.caches} & cached),
    }


def unfinished_stages(spec: Any) -> list[dict[str, Any]]:
    """Teacher fine-tunes and cache builds not finished (core/progress.py): running now while a driver holds the
    study, else interrupted (the next run redoes them)."""
    from orchestrator.core.progress import progress_dir, read_stages

    return [s for s in read_stages(progress_dir(spec.storage, spec.name)) if not s.get("finished")]


def status_lines(st: dict[str, Any]) -> list[str]:
    """``--status`` as text."""
    lines = [
        f"study {st['study']} ({st['tracking_uri']}): {st['done']}/{st['planned']} done, "
        f"{st['running']} running, {st['failed']} failed, {st['remaining']} remaining"
    ]
    if st["driver"]:
        lines.append(f"  driver running it: {st['driver']}")
    if st.get("teachers") and (
        st["teachers_done"] < st["teachers"] or st.get("caches_done", 0) < st.get("caches", 0)
    ):
        caches = f", {st['caches_done']}/{st['caches']} teacher caches built" if "caches" in st else ""
        lines.append(
            f"  teachers: {st['teachers_done']}/{st['teachers']} ready{caches} (students start after them)"
        )
    lines += [f"  in progress: {stage_line(s)}" for s in st.get("in_progress", [])]
    lines += [f"  interrupted: {stage_line(s)} (the next run redoes it)" for s in st.get("interrupted", [])]
    if st["orphaned"]:
        lines.append(
            f"  {st['orphaned']} run(s) RUNNING without a live driver (orphaned: left by a driver that stopped; "
            f"{'the driver running it' if st['driver'] else 'the next run'} redoes them)"
        )
    if st["stale_finished"]:
        why = f"{st['stale_data']} on other data: the data changed since" if st["stale_data"] else ""
        lines.append(
            f"  {st['stale_finished']} finished run(s) no longer match the study ({why or 'settings changed'}); "
            "not counted as done"
        )
    if st["tuning"]:
        from orchestrator.sweep.tuning import tuning_lines

        lines += tuning_lines(st["tuning"])
    lines += [f"  FAILED {f['run']}: {f['error']}" for f in st["failed_trials"]]
    return lines
