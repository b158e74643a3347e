"""The tuning audit's findings (2026-12-08), each pinned on real MLflow SQLite stores, one on a real Ray Tune search:
typed tuned values (a boolean stays a boolean in the final and in Optuna's warm start), a draw that repeats an
earlier configuration is one sample (the cell completes instead of being tuned again forever), a cell whose every
draw diverged records its finals FAILED as diverged, a failed tuning draw keeps its cell's finals waiting and is
listed, ASHA-stopped tuning runs record their wall time, and the tuning analysis keeps the current cells and every
spent draw."""

from __future__ import annotations

import dataclasses
import math
from pathlib import Path

import pytest
from conftest import write_study
from mlflow.tracking import MlflowClient

from orchestrator.core import tracking
from orchestrator.design.study import build_plan, load_spec

DIVERGED = "NonFiniteLossError: loss became nan at epoch 1, step 2"


def _store(tmp_path: Path, name: str) -> tuple[MlflowClient, str, str]:
    """A real MLflow SQLite store with the study's experiment and its parent (study) run."""
    client = MlflowClient(f"sqlite:///{tmp_path / 'mlflow.db'}")
    exp = client.create_experiment(name)
    parent = client.create_run(exp, run_name=f"study-{name}", tags={"stage": "study", "study": name})
    return client, exp, parent.info.run_id


def _tune_run(client, exp, cell, key, status, score=None, error="", start=None, **tags):
    """A tuning run as the trial wrapper leaves it (score: its best validation selection score)."""
    all_tags = {"stage": "tune", "cell": cell, "trial_key": key, "tuned_params": "lr", **tags}
    if error:
        all_tags["error"] = error
    run = client.create_run(exp, start_time=start, tags=all_tags)
    run_id = run.info.run_id
    client.log_param(run_id, "lr", "0.001")
    if score is not None:
        client.log_metric(run_id, "best_val_selection_score", score)
    client.set_terminated(run_id, status)
    return run_id


# --- finding 2: typed values ---------------------------------------------------------------------------------


def test_a_boolean_tuned_value_stays_a_boolean_in_the_final_and_the_warm_start(tmp_path, local_data):
    from ray import tune

    from orchestrator.sweep.tuning import final_trial, tuned_values
    from orchestrator.sweep.tuning_stage import _base_trial, _searcher
    from orchestrator.sweep.tuning_trial import METRIC, with_sample

    spec = load_spec(write_study(tmp_path / "b.yaml", local_data, tuning={"samples": 2, "max_epochs": 1}))
    plan = build_plan(spec)
    cell = next(c for c in plan.cells if c.method == "kd")
    base = _base_trial(spec, cell)
    names = ("lr", "t_squared", "temperature")
    base = dataclasses.replace(
        base, tuned=names, tags={**base.tags, "tuned_params": "lr,method.t_squared,method.temperature"}
    )
    trial = with_sample(base, {"lr": 1e-3, "temperature": 2.0, "t_squared": False})
    client, exp, _ = _store(tmp_path, "b")

    def record(tags: dict) -> object:
        run_id = client.create_run(exp, tags=tags).info.run_id
        tracking.log_params(client, run_id, trial.params)
        client.log_metric(run_id, METRIC, 0.5)
        client.set_terminated(run_id, "FINISHED")
        return client.get_run(run_id)

    run = record(trial.tags)
    assert run.data.params["method.t_squared"] == "False"  # what MLflow holds: text, truthy
    assert tuned_values(run) == {"lr": 1e-3, "t_squared": False, "temperature": 2.0}
    planned = next(t for t in plan.trials if t.cell == cell.cell)
    final = final_trial(plan, planned, run)
    assert final.work.method_params["t_squared"] is False and final.work.method_params["temperature"] == 2.0
    assert final.tags["tuned_values"] == '{"lr": 0.001, "t_squared": false, "temperature": 2.0}'
    # a run made before the tag: its params, "False" read as False (it was the truthy string "False")
    older = record({k: v for k, v in trial.tags.items() if k != "tuned_values"})
    assert tuned_values(older)["t_squared"] is False
    assert final_trial(plan, planned, older).trial_key == final.trial_key
    # the Optuna warm start of a resumed cell takes the typed point (it raised "'False' not in (True, False)")
    space = {
        "lr": tune.loguniform(1e-5, 1e-3),
        "t_squared": tune.choice([True, False]),
        "temperature": tune.choice([2.0, 4.0]),
    }
    searcher = _searcher(spec, cell.cell, sorted(space), [run], 1)
    searcher.set_search_properties(METRIC, "max", space)
    assert searcher._ot_study.trials[0].params["t_squared"] is False


# --- finding 1 (and 6 under ASHA): a repeated draw is one sample --------------------------------------------


@pytest.fixture(scope="module")
def local_ray():
    import ray

    started = not ray.is_initialized()
    if started:
        ray.init(address="local", num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield
    if started:
        ray.shutdown()


def test_a_repeated_draw_is_one_sample_and_the_cell_completes(tmp_path, local_data, local_ray):
    """One FT cell whose space has one point, 3 samples, one at a time: Optuna draws the same configuration 3
    times. Before, the 2 repeats used Tune samples but made no run: the cell stayed at 1/3 and was tuned again on
    every run of the study, and its finals ran on one sample."""
    from orchestrator.sweep.context import StudyContext, StudyOutcome
    from orchestrator.sweep.tuning import tuning_status
    from orchestrator.sweep.tuning_stage import stage_tuning

    space = {"ft": {"lr": {"type": "choice", "values": [0.001]}}}
    tuning = {"searcher": "optuna", "scheduler": "asha", "samples": 3, "max_epochs": 1, "space": space}
    path = write_study(
        tmp_path / "dup.yaml", local_data, methods=["ft"], teachers=[], tuning=tuning,
        max_concurrent_trials=1, max_failures=0, storage=str(tmp_path / "runs"),
    )  # fmt: skip
    spec = load_spec(path)
    client, exp, parent = _store(tmp_path, "dup")
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"

    def tune_stage() -> StudyContext:
        plan = build_plan(spec)
        ctx = StudyContext(spec, plan, client, exp, parent, uri, StudyOutcome("dup", uri, exp, 1, 0))
        stage_tuning(ctx)
        return ctx

    ctx = tune_stage()
    runs = tracking.runs_by_stage(client, exp, "tune")
    assert len(runs) == 3 and {r.info.status for r in runs} == {"FINISHED"}
    trained = [r for r in runs if "duplicate_of" not in r.data.tags]
    assert len(trained) == 1
    first = trained[0]
    for r in runs:
        if r is not first:  # a repeat: its own run, the earlier result, nothing trained
            assert r.data.tags["duplicate_of"] == first.info.run_id
            assert r.data.tags["trial_key"] == first.data.tags["trial_key"]
            assert r.data.tags["tune_trial_id"] != first.data.tags["tune_trial_id"]
            assert r.data.metrics["trial_seconds"] == 0.0
            assert (
                r.data.metrics["best_val_selection_score"] == first.data.metrics["best_val_selection_score"]
            )
    # finding 6: ASHA stops even a full-length trial at its last report; the driver records its time and epochs
    assert first.data.metrics["trial_seconds"] > 0 and first.data.metrics["epochs_run"] == 1
    assert first.data.tags["tuned_values"] == '{"lr": 0.001}'
    st = tuning_status(ctx.plan, client, exp)
    assert (st["cells_done"], st["trials_finished"], st["trials_failed"]) == (1, 3, 0)
    (final,) = ctx.plan.trials
    assert not final.untuned and final.tags["tuned_from"] == first.info.run_id
    assert final.tags["tuning_samples"] == "3"
    assert client.get_run(parent).data.tags["tuning_cells"] == ctx.plan.trials[0].cell
    tune_stage()  # the cell is complete: a second run of the study tunes nothing
    assert len(tracking.runs_by_stage(client, exp, "tune")) == 3


def test_a_draw_repeating_a_diverged_configuration_counts_and_is_not_trained(tmp_path, local_data):
    from types import SimpleNamespace

    from orchestrator.sweep.tuning import diverged_runs
    from orchestrator.sweep.tuning_trial import repeat_draw
    from orchestrator.train.trainer import NonFiniteLossError

    client, exp, parent = _store(tmp_path, "rd")
    first = _tune_run(client, exp, "c1", "c1-k", "FAILED", error=DIVERGED, tune_trial_id="t1")
    trial = SimpleNamespace(run_name="tune-x", params={"lr": 0.001}, trial_key="c1-k", stage="tune")
    tags = {"stage": "tune", "cell": "c1", "trial_key": "c1-k", "tune_trial_id": "t2"}

    def runs() -> list:
        return tracking.search_all(client, exp, "tags.trial_key = 'c1-k'")

    # a retry of the draw that diverged is not a repeat (the wrapper stops it without a run)
    assert not repeat_draw(client, exp, trial, runs(), {**tags, "tune_trial_id": "t1"})
    with pytest.raises(NonFiniteLossError, match=f"diverged in run {first}"):
        repeat_draw(client, exp, trial, runs(), tags)
    repeat = next(r for r in runs() if r.info.run_id != first)
    assert repeat.info.status == "FAILED" and repeat.data.tags["duplicate_of"] == first
    assert repeat.data.tags["error"].startswith("NonFiniteLossError: not trained")
    # two draws, two samples; the older runs of one draw (no tune_trial_id) still count once
    _tune_run(client, exp, "c2", "c2-k", "FAILED", error=DIVERGED)
    _tune_run(client, exp, "c2", "c2-k", "FAILED", error=DIVERGED)
    assert {c: len(rs) for c, rs in diverged_runs(client, exp).items()} == {"c1": 2, "c2": 1}


# --- finding 3: every sample of a cell diverged -------------------------------------------------------------


def test_a_cell_whose_every_sample_diverged_records_its_finals_failed_as_diverged(tmp_path, local_data):
    from orchestrator.analysis import load_runs
    from orchestrator.analysis.load import unfinished
    from orchestrator.sweep.tuning import (
        ALL_DIVERGED,
        record_all_diverged,
        resolve_final,
        tuning_lines,
        tuning_status,
    )

    spec = load_spec(write_study(tmp_path / "alld.yaml", local_data, tuning={"samples": 3, "max_epochs": 1}))
    plan = build_plan(spec)
    ft, kd = (next(c.cell for c in plan.cells if c.method == m) for m in ("ft", "kd"))
    client, exp, parent = _store(tmp_path, "alld")
    for i in range(3):
        _tune_run(client, exp, ft, f"{ft}-{i}", "FINISHED", score=0.5 + i / 10, tune_trial_id=f"f{i}")
        _tune_run(client, exp, kd, f"{kd}-{i}", "FAILED", error=DIVERGED, tune_trial_id=f"k{i}")
    resolved, untuned = resolve_final(plan, client, exp)
    assert untuned == [kd]
    (kd_final,) = [t for t in resolved.trials if t.cell == kd]
    assert kd_final.untuned and kd_final.tags["tuning_all_diverged"] == "true"
    assert not next(t for t in resolved.trials if t.cell == ft).untuned
    assert record_all_diverged(resolved, client, exp, parent) == 1
    assert record_all_diverged(resolved, client, exp, parent) == 0  # a rerun records nothing twice
    (run,) = tracking.runs_by_stage(client, exp, "student", "FAILED")
    assert run.data.tags["error"].startswith(ALL_DIVERGED) and run.data.tags["diverged"] == "true"
    assert run.data.tags["trial_key"] == kd_final.trial_key and run.data.tags["method"] == "kd"
    st = tuning_status(resolved, client, exp)
    assert (st["cells_done"], st["cells_diverged"], st["trials_finished"]) == (2, 1, 6)
    lines = tuning_lines(st)
    assert "1/2 cells tuned" in lines[0] and "every sample diverged in 1 cell(s)" in lines[1]
    # the analysis reads the final as a diverged seed of KD, not as a missing method
    df = load_runs("alld", f"sqlite:///{tmp_path / 'mlflow.db'}")
    row = unfinished(df).query("method == 'kd'")
    assert len(row) == 1 and bool(row["diverged"].iloc[0]) and row["status"].iloc[0] == "FAILED"


# --- finding 4: a tuning draw that failed for another reason -------------------------------------------------


def test_a_failed_tuning_draw_keeps_its_finals_waiting_and_is_listed(tmp_path, local_data):
    from orchestrator.sweep.context import StudyContext, StudyOutcome
    from orchestrator.sweep.report import summary_lines
    from orchestrator.sweep.trials import stage_finish
    from orchestrator.sweep.tuning import resolve_final, tuning_lines, tuning_status

    spec = load_spec(
        write_study(tmp_path / "fl.yaml", local_data, methods=["ft"], teachers=[], tuning={"samples": 3})
    )
    plan = build_plan(spec)
    cell = plan.cells[0].cell
    client, exp, parent = _store(tmp_path, "fl")
    _tune_run(client, exp, cell, f"{cell}-a", "FINISHED", score=0.6, tune_trial_id="a")
    _tune_run(client, exp, cell, f"{cell}-b", "FINISHED", score=0.7, tune_trial_id="b")
    # a draw that failed, then its retry finished: no failure; a draw that failed for good: listed
    _tune_run(client, exp, cell, f"{cell}-b", "FAILED", error="RayActorError: died", tune_trial_id="b")
    _tune_run(client, exp, cell, f"{cell}-c", "FAILED", error="ZeroDivisionError: division by zero",
              tune_trial_id="c")  # fmt: skip
    resolved, untuned = resolve_final(plan, client, exp)
    assert untuned == [cell] and resolved.trials[0].untuned  # the finals wait for the whole search
    st = tuning_status(resolved, client, exp)
    assert (st["cells_done"], st["trials_finished"], st["trials_failed"]) == (0, 2, 1)
    assert st["failed_trials"][0]["error"] == "ZeroDivisionError: division by zero"
    assert any("FAILED tuning trial" in line and "ZeroDivision" in line for line in tuning_lines(st))
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    outcome = StudyOutcome("fl", uri, exp, planned=1, finished=0)
    stage_finish(StudyContext(spec, resolved, client, exp, parent, uri, outcome))
    assert not outcome.complete and client.get_run(parent).info.status == "FAILED"  # the driver exits 1
    text = "\n".join(summary_lines(outcome, tmp_path, 1.0, "fl.yaml"))
    assert "0/1 trials FINISHED" in text and "1 cell(s) not fully searched" in text
    assert "FAILED tuning trial" in text and "ZeroDivisionError" in text
    # the draw redone and finished: the cell is complete, its finals run
    _tune_run(client, exp, cell, f"{cell}-d", "FINISHED", score=0.4, tune_trial_id="d")
    resolved, untuned = resolve_final(plan, client, exp)
    assert untuned == [] and resolved.trials[0].tags["tuning_samples"] == "3"
    assert tuning_status(resolved, client, exp)["failed_trials"] == []


# --- finding 6: the recorder completes a stopped run with its time -------------------------------------------


def test_a_run_the_scheduler_stopped_records_its_wall_time_and_epochs(tmp_path):
    from types import SimpleNamespace

    from orchestrator.sweep.cost import spent
    from orchestrator.sweep.tuning_stage import TuneRecorder

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    client = MlflowClient(uri)
    exp = client.create_experiment("rec")
    rec = TuneRecorder(uri, max_epochs=3)
    for trial_id, epochs in (("a", 1), ("b", 3)):  # stopped at the first rung; stopped at max_t
        run_id = client.create_run(exp, tags={"stage": "tune"}, start_time=1000).info.run_id
        for epoch in range(1, epochs + 1):
            score = [0.3, 0.5, 0.4][epoch - 1]
            result = {"run_id": run_id, "epoch": float(epoch), "best_val_selection_score": score}
            rec.on_trial_result(
                0, [], SimpleNamespace(trial_id=trial_id), {**result, "val_selection_score": score}
            )
        rec.on_trial_complete(0, [], SimpleNamespace(trial_id=trial_id))
        m = client.get_run(run_id).data.metrics
        assert m["epochs_run"] == epochs and m["trial_seconds"] > 1e6  # started at 1 s after the epoch
        assert m["best_epoch"] == min(epochs, 2)
    assert spent(client, exp, 0.0)["spent_trial_hours"] > 0


# --- finding 8: the analysis keeps the current cells and every spent draw ------------------------------------


def test_tuning_analysis_keeps_the_current_cells_and_every_spent_draw(tmp_path):
    from orchestrator.analysis import tuning as T

    client, exp, parent = _store(tmp_path, "an")
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    factors = {"task": "defect", "teacher": "t", "student": "s", "method": "kd", "labels": "all"}
    _tune_run(client, exp, "old", "old-1", "FINISHED", score=0.9, start=1000, **factors)  # an earlier version
    a = _tune_run(
        client, exp, "new", "new-1", "FINISHED", score=0.5, start=2000, tune_trial_id="1", **factors
    )
    _tune_run(client, exp, "new", "new-2", "FAILED", error=DIVERGED, start=3000, tune_trial_id="2", **factors)
    _tune_run(
        client, exp, "new", "new-3", "FAILED", error="ValueError: x", start=4000, tune_trial_id="3", **factors
    )  # fmt: skip  (not a sample: drawn again)
    _tune_run(client, exp, "new", "new-1", "FINISHED", score=0.5, start=5000, tune_trial_id="4",
              duplicate_of=a, **factors)  # fmt: skip
    _tune_run(client, exp, "new", "new-5", "FINISHED", score=0.7, start=6000, tune_trial_id="5", **factors)
    ft = {**factors, "method": "ft", "teacher": "none"}
    for i in range(3):  # an FT cell of the same study whose every sample diverged
        _tune_run(client, exp, "ftc", f"ftc-{i}", "FAILED", error=DIVERGED, start=7000 + i, **ft,
                  tune_trial_id=f"f{i}")  # fmt: skip
    for tagged in (False, True):  # by the newest cell per factors; by the study run's tag
        if tagged:
            client.set_tag(parent, "tuning_cells", "ftc,new")
        df = T.load_tuning("an", uri)
        assert set(df["cell"]) == {"new", "ftc"} and df.attrs["stale_cells"] == 1
        assert len(T.load_tuning("an", uri, all_cells=True)) == len(df) + 1
    new = df[df["cell"] == "new"]
    assert new["status"].tolist() == ["FINISHED", "FAILED", "FAILED", "FINISHED", "FINISHED"]
    assert new["spent"].tolist() == [True, True, False, True, True]
    assert new["diverged"].tolist() == [True if k == "new-2" else False for k in new["trial_key"]]
    assert new["trial"].fillna(-1).astype(int).tolist() == [0, 1, -1, 2, 3]  # NA: no sample
    assert math.isnan(new[T.SCORE].iloc[1]) and new["duplicate_of"].iloc[3] == a
    best = T.best_params(df).set_index("cell")
    assert best.loc["new", ["trials", "diverged", "chosen_by", T.SCORE]].tolist() == [4, 1, "score", 0.7]
    assert best.loc["ftc", ["trials", "diverged", "chosen_by"]].tolist() == [3, 3, "diverged"]
    assert math.isnan(best.loc["ftc", "lr"])  # no configuration: no tuned value
    curves = T.tuning_curves(df)
    assert curves.groupby("cell").size().to_dict() == {"ftc": 3, "new": 4}  # the same budget per cell
    assert curves[curves["cell"] == "new"]["best_so_far"].tolist() == [0.5, 0.5, 0.5, 0.7]
    assert set(T.moved_from_default(df)["cell"]) == {"new"}
