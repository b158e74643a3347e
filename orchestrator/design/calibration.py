"""``--plan`` priced by measurement: what ``--calibrate`` measured (design/calibrate.py), read back and applied.

``python -m orchestrator.study <study> --calibrate`` times a few optimiser steps of every kind of unit the study
runs, on the device at hand, and writes ``<storage>/<study>/calibration.json``. A unit's kind is what its step
costs depend on:

* a student trial: (student, method, teacher shape or none, teacher mode, max length, batch size);
* a teacher fine-tune: (teacher shape and parameters, max length, batch size);
* a teacher pass (a cache build): (teacher shape and parameters, max length, batch size).

The plan then prices a trial at ``step_s x epochs x ceil(train samples / batch)`` plus ``eval_sample_s x (epochs x
validation + test samples)``, a fine-tune the same way with the teacher's settings, and a teacher pass at
``step_s / batch x (train + validation + test samples)``. A calibration measured on another device is ignored (the
plan says so), and a unit the calibration does not cover keeps its FLOP estimate (the plan says how many).
"""

from __future__ import annotations

import dataclasses
import json
import math
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from orchestrator.train.config import epochs_for_steps

CALIBRATION_FILE = "calibration.json"
FORMAT = 1
PASS_BATCH = 32  # CacheRequest's batch size: what a teacher pass runs at
FLOP_LINE = "(FLOP count at 35 TFLOP/s effective; a rough guide; --calibrate measures it)"


def calibration_path(spec: Any) -> Path:
    return Path(spec.study_dir) / CALIBRATION_FILE


def device_name(device: str = "auto") -> str:
    """The device a calibration belongs to: the GPU's name, or ``cpu (<processor>)``."""
    import platform

    import torch

    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    if device.startswith("cuda"):
        return str(torch.cuda.get_device_name(torch.device(device)))
    return f"cpu ({platform.processor() or platform.machine()})"


def _shape(layers: int, hidden: int) -> str:
    return f"{layers}x{hidden}"


def student_key(student: str, method: str, teacher: str, mode: str, max_length: int, batch: int) -> str:
    """``teacher``: the teacher's shape (``LxH``), ``none`` for a method without one."""
    return f"student/{student}/{method}/{teacher}/{mode if teacher != 'none' else 'none'}/len{max_length}/b{batch}"


def teacher_key(kind: str, layers: int, hidden: int, params: int, max_length: int, batch: int) -> str:
    return f"{kind}/{_shape(layers, hidden)}/{params}/len{max_length}/b{batch}"


def plan_units(plan: Any) -> Iterator[tuple[str, dict[str, Any], Any]]:
    """(key, what to measure, the plan's unit) of every unit of ``plan``: fine-tunes, passes, trials."""
    spec = plan.spec
    for kind, units in (("teacher_finetune", plan.teachers), ("teacher_pass", plan.caches)):
        for u in units:
            shape, params = plan.teacher_shapes[u.teacher], plan.teacher_params[u.teacher]
            train = spec.teacher_train_for(u.teacher)
            length, batch = (
                (train.max_length, train.batch_size)
                if kind == "teacher_finetune"
                else (spec.student_train.max_length, PASS_BATCH)
            )
            t = next(t for t in spec.teachers if t.name == u.teacher)
            info = {
                "kind": kind,
                "teacher": u.teacher,
                "random": t.source.startswith("random:"),
                "layers": shape.num_layers,
                "hidden": shape.hidden_size,
                "params": params,
                "max_length": length,
                "batch_size": batch,
            }
            if kind == "teacher_pass":
                info.update(signals=u.spec.to_dict(), derived=[_derived_dict(d) for d in u.derived])
            yield teacher_key(kind, shape.num_layers, shape.hidden_size, params, length, batch), info, u
    for tr in plan.trials:
        train = tr.settings["train"]
        tshape = plan.teacher_shapes.get(tr.teacher)
        tag = _shape(tshape.num_layers, tshape.hidden_size) if tshape and tr.teacher != "none" else "none"
        mode = spec.teacher_mode
        info = {
            "kind": "student",
            "student": tr.student,
            "method": tr.method,
            "method_params": tr.settings.get("method_params", {}),
            "teacher": tr.teacher,
            "teacher_shape": tag,
            "mode": mode if tag != "none" else "none",
            "max_length": train["max_length"],
            "batch_size": train["batch_size"],
        }
        if tag != "none":
            t = next(t for t in spec.teachers if t.name == tr.teacher)
            info.update(random=t.source.startswith("random:"), params=plan.teacher_params[tr.teacher])
            info.update(layers=tshape.num_layers, hidden=tshape.hidden_size)
        key = student_key(tr.student, tr.method, tag, mode, train["max_length"], train["batch_size"])
        yield key, info, tr


def _derived_dict(d: Any) -> dict[str, Any]:
    return {"kind": d.kind, "layer_sets": [list(s) for s in d.layer_sets], "params": dict(d.params)}


def load_calibration(spec: Any) -> tuple[dict[str, Any] | None, str | None]:
    """The study's calibration when it was measured on this device, else None; and a note on why it is not used."""
    path = calibration_path(spec)
    if not path.is_file():
        return None, None
    try:
        data = json.loads(path.read_text())
        units, device = data["units"], data["device"]
    except (OSError, ValueError, KeyError, TypeError):
        return None, f"{path} is unreadable: GPU-hours by FLOP count (run --calibrate again)"
    here = device_name()
    if device != here or not isinstance(units, dict):
        return None, f"{path} was measured on {device}, not on this device ({here}): GPU-hours by FLOP count"
    return data, None


def _steps(epochs: int, train: int, batch: int) -> int:
    return epochs * math.ceil(train / batch)


def unit_seconds(
    info: dict[str, Any],
    measured: dict[str, Any],
    sizes: dict[str, int],
    epochs: int,
    steps: int | None = None,
) -> float:
    """A unit's seconds from its measured step: steps x seconds per step, plus its evaluation passes. ``steps``:
    a trial of that many steps (``student_train.steps``), whose epochs follow from it."""
    if info["kind"] == "teacher_pass":
        return measured["step_s"] / info["batch_size"] * sum(sizes.values())
    if steps is not None:
        epochs = epochs_for_steps(steps, sizes["train"], info["batch_size"])
    else:
        steps = _steps(epochs, sizes["train"], info["batch_size"])
    evals = epochs * sizes.get("validation", 0) + sizes.get("test", 0)
    return measured["step_s"] * steps + measured.get("eval_sample_s", 0.0) * evals


def apply_calibration(
    plan: Any, calibration: dict[str, Any] | None | str, unit_sizes: Callable[[Any, Any], dict[str, int]]
) -> None:
    """Price ``plan``'s units by ``calibration`` ("auto": the study folder's, when it is for this device);
    ``unit_sizes(spec, unit)``: the samples per split a unit reads."""
    calibration = _usable(plan, calibration)
    if calibration is None:
        return
    spec, measured = plan.spec, calibration["units"]
    priced: dict[int, float] = {}
    for key, info, unit in plan_units(plan):
        if key in measured:
            steps = None
            if info["kind"] == "student":
                epochs, steps = unit.settings["train"]["epochs"], unit.settings["train"].get("steps")
            else:
                epochs = spec.teacher_train_for(unit.teacher).epochs
            priced[id(unit)] = unit_seconds(info, measured[key], unit_sizes(spec, unit), epochs, steps)
    for t in plan.trials:
        t.gpu_seconds = priced.get(id(t), t.gpu_seconds)
    plan.teachers = [
        dataclasses.replace(u, gpu_seconds=priced.get(id(u), u.gpu_seconds)) for u in plan.teachers
    ]
    plan.caches = [dataclasses.replace(u, gpu_seconds=priced.get(id(u), u.gpu_seconds)) for u in plan.caches]
    units = [*plan.teachers, *plan.caches, *plan.trials]
    plan.gpu_hours = sum(u.gpu_seconds for u in units) / 3600
    _mark_calibrated(plan, calibration, len(units), len(units) - len(priced))


def _usable(plan: Any, calibration: dict[str, Any] | None | str) -> dict[str, Any] | None:
    """``calibration``, or the study folder's when "auto" (a note says why it is not used), or None."""
    if calibration == "auto":
        calibration, note = load_calibration(plan.spec)
        if note:
            plan.notes.append(note)
    return calibration if isinstance(calibration, dict) else None


def _mark_calibrated(plan: Any, calibration: dict[str, Any], units: int, uncovered: int) -> None:
    plan.estimate = "calibrated"
    plan.calibration = {
        "device": calibration["device"],
        "measured_at": calibration.get("measured_at", ""),
        "units": units,
        "uncovered": uncovered,
    }
    if uncovered:
        plan.notes.append(
            f"{uncovered} of {units} units are not in the calibration (the study changed since?): "
            "their GPU-hours are the FLOP estimate; --calibrate measures them"
        )


# ---------------------------------------------------------------------------------------------------------------
# Completion studies: a trial's step depends on (student, teacher shape, teacher mode, block size, batch)


def lm_key(
    student: str,
    teacher: tuple[int, ...],
    mode: str,
    block: int,
    batch: int,
    amp: str | None = None,
    online_dtype: str = "float32",
) -> str:
    """A measured LM step's key; bf16 autocast and a half-precision online teacher change the step, so they are in
    it (only when set: a float32 study keeps the keys calibrations were saved under)."""
    key = f"lm/{student}/{teacher[0]}x{teacher[1]}v{teacher[2]}/{mode}/block{block}/b{batch}"
    key += f"/{amp}" if amp else ""
    return key + (f"/teacher-{online_dtype}" if mode == "online" and online_dtype != "float32" else "")


def lm_plan_units(plan: Any) -> Iterator[tuple[str, dict[str, Any], Any]]:
    """(key, what to measure, the trial) of every trial of a completion plan."""
    shapes = {u.name: u.shape for u in plan.teachers}
    for t in plan.trials:
        shape, cfg = shapes[t.teacher], t.work.trial
        block = min(cfg.block_size, shape[3])
        info = {
            "kind": "lm_student", "student": t.student, "mode": t.teacher_mode, "block_size": block,
            "batch_size": cfg.train.batch_size, "layers": shape[0], "hidden": shape[1], "vocab": shape[2],
            "positions": shape[3], "method_params": dict(cfg.method_params), "topk": cfg.topk,
            "amp": cfg.train.amp, "online_dtype": cfg.online_dtype,
        }  # fmt: skip
        key = lm_key(
            t.student, shape, t.teacher_mode, block, cfg.train.batch_size, cfg.train.amp, cfg.online_dtype
        )
        yield key, info, t


def apply_lm_calibration(plan: Any, calibration: dict[str, Any] | None | str) -> None:
    """Price a completion plan's trials by measured step times: step_s x epochs x ceil(train blocks / batch)."""
    calibration = _usable(plan, calibration)
    if calibration is None:
        return
    measured, covered = calibration["units"], 0
    for key, info, t in lm_plan_units(plan):
        if key in measured:
            blocks = max(1, plan.train_tokens // info["block_size"])
            t.gpu_seconds = measured[key]["step_s"] * _steps(
                t.work.trial.train.epochs, blocks, info["batch_size"]
            )
            covered += 1
    rate = 1 / 3600
    plan.totals["trial_hours"] = sum(t.gpu_seconds for t in plan.trials) * rate
    fixed = plan.totals["teacher_train_hours"] + plan.totals["cache_hours"]
    plan.totals["wall_hours"] = fixed + plan.totals["trial_hours"] / max(1, plan.spec.max_concurrent_trials)
    _mark_calibrated(plan, calibration, len(plan.trials), len(plan.trials) - covered)


def estimate_line(plan: Any) -> str:
    """What the plan's GPU-hours rest on, for ``describe``."""
    if plan.estimate != "calibrated":
        return FLOP_LINE
    return f"(calibrated on {plan.calibration['device']}, {plan.calibration['measured_at'][:10]})"
