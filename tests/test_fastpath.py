"""A study whose MLflow store already records every planned trial FINISHED ends without MLflow server or Ray."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient

from orchestrator.core import tracking
from orchestrator.design.data_source import resolve_spec_data
from orchestrator.design.identity import data_key
from orchestrator.design.study import build_plan, load_spec
from orchestrator.sweep.driver import run_study
from orchestrator.sweep.fastpath import nothing_left

ROOT = Path(__file__).resolve().parents[1]


def _record_done(storage: Path, skip: int = 0, parent_status: str = "FINISHED") -> tuple[object, int]:
    """The SQLite store a finished smoke study leaves: a parent run and one FINISHED run per planned trial."""
    spec = load_spec("smoke", {"storage": str(storage.resolve())})
    # keyed as the driver keys them: the data it would resolve (data_source.py), identified by content
    resolved = resolve_spec_data(spec)
    plan, key = build_plan(resolved), data_key(resolved)
    uri, _ = tracking.local_store(storage)
    client = MlflowClient(uri)
    exp = tracking.experiment_id(client, spec.name)
    parent = client.create_run(exp, tags={"stage": "study", "study": spec.name})
    client.log_metric(parent.info.run_id, "teacher_passes", 3)
    client.set_terminated(parent.info.run_id, parent_status)
    for trial in plan.trials[skip:]:
        tags = {"stage": "student", "trial_key": trial.trial_key, "data_key": key}
        run = client.create_run(exp, tags=tags)
        client.set_terminated(run.info.run_id, "FINISHED")
    return spec, len(plan.trials)


def test_finished_study_ends_from_the_store_without_servers(tmp_path: Path) -> None:
    spec, planned = _record_done(tmp_path)
    spec = spec.model_copy(update={"storage": str(tmp_path.resolve())})
    done = nothing_left(spec)
    assert done is not None and done.complete and done.planned == planned and done.teacher_passes == 3
    # The whole command, in a fresh interpreter: it must not start Ray or an MLflow server.
    start = time.perf_counter()
    proc = subprocess.run(
        [sys.executable, "-m", "orchestrator.study", "smoke", "--storage", str(tmp_path)],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=300,
    )
    seconds = time.perf_counter() - start
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert f"{planned}/{planned} trials FINISHED" in proc.stderr + proc.stdout
    assert "nothing left to run" in proc.stderr + proc.stdout
    assert "MLflow server (started" not in proc.stderr + proc.stdout
    assert not (tmp_path / "ray").exists() and seconds < 120


def test_a_missing_trial_or_unfinished_parent_takes_the_normal_way(tmp_path: Path) -> None:
    spec, _ = _record_done(tmp_path / "a", skip=1)
    assert nothing_left(spec.model_copy(update={"storage": str((tmp_path / "a").resolve())})) is None
    spec, _ = _record_done(tmp_path / "b", parent_status="FAILED")
    assert nothing_left(spec.model_copy(update={"storage": str((tmp_path / "b").resolve())})) is None
    # A study that never ran has no store, and looking does not create one.
    fresh = load_spec("smoke", {"storage": str(tmp_path / "c")})
    assert nothing_left(fresh) is None and not (tmp_path / "c").exists()


def test_run_study_returns_the_finished_outcome(tmp_path: Path) -> None:
    import ray

    spec, planned = _record_done(tmp_path)
    outcome = run_study(spec)
    assert outcome.complete and outcome.finished == planned and not ray.is_initialized()


def test_spent_hours_sum_the_finished_runs(tmp_path: Path) -> None:
    """What the parent run records as spent: finished trials' and teachers' seconds, failed runs left out."""
    from orchestrator.sweep.cost import spent

    client = MlflowClient(tracking.local_store(tmp_path)[0])
    exp = tracking.experiment_id(client, "cost")
    rows = [
        ("student", "FINISHED", {"trial_seconds": 1800.0, "train_seconds": 1500.0}),
        ("tune", "FINISHED", {"trial_seconds": 1800.0, "train_seconds": 900.0}),
        ("student", "FAILED", {"trial_seconds": 7200.0, "train_seconds": 7200.0}),
        ("teacher_finetune", "FINISHED", {"train_seconds": 3600.0}),
        ("teacher_cache", "FINISHED", {"build_seconds": 1800.0}),
    ]
    for stage, status_, metrics in rows:
        run = client.create_run(exp, tags={"stage": stage})
        for key, value in metrics.items():
            client.log_metric(run.info.run_id, key, value)
        client.set_terminated(run.info.run_id, status_)
    got = spent(client, exp, planned_hours=2.5)
    assert got == {
        "spent_trial_hours": 1.0,
        "spent_train_hours": pytest.approx(2400 / 3600),
        "spent_teacher_hours": 1.5,
        "planned_gpu_hours": 2.5,
    }
