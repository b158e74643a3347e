"""``python -m orchestrator.study <study> --calibrate``: measured step times for ``--plan`` (design/calibration.py).

Every kind of unit the study runs is timed on the device at hand (a GPU when there is one, else the CPU with the
threads the study gives a trial or a teacher): a few optimiser steps of the real training loop
(``trainer.train``), warm-up excluded, on random-token batches of the unit's full max length. A KD method reads
teacher signals of the right shapes as a trial reads them from the cache: a ``CachedTeacher`` over fields laid out
by the cache builder (``_teacher_fields``) from random teacher states, so CKD's relations are derived from Gram
numbers on the device as in a study; with ``teacher_mode: online`` a random-weight teacher of the right shape
runs every step instead. Teachers are timed as random-weight RoBERTa models of their shape (layers, width and
parameter count): the fine-tune's step, and the teacher pass that builds a cache. Evaluation is timed from the
same runs (a forward pass over one batch, per sample).

A step is the time between the starts of consecutive training forward passes (the loop reads ``loss.item()``
every step, so a GPU has finished the previous step by then; the last timed step ends where evaluation starts),
and a unit's seconds per step is the median of its timed steps.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from orchestrator.design.calibration import FORMAT, calibration_path, device_name, plan_units
from orchestrator.design.step_clock import StepClock

CALIBRATION_LABELS = 2  # a binary head for every unit: the label count barely moves a step's cost


def _random_split(n: int, length: int, vocab: int, pad_id: int, seed: int) -> Any:
    """``n`` samples of exactly ``length`` random token ids (specials excluded), random binary labels."""
    import numpy as np

    from orchestrator.train.trainer import EncodedSplit

    rng = np.random.default_rng(seed)
    ids = rng.integers(min(4, vocab - 1), vocab, size=(n, length))
    return EncodedSplit(ids.tolist(), rng.integers(0, CALIBRATION_LABELS, size=n).tolist(), pad_id)


def _random_teacher(info: dict[str, Any], max_length: int) -> Any:
    """A random-weight RoBERTa teacher in memory with the unit's layers, width and (about) parameter count."""
    from types import SimpleNamespace

    import torch
    from transformers import AutoModelForSequenceClassification, RobertaConfig

    from models.teacher import Teacher

    layers, hidden = info["layers"], info["hidden"]
    if info.get("random"):  # as the study creates a random: teacher (sweep/stages.py)
        heads, ffn, vocab = 2, 2 * hidden, 1000
    else:  # a pretrained encoder: 64-wide heads, 4x FFN, the rest of its parameters in the embedding table
        heads, ffn = max(1, hidden // 64), 4 * hidden
        vocab = max(1000, (info["params"] - 12 * layers * hidden * hidden) // hidden)
    config = RobertaConfig(
        vocab_size=vocab,
        hidden_size=hidden,
        num_hidden_layers=layers,
        num_attention_heads=heads,
        intermediate_size=ffn,
        max_position_embeddings=max_length + 2,
        type_vocab_size=1,
        pad_token_id=1,
        num_labels=CALIBRATION_LABELS,
    )
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        model = AutoModelForSequenceClassification.from_config(config)
    return Teacher(model, SimpleNamespace(pad_token_id=1), "calibration-random"), vocab


class _RandomStates:
    """Stands in for a teacher when laying out cache fields: random logits and hidden states of its shape."""

    pad_id = 1

    def __init__(self, layers: int, hidden: int) -> None:
        self.layers, self.hidden = layers, hidden

    def signals(self, ids: Any, mask: Any, spec: Any) -> Any:
        import torch

        from kd_methods import TeacherSignals

        b, n = ids.shape
        states = {layer: torch.randn(b, n, self.hidden) for layer in {*spec.cls_layers, *spec.token_layers}}
        return TeacherSignals(
            logits=torch.randn(b, CALIBRATION_LABELS),
            cls={layer: states[layer][:, 0] for layer in spec.cls_layers},
            tokens={layer: states[layer] for layer in spec.token_layers},
            token_mask=mask,
        )


def _cached_source(info: dict[str, Any], student_shape: Any, n: int, dtype: str) -> tuple[Any, Any]:
    """(a CachedTeacher over ``n`` random samples holding what the method reads, the teacher's shape): as a study
    serves it (``KDMethod.cache_needs``: CKD's Gram numbers, its relations derived on the device)."""
    import torch

    from kd_methods import ModelShape, build_method
    from orchestrator.cache.build import _teacher_fields
    from orchestrator.cache.key import CacheRequest
    from orchestrator.cache.serve import CachedTeacher

    tshape = ModelShape(info["layers"], info["hidden"])
    spec, derived = build_method(info["method"], student_shape, tshape, **info["method_params"]).cache_needs()
    request = CacheRequest(
        "calibration", "calibration", spec, info["max_length"], dtype, (derived,) if derived else ()
    )
    ids = [[5] * info["max_length"] for _ in range(n)]
    fields = _teacher_fields(
        _RandomStates(tshape.num_layers, tshape.hidden_size), ids, request, torch.device("cpu")
    )
    shard = {"dir": "train/shard-0", "start": 0, "end": n, "files": dict.fromkeys(fields, {})}
    manifest = {
        "key": "calibration",
        "request": request.manifest_request(),
        "samples": {"train": n},
        "shards": {"train": [shard]},
    }
    arrays = {f"train/shard-0/{name}.npy": value for name, value in fields.items()}
    return CachedTeacher(manifest, arrays, derived), tshape


def _timed_train(model: Any, method: Any, encoded: dict[str, Any], source: Any, u: dict[str, Any]) -> dict:
    """The real training loop for ``warmup + steps`` steps; seconds per step and per evaluated sample."""
    from orchestrator.core.device import resolve_device
    from orchestrator.train.trainer import TrainConfig, train
    from tasks import get_task

    batch = u["batch_size"]
    cfg = TrainConfig(
        epochs=1,
        batch_size=batch,
        eval_batch_size=batch,
        lr=1e-5,  # the step's cost does not depend on it; a small one keeps random data finite
        warmup_ratio=0.0,
        max_steps=u["warmup"] + u["steps"],
        device=u["device"],
        precision=u["precision"],
    )
    clock = StepClock(model, resolve_device(u["device"]).type == "cuda")
    try:
        train(model, method, encoded, get_task("defect"), cfg, source)
    finally:
        clock.close()
    step_s, timed = clock.step_seconds(u["warmup"])
    return {"step_s": step_s, "eval_sample_s": clock.evals[-1] / batch, "steps_timed": timed}


def _splits(n: int, batch: int, length: int, vocab: int, pad_id: int) -> dict[str, Any]:
    return {
        "train": _random_split(n, length, vocab, pad_id, 0),
        "validation": _random_split(batch, length, vocab, pad_id, 1),
        "test": _random_split(batch, length, vocab, pad_id, 2),
    }


def _time_student(u: dict[str, Any]) -> dict[str, Any]:
    from kd_methods import build_method
    from models import build_student, get_student_spec
    from orchestrator.core.device import resolve_device
    from orchestrator.train.online_teacher import OnlineTeacher

    sspec = get_student_spec(u["student"])
    length, batch = u["max_length"], u["batch_size"]
    n = (u["warmup"] + u["steps"]) * batch
    model = build_student(u["student"], CALIBRATION_LABELS, max_length=length)
    source, tshape = None, None
    if u["mode"] == "cached":
        source, tshape = _cached_source(u, model.shape, n, u["cache_dtype"])
    elif u["mode"] == "online":
        teacher, vocab = _random_teacher(u, length)
        source, tshape = OnlineTeacher(teacher, {"train": _random_split(n, length, vocab, 1, 3)},
                                       resolve_device(u["device"])), teacher.shape  # fmt: skip
    method = build_method(u["method"], model.shape, tshape, **u["method_params"])
    encoded = _splits(n, batch, length, sspec.vocab_size, sspec.pad_token_id)
    return _timed_train(model, method, encoded, source, u)


def _time_finetune(u: dict[str, Any]) -> dict[str, Any]:
    from kd_methods import build_method

    teacher, vocab = _random_teacher(u, u["max_length"])
    n = (u["warmup"] + u["steps"]) * u["batch_size"]
    encoded = _splits(n, u["batch_size"], u["max_length"], vocab, 1)
    return _timed_train(teacher, build_method("ft", teacher.shape), encoded, None, u)


def _time_pass(u: dict[str, Any]) -> dict[str, Any]:
    """The cache builder's own batch loop (teacher forward, CKD's Gram numbers, the copy to the host)."""
    import torch

    from kd_methods import DerivedRequest, SignalSpec
    from orchestrator.cache.build import _teacher_fields
    from orchestrator.cache.key import CacheRequest
    from orchestrator.core.device import resolve_device

    device = resolve_device(u["device"])
    teacher, vocab = _random_teacher(u, u["max_length"])
    teacher = teacher.to(device).eval()
    derived = tuple(
        DerivedRequest(d["kind"], tuple(tuple(s) for s in d["layer_sets"]), tuple(d["params"].items()))
        for d in u["derived"]
    )
    request = CacheRequest("calibration", "calibration", SignalSpec(**u["signals"]), u["max_length"],
                           u["cache_dtype"], derived, batch_size=u["batch_size"], precision=u["pass_precision"])  # fmt: skip
    ids = _random_split((1 + u["steps"]) * u["batch_size"], u["max_length"], vocab, 1, 4).input_ids
    _teacher_fields(teacher, ids[: u["batch_size"]], request, device)  # warm-up
    start = time.perf_counter()
    _teacher_fields(teacher, ids[u["batch_size"] :], request, device)
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return {"step_s": (time.perf_counter() - start) / u["steps"], "steps_timed": u["steps"]}


def _time_lm(u: dict[str, Any]) -> dict[str, Any]:
    from orchestrator.design.calibrate_lm import time_lm_student

    return time_lm_student(u)


TIMERS: dict[str, Callable[[dict[str, Any]], dict[str, Any]]] = {
    "student": _time_student,
    "teacher_finetune": _time_finetune,
    "teacher_pass": _time_pass,
    "lm_student": _time_lm,
}


def _measure(info: dict[str, Any], threads: int | None) -> dict[str, Any]:
    """One unit, with ``threads`` torch threads on a CPU; the device's memory freed after it."""
    import torch

    before = torch.get_num_threads()
    if threads:
        torch.set_num_threads(threads)
    try:
        with torch.random.fork_rng(devices=[]):
            return {**TIMERS[info["kind"]](info), "threads": torch.get_num_threads()}
    finally:
        torch.set_num_threads(before)
        if torch.cuda.is_available():
            torch.cuda.empty_cache()


def _units(spec: Any, plan: Any) -> dict[str, dict[str, Any]]:
    """Every distinct unit of the plan to time, by its calibration key, with the study's execution settings."""
    from orchestrator.core.device import cache_precision

    if spec.kind == "completion":
        from orchestrator.design.calibrate_lm import lm_units

        return {key: {**info, "cache_dtype": spec.cache.dtype} for key, info in lm_units(plan).items()}
    run = {
        "precision": spec.precision,
        "cache_dtype": spec.cache.dtype,
        "pass_precision": cache_precision(spec.precision),
    }
    return {key: {**info, **run} for key, info, _ in plan_units(plan)}


def calibrate(
    spec: Any, device: str = "auto", steps: int = 3, warmup: int = 1, say: Callable[[str], None] = print
) -> dict[str, Any]:
    """Time every distinct unit of ``spec``'s plan on ``device``; the calibration (see the module docstring). Files
    a unit needs (a completion study's random teachers and caches) live in the study's scratch folder, removed
    afterwards."""
    import torch

    from orchestrator.core.device import resolve_device, resolve_precision
    from orchestrator.core.paths import scratch, scratch_dir
    from orchestrator.design.data_source import resolve_spec_data
    from orchestrator.design.study import build_plan

    dev = resolve_device(device)
    units = _units(spec, build_plan(resolve_spec_data(spec), calibration=None))
    name, started = device_name(str(dev)), time.perf_counter()
    say(f"calibrating {len(units)} units on {name}: {warmup} warm-up + {steps} timed steps each")
    measured, failed = {}, {}
    with scratch(scratch_dir(Path(spec.storage).resolve(), spec.name), "calibration-") as work:
        for key, info in units.items():
            res = spec.teacher_resources if info["kind"].startswith("teacher") else spec.trial_resources
            threads = max(1, int(res.cpu)) if dev.type == "cpu" else None
            u = {**info, "device": str(dev), "steps": steps, "warmup": warmup, "work": str(work)}
            t0 = time.perf_counter()
            try:
                measured[key] = {**info, **_measure(u, threads)}
            except Exception as err:  # noqa: BLE001 - a unit that cannot run here (memory) keeps its FLOP estimate
                failed[key] = f"{type(err).__name__}: {err}"
                say(f"  {key}: failed ({failed[key][:200]}); the plan keeps its FLOP estimate")
                continue
            say(f"  {key}: {1000 * measured[key]['step_s']:.1f} ms/step ({time.perf_counter() - t0:.1f} s)")
    return {
        "format": FORMAT,
        "study": spec.name,
        "device": name,
        "torch": torch.__version__,
        "precision": resolve_precision(getattr(spec, "precision", "fp32"), dev),
        "measured_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "steps": steps,
        "warmup": warmup,
        "seconds": round(time.perf_counter() - started, 2),
        "units": measured,
        "failed": failed,
    }


def write_calibration(spec: Any, calibration: dict[str, Any]) -> Path:
    import json

    path = calibration_path(spec).resolve()
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(calibration, indent=1))
    tmp.replace(path)
    return path
