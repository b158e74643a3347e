"""What a user reads: the end-of-study summary (elapsed time, where results are, the next commands), ``--plan``
(with ``--calibrate``: measured first) and its done / remaining part for a study that exists."""

from __future__ import annotations

import shlex
import sys
from pathlib import Path
from typing import Any

from orchestrator.core.paths import existing_store
from orchestrator.study_index import SeveralStorages, remembered_storage


def _fmt_seconds(seconds: float) -> str:
    m, s = divmod(int(round(seconds)), 60)
    h, m = divmod(m, 60)
    return f"{h}h {m:02d}m {s:02d}s" if h else f"{m}m {s:02d}s"


def summary_lines(outcome: Any, storage: str | Path, elapsed_s: float, study_arg: str) -> list[str]:
    """The end summary: counts, elapsed time, where the results are, the UI and notebooks commands."""
    storage = Path(storage).resolve()
    lines = [
        f"done in {_fmt_seconds(elapsed_s)}: {outcome.finished}/{outcome.planned} trials FINISHED, "
        f"{len(outcome.failed)} failed, teacher passes made by this study: {outcome.teacher_passes}",
    ]
    lines += [f"  FAILED {f['run']}: {f['error']}" for f in outcome.failed]
    if outcome.tuning:  # a tuned study: failed tuning draws, cells not fully searched or all diverged
        from orchestrator.sweep.tuning import tuning_lines

        lines += tuning_lines(outcome.tuning, summary=True)
    lines += [
        f"results:   MLflow experiment '{outcome.name}' at {outcome.tracking_uri}",
        f"files:     {storage} (teachers, caches, checkpoints in mlflow/artifacts, Ray results)",
        f"MLflow UI: {outcome.ui_command}",
        f"the runs:  {_trials_link(outcome)}",
        f"answers:   python -m orchestrator.analysis notebooks --study {shlex.quote(outcome.name)}"
        f"   # executed copies in {storage / outcome.name / 'notebooks'}",
        f"status:    python -m orchestrator.study {shlex.quote(study_arg)} --status"
        + ("" if storage == Path("runs").resolve() else f" --storage {shlex.quote(str(storage))}"),
    ]
    return lines


def _trials_link(outcome: Any) -> str:
    from orchestrator.sweep.mlflow_view import runs_url

    if outcome.ui_command.startswith("mlflow server"):
        # the study's own server is gone when the summary prints: the link is for the UI command, on its port
        port = outcome.ui_command.split("--port ", 1)[1].split()[0]
        return runs_url(f"http://127.0.0.1:{port}", outcome.experiment_id)
    if outcome.tracking_uri.startswith("http"):
        return runs_url(outcome.tracking_uri, outcome.experiment_id)
    return f"(open the UI, experiment '{outcome.name}', filter tags.stage = 'student')"


def plan_progress(spec: Any) -> dict[str, Any] | None:
    """``status(spec)`` (done / remaining) of a study that exists (its store has the experiment); else None."""
    uri = existing_store(spec.storage)
    if uri is None:
        return None  # and MLflow is not even imported
    from mlflow.tracking import MlflowClient

    from orchestrator.core.store import mlflow_fail_fast, ready_store
    from orchestrator.sweep.status import status

    ready_store(uri)  # before the client below: a driver starting beside may still be making it
    # --plan must answer at once: a tracking server that is down is "no progress", not minutes of retries
    try:
        with mlflow_fail_fast(5):
            if MlflowClient(uri).get_experiment_by_name(spec.name) is None:
                return None
            return status(spec)
    except Exception:  # noqa: BLE001 - the plan stands without the progress line
        return None


def remembered_for(study_arg: str) -> str | None:
    """The storage a study (a profile name or YAML path, named as in its file) last ran with, if remembered."""
    from orchestrator.core.errors import StudyError
    from orchestrator.design.study import load_spec

    try:
        spec = load_spec(study_arg)
    except StudyError:
        return None  # reported when the study is loaded for real
    try:  # the storage its file names, when the study ran there: another storage's study of that name is not it
        found = remembered_storage(spec.name, spec.storage)
    except SeveralStorages as err:
        raise StudyError(str(err)) from None
    return str(found) if found else None


def plan_command(spec: Any, as_json: bool, calibrate: bool, show_plan: bool) -> int:
    """``--plan`` and ``--calibrate`` (either kind): measure step times on this device first when asked
    (design/calibrate.py), then print the plan (priced by a calibration for this device when the study's folder
    has one)."""
    import json

    from orchestrator.design.data_source import resolve_spec_data
    from orchestrator.design.describe import describe, plan_dict
    from orchestrator.design.hub_check import missing_lines
    from orchestrator.design.study import build_plan
    from orchestrator.design.validate import completion_data_problems

    hub_missing = missing_lines(spec)  # first: what to pre-fetch before a node without internet can run it
    if hub_missing and not as_json:
        print(f"hub assets missing from the local cache ({len(hub_missing)}; docs/HUB.md):")
        for line in hub_missing:
            print(f"  {line}")
    # a completion data folder not prepared yet: the plan prices py150's size; a run would stop on this line
    resolved = resolve_spec_data(
        spec
    )  # where the data is: here, or the storage's copy of a data set built on use
    data_missing = completion_data_problems(resolved) if spec.kind == "completion" else []
    if data_missing and not as_json:
        print("completion data not prepared yet (the plan assumes py150's size; a run stops until it is):")
        for line in data_missing:
            print(f"  {line}")
    if calibrate:
        from orchestrator.design.calibrate import calibrate as measure
        from orchestrator.design.calibrate import write_calibration

        say = (lambda line: print(line, file=sys.stderr)) if as_json else print
        result = measure(spec, say=say)
        say(
            f"calibration: {len(result['units'])} units in {result['seconds']:.1f} s -> {write_calibration(spec, result)}"
        )
        if not show_plan:
            return 0
    plan = build_plan(resolved)
    progress = plan_progress(spec)
    if as_json:
        print(
            json.dumps(
                {
                    **plan_dict(plan),
                    "progress": progress,
                    "hub_missing": hub_missing,
                    "data_missing": data_missing,
                },
                indent=2,
            )
        )
        return 0
    print(describe(plan))
    if progress:
        print(
            f"  progress            {progress['done']:>6} done, {progress['remaining']} remaining, "
            f"{progress['failed']} failed  (MLflow: {progress['tracking_uri']})"
        )
    return 0
