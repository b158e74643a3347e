"""A first run that informs (issue 24): the stage in progress (core/progress.py) as the driver prints it and
``--status`` shows it, and the end summary's scores per method with the runs at their majority baseline
(sweep/scores.py)."""

from __future__ import annotations

import json
import time
from pathlib import Path
from types import SimpleNamespace

import pytest

from orchestrator.core.progress import StageProgress, clear, progress_dir, read_stages, stage_line
from orchestrator.sweep.scores import ADVICE, method_scores, score_lines, study_score_lines


def test_a_fine_tune_writes_each_epoch_and_removes_its_file_at_the_end(tmp_path: Path) -> None:
    folder = progress_dir(tmp_path, "smoke")
    state = StageProgress(folder, "teacher fine-tune", "exception/t-abc", total=8)
    on_epoch = state.epoch_callback("macro_f1")
    on_epoch({"epoch": 3.0, "train_loss": 0.4123, "val_accuracy": 0.9, "val_macro_f1": 0.731})
    (only,) = read_stages(folder)
    assert (only["done"], only["total"], only["loss"], only["val_score"]) == (3, 8, 0.4123, 0.731)
    line = stage_line(only)
    assert line.startswith("teacher fine-tune exception/t-abc: 3/8 epochs, loss 0.4123, val 0.731, ")
    assert not list(folder.glob("*.tmp*"))  # replaced atomically
    state.close()  # kept as finished, so a driver that polls every few seconds still prints how it ended
    (ended,) = read_stages(folder)
    assert ended["finished"] and ", finished after " in stage_line(ended) and ended["done"] == 3


def test_status_lines_show_the_stage_in_progress_under_a_live_driver_else_interrupted(tmp_path: Path) -> None:
    from orchestrator.sweep.status import status_lines, unfinished_stages

    spec = SimpleNamespace(storage=str(tmp_path), name="smoke")
    build = StageProgress(progress_dir(tmp_path, "smoke"), "cache build", "t/exception", 0, "shards")
    assert stage_line(build.update(0)).startswith("cache build t/exception: starting, ")
    build.total = 4
    build.update(1)
    st = {
        "study": "smoke", "tracking_uri": "sqlite:///x", "done": 0, "planned": 3, "running": 0, "failed": 0,
        "remaining": 3, "driver": "pid 1 on host", "orphaned": 0, "stale_finished": 0, "tuning": None,
        "failed_trials": [], "in_progress": unfinished_stages(spec), "teachers": 2, "teachers_done": 2,
        "caches": 2, "caches_done": 1,
    }  # fmt: skip
    lines = status_lines(st)
    assert any(li.startswith("  in progress: cache build t/exception: 1/4 shards") for li in lines)
    assert "  teachers: 2/2 ready, 1/2 teacher caches built (students start after them)" in lines
    # the driver was killed: the same unit is interrupted, not in progress, and the next run redoes it
    killed = {**st, "driver": None, "in_progress": [], "interrupted": unfinished_stages(spec)}
    (line,) = [li for li in status_lines(killed) if "cache build" in li]
    assert line.startswith("  interrupted: cache build t/exception: 1/4 shards") and line.endswith(
        "redoes it)"
    )
    build.close()
    assert unfinished_stages(spec) == []  # a unit that ended is neither
    build.update(2)
    clear(progress_dir(tmp_path, "smoke"))
    assert unfinished_stages(spec) == []
    done = {**st, "caches_done": 2, "in_progress": []}
    assert not any("teachers:" in li for li in status_lines(done))  # said only while some are missing


def test_wait_logging_prints_each_new_epoch_once(tmp_path: Path) -> None:
    """The driver side, with a real Ray task writing the file while the driver waits."""
    import ray

    from orchestrator.core.progress import wait_logging

    def work(folder: str) -> int:
        state = StageProgress(Path(folder), "teacher fine-tune", "exception/t", 2)
        for epoch in (1, 2):
            state.update(epoch, loss=1.0 / epoch)
            time.sleep(1.5)
        state.close()
        return 7

    started = not ray.is_initialized()
    if started:
        ray.init(address="local", num_cpus=1, include_dashboard=False, log_to_driver=False)
    try:
        said: list[str] = []
        ref = ray.remote(num_cpus=0)(work).remote(str(tmp_path))
        assert wait_logging(ref, tmp_path, said.append, every=0.3) == 7
        # the next unit's wait (the cache build after the fine-tune) prints its own unit only: the finished
        # fine-tune still in the folder was printed already (issue 24: "finished" printed twice)
        later: list[str] = []
        assert wait_logging(ray.put(8), tmp_path, later.append, every=0.3) == 8
    finally:
        if started:
            ray.shutdown()
    assert [s.split(", ")[0] for s in said] == [
        "teacher fine-tune exception/t: 1/2 epochs",
        "teacher fine-tune exception/t: 2/2 epochs",
        "teacher fine-tune exception/t: 2/2 epochs",  # and finished
    ]
    assert "finished after" in said[-1] and "finished" not in said[1]
    assert later == []


def test_scores_per_method_count_runs_at_their_baseline_and_advise() -> None:
    rows = [
        {"task": "exception", "method": "ft", "test_score": 0.104, "test_majority_baseline": 0.104},
        {"task": "exception", "method": "ft", "test_score": 0.80, "test_majority_baseline": 0.104},
        {"task": "exception", "method": "kd", "test_score": 0.106, "test_majority_baseline": 0.104},  # margin
        {"task": "exception", "method": "kd", "test_score": 0.70, "test_majority_baseline": 0.104},
        {"task": "exception", "method": "dist", "test_score": 0.5, "test_majority_baseline": None},  # unknown
        {"task": "clone", "method": "ft", "test_score": 0.9, "test_majority_baseline": 0.67},
    ]
    ft, kd, dist, clone_ft = method_scores(rows)
    assert (ft.runs, ft.at_baseline, kd.at_baseline, dist.with_baseline) == (2, 1, 1, 0)
    assert ft.mean == pytest.approx(0.452) and (clone_ft.task, clone_ft.mean) == ("clone", 0.9)
    lines = score_lines(rows)
    assert lines[1] == "  exception"
    assert lines[2] == "    ft       0.4520 over 2 run(s); 1/2 at or below the majority baseline"
    assert lines[4] == "    dist     0.5000 over 1 run(s)" and lines[-1] == ADVICE
    # tasks' headline metrics differ (accuracy, F1): each task has its own lines, never one mean across them
    assert lines[5:7] == [
        "  clone",
        "    ft       0.9000 over 1 run(s); 0/1 at or below the majority baseline",
    ]
    assert "docs/OWN_DATA.md" in ADVICE and "tuning" in ADVICE and "lr" in ADVICE
    good = [{"task": "clone", "method": "ft", "test_score": 0.9, "test_majority_baseline": 0.3}]
    assert ADVICE not in score_lines(good) and score_lines([]) == []


def test_study_score_lines_read_the_finished_student_runs_from_the_store(tmp_path: Path, monkeypatch) -> None:
    from mlflow.tracking import MlflowClient

    from orchestrator.core.paths import local_store_uri

    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    (tmp_path / "mlflow").mkdir()
    client = MlflowClient(local_store_uri(tmp_path))
    exp = client.create_experiment("smoke")
    for method, score, status in (("ft", 0.25, "FINISHED"), ("kd", 0.9, "FINISHED"), ("kd", 0.1, "FAILED")):
        run = client.create_run(exp, tags={"stage": "student", "task": "defect", "method": method})
        client.log_metric(run.info.run_id, "test_score", score)
        client.log_metric(run.info.run_id, "test_majority_baseline", 0.25)
        client.set_terminated(run.info.run_id, status)
    lines = study_score_lines(str(tmp_path), SimpleNamespace(experiment_id=exp))
    assert lines[1] == "  defect"
    assert "    ft       0.2500 over 1 run(s); 1/1 at or below the majority baseline" in lines
    assert "    kd       0.9000 over 1 run(s); 0/1 at or below the majority baseline" in lines
    assert lines[-1] == ADVICE
    assert json.dumps(lines)  # plain strings, for the study log
