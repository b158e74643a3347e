"""``--calibrate`` and a calibrated ``--plan``: measured step times per unit, priced into the plan, recorded in MLflow."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
from conftest import write_study

from orchestrator.design.calibration import calibration_path, device_name, plan_units
from orchestrator.design.describe import describe, plan_dict
from orchestrator.design.study import build_plan, load_spec

pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def calibrated(tmp_path_factory: pytest.TempPathFactory, local_data: Path) -> dict:
    """A tiny study (one teacher, one student, FT and three KD methods) calibrated on this machine's CPU through
    the command line, as a user runs it."""
    from orchestrator.sweep.driver import main

    tmp = tmp_path_factory.mktemp("calib")
    path = write_study(
        tmp / "calib.yaml", local_data, methods=["ft", "kd", "pkd", "ckd"], storage=str(tmp / "runs")
    )
    assert main([str(path), "--calibrate"]) == 0
    spec = load_spec(path)
    return {"spec": spec, "file": calibration_path(spec), "yaml": path}


def _no_calibration(spec, tmp: Path):
    return spec.model_copy(update={"storage": str(tmp / "elsewhere")})


def test_calibration_times_every_unit_of_the_study(calibrated: dict) -> None:
    data = json.loads(calibrated["file"].read_text())
    keys = {key for key, _, _ in plan_units(build_plan(calibrated["spec"], calibration=None))}
    assert set(data["units"]) == keys and not data["failed"]
    assert len(keys) == 1 + 1 + 4  # the fine-tune, the teacher pass, four student methods
    assert data["device"] == device_name("cpu") and data["torch"] and data["measured_at"]
    for key, unit in data["units"].items():
        assert unit["step_s"] > 0 and unit["steps_timed"] == data["steps"], key
        if unit["kind"] != "teacher_pass":
            assert unit["eval_sample_s"] > 0, key


def test_calibrated_plan_is_measured_seconds_times_steps(calibrated: dict, tmp_path: Path) -> None:
    spec = calibrated["spec"]
    units = json.loads(calibrated["file"].read_text())["units"]
    plan, flops = build_plan(spec), build_plan(_no_calibration(spec, tmp_path))
    assert plan.estimate == "calibrated" and flops.estimate == "flops"
    assert plan.gpu_hours != flops.gpu_hours
    # by hand: the FT trial, 32 samples per split (max_samples), batch 16, one epoch
    ft = next(t for t in plan.trials if t.method == "ft")
    measured = units["student/roberta-tiny/ft/none/none/len48/b16"]
    steps = 1 * math.ceil(32 / 16)
    assert ft.gpu_seconds == pytest.approx(
        measured["step_s"] * steps + measured["eval_sample_s"] * (1 * 32 + 32)
    )
    ftflop = next(t for t in flops.trials if t.method == "ft")
    assert ft.gpu_seconds != ftflop.gpu_seconds
    passes = units["teacher_pass/2x32/24576/len48/b32"]
    assert plan.caches[0].gpu_seconds == pytest.approx(passes["step_s"] / 32 * 96)
    total = sum(u.gpu_seconds for u in [*plan.teachers, *plan.caches, *plan.trials])
    assert plan.gpu_hours == pytest.approx(total / 3600)
    text = describe(plan)
    assert f"(calibrated on {device_name('cpu')}, " in text and "FLOP count" not in text
    assert "FLOP count" in describe(flops) and "--calibrate" in describe(flops)
    out = plan_dict(plan)
    assert out["estimate"] == "calibrated" and out["device"] == device_name("cpu")
    assert out["calibration"]["uncovered"] == 0 and plan_dict(flops)["estimate"] == "flops"
    assert {"trials", "gpu_hours", "total_gpu_hours", "caches", "notes"} <= set(out)


def test_other_device_or_missing_units_fall_back_to_flops(calibrated: dict, tmp_path: Path) -> None:
    spec = calibrated["spec"]
    flops = build_plan(_no_calibration(spec, tmp_path))
    data = json.loads(calibrated["file"].read_text())
    other = spec.model_copy(update={"storage": str(tmp_path / "other")})
    calibration_path(other).parent.mkdir(parents=True)
    calibration_path(other).write_text(json.dumps({**data, "device": "NVIDIA Imaginary GPU"}))
    plan = build_plan(other)
    assert plan.estimate == "flops" and plan.gpu_hours == pytest.approx(flops.gpu_hours)
    assert any("measured on NVIDIA Imaginary GPU" in n for n in plan.notes)
    # a study grown since its calibration: the new unit keeps its FLOP estimate, and the plan says so
    ckd = "student/roberta-tiny/ckd/2x32/cached/len48/b16"
    part = {**data, "units": {k: v for k, v in data["units"].items() if k != ckd}}
    plan = build_plan(spec, calibration=part)
    assert plan.estimate == "calibrated" and plan.calibration["uncovered"] == 1
    assert any("1 of 6 units are not in the calibration" in n for n in plan.notes)
    trial = next(t for t in plan.trials if t.method == "ckd")
    assert trial.gpu_seconds == next(t for t in flops.trials if t.method == "ckd").gpu_seconds


def test_the_parent_run_records_how_the_plan_was_estimated(calibrated: dict, tmp_path: Path) -> None:
    from mlflow.tracking import MlflowClient

    from orchestrator.core import tracking
    from orchestrator.core.paths import local_store
    from orchestrator.sweep.context import StudyContext, StudyOutcome
    from orchestrator.sweep.trials import stage_finish

    plan = build_plan(calibrated["spec"])
    uri = local_store(tmp_path)[0]
    client = MlflowClient(uri)
    exp = tracking.experiment_id(client, "calib")
    parent = client.create_run(exp, tags={"stage": "study"}).info.run_id
    outcome = StudyOutcome("calib", "", exp, len(plan.trials), 0)
    stage_finish(StudyContext(calibrated["spec"], plan, client, exp, parent, uri, outcome))
    run = client.get_run(parent)
    assert run.data.tags["plan_estimate"] == "calibrated"
    assert run.data.tags["plan_device"] == device_name("cpu")
    assert run.data.metrics["planned_gpu_hours"] == pytest.approx(plan.gpu_hours)
    assert "spent_trial_hours" in run.data.metrics


def test_online_teacher_units_run_the_teacher_every_step(tmp_path: Path, local_data: Path) -> None:
    from orchestrator.design.calibrate import calibrate

    path = write_study(tmp_path / "online.yaml", local_data, methods=["kd"], teacher_mode="online")
    result = calibrate(load_spec(path), device="cpu", steps=1, say=lambda line: None)
    unit = result["units"]["student/roberta-tiny/kd/2x32/online/len48/b16"]
    assert unit["step_s"] > 0 and unit["steps_timed"] == 1 and not result["failed"]


def test_plan_reads_split_sizes_from_the_local_manifest(tmp_path):
    """build_local's manifest keeps counts under tasks.<task>.counts; the plan sizes its trials from them."""
    from orchestrator.design.sizes import split_sizes as _split_sizes

    counts = {"train": 1234, "validation": 56, "test": 78}
    (tmp_path / "manifest.json").write_text(json.dumps({"tasks": {"defect": {"counts": counts}}}))
    spec = load_spec("smoke").model_copy(update={"data": str(tmp_path), "max_samples": None})
    assert _split_sizes(spec, "defect") == counts
    capped = spec.model_copy(update={"max_samples": 60})
    assert _split_sizes(capped, "defect") == {"train": 60, "validation": 56, "test": 60}
