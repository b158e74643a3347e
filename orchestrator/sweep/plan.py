"""A study expanded into its units: tokenizers -> teacher fine-tunes -> teacher caches -> student trials.

Every unit has a content key, so a unit whose output already exists is skipped, and a trial whose ``trial_key``
already has a FINISHED MLflow run is not run again. Planning reads no model weights and no hub data.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any

from kd_methods import ModelShape, SignalSpec, get_method, layer_map
from models import STUDENTS, get_student_spec
from orchestrator.cache.key import CacheRequest, human_bytes, plan_bytes
from orchestrator.sweep.calibration import apply_calibration, estimate_line
from orchestrator.sweep.identity import data_key
from orchestrator.sweep.spec import StudySpec, TeacherSettings, stable_key
from orchestrator.sweep.tuning_spec import recipe_settings
from orchestrator.train.config import cache_precision
from orchestrator.train.trial import TEACHER_ALIASES, student_shape
from tasks import get_task

# Shapes of the teachers the studies name, so --plan needs no download. Others are read from a local config.
KNOWN_TEACHERS: dict[str, tuple[int, int, int]] = {  # layers, hidden, parameters
    "microsoft/unixcoder-base": (12, 768, 126_000_000),
    "answerdotai/ModernBERT-base": (22, 768, 149_000_000),
    "microsoft/CodeGPT-small-py": (12, 768, 124_000_000),
    "minilm": (6, 384, 22_700_000),
}
# Hub split sizes (STUDY.md) and mean teacher tokens per sample at max length 512, for estimates before download.
HUB_SAMPLES = {
    "defect": {"train": 21854, "validation": 2732, "test": 2732},
    "clone": {"train": 90102, "validation": 41541, "test": 415416},
    "exception": {"train": 18480, "validation": 2088, "test": 10348},
}
MEAN_TOKENS_512 = {"defect": 380, "clone": 460, "exception": 230}
MEAN_TOKENS_DECLARED = 512  # a declared task (docs/OWN_DATA.md): plan for full-length inputs, an upper bound


@dataclass(frozen=True)
class TeacherUnit:
    teacher: str
    task: str
    key: str
    folder: str
    gpu_seconds: float = field(default=0.0, compare=False, hash=False)  # estimated: the fine-tune


@dataclass(frozen=True)
class CacheUnit:
    teacher: str
    task: str
    spec: SignalSpec
    ckd_layer_sets: tuple[tuple[int, ...], ...]
    key: str
    planned: dict[str, Any] = field(default_factory=dict, compare=False, hash=False)
    gpu_seconds: float = field(default=0.0, compare=False, hash=False)  # estimated: the teacher pass


@dataclass
class TrialUnit:
    task: str
    teacher: str  # "none" for FT
    student: str
    method: str
    seed: int
    trial_key: str
    settings: dict[str, Any] = field(default_factory=dict)
    cell: str = ""  # one id per (task, teacher, student, method) and what shapes its training (see cell_id)
    gpu_seconds: float = 0.0  # estimated
    extra_tags: dict[str, str] = field(default_factory=dict)  # a tuned final run: tuned_from, tuned_params

    def tags(self, study: str) -> dict[str, str]:
        sspec = get_student_spec(self.student)
        return {
            **self.extra_tags,
            "cell": self.cell,
            "stage": "student",
            "study": study,
            "task": self.task,
            "teacher": self.teacher,
            "student": self.student,
            "student_arch": sspec.arch,
            "student_params": str(self.settings.get("student_params", "")),
            "method": self.method,
            "method_family": get_method(self.method).family,
            "seed": str(self.seed),
            "trial_key": self.trial_key,
            "data_key": str(self.settings.get("data", "")),  # --status tells runs on other data apart
        }


@dataclass
class StudyPlan:
    spec: StudySpec
    families: list[tuple[str, int]]  # (family, vocab size) tokenizers
    teachers: list[TeacherUnit]
    caches: list[CacheUnit]
    trials: list[TrialUnit]
    teacher_shapes: dict[str, ModelShape]
    cache_bytes: int
    gpu_hours: float
    notes: list[str] = field(default_factory=list)
    cells: list[TrialUnit] = field(default_factory=list)  # with tuning: each cell's trial on the first seed
    tune_gpu_hours: float = 0.0  # an upper bound: every tuning trial runs max_epochs (ASHA stops some sooner)
    estimate: str = "flops"  # or "calibrated": measured step times on this device (sweep/calibration.py)
    calibration: dict[str, Any] = field(default_factory=dict)  # device, measured_at, units, uncovered
    teacher_params: dict[str, int] = field(default_factory=dict)  # parameter estimate per teacher name

    def tuning_counts(self) -> dict[str, Any] | None:
        t = self.spec.tuning
        if t is None:
            return None
        return {
            "cells": len(self.cells),
            "samples_per_cell": t.samples,
            "max_epochs": t.max_epochs,
            "searcher": t.searcher,
            "scheduler": t.scheduler,
            "trials": len(self.cells) * t.samples,
            "gpu_hours": round(self.tune_gpu_hours, 2),
        }

    def counts(self) -> dict[str, Any]:
        by_stage = {
            "tokenizers": len(self.families),
            "teacher_finetune": len(self.teachers),
            "teacher_cache": len(self.caches),
            "student": len(self.trials),
        }
        return {
            "study": self.spec.name,
            "trials": len(self.trials),
            "teacher_finetunes": len(self.teachers),
            "teacher_passes": len(self.caches),
            "cache_bytes": self.cache_bytes,
            "gpu_hours": round(self.gpu_hours, 2),
            "stages": by_stage,
            "trials_by_method": {m: sum(t.method == m for t in self.trials) for m in self.spec.methods},
            "tuning": self.tuning_counts(),
            "total_gpu_hours": round(self.gpu_hours + self.tune_gpu_hours, 2),
            "estimate": self.estimate,
            "device": self.calibration.get("device"),
            "notes": self.notes,
        }


def teacher_shape(t: TeacherSettings) -> tuple[ModelShape, int, str | None]:
    """(shape, parameter estimate, note) of a teacher, without loading weights."""
    if t.source.startswith("random:"):
        layers, hidden = t.layers or 2, t.hidden or 64
        return ModelShape(layers, hidden), 12 * layers * hidden * hidden, None
    source = TEACHER_ALIASES.get(t.source, t.source)
    if source in KNOWN_TEACHERS or t.source in KNOWN_TEACHERS:
        layers, hidden, params = KNOWN_TEACHERS.get(source) or KNOWN_TEACHERS[t.source]
        return ModelShape(layers, hidden), params, None
    try:
        from transformers import AutoConfig

        cfg = AutoConfig.from_pretrained(source, local_files_only=True, trust_remote_code=t.trust_remote_code)
        return (
            ModelShape(cfg.num_hidden_layers, cfg.hidden_size),
            12 * cfg.num_hidden_layers * cfg.hidden_size**2,
            None,
        )
    except Exception:  # noqa: BLE001 - unknown offline: plan with a RoBERTa-base shape and say so
        return (
            ModelShape(12, 768),
            125_000_000,
            f"teacher '{t.name}': shape unknown offline, planned as 12x768",
        )


@cache
def student_parameters(student: str, num_labels: int) -> int:
    """A student's parameter count, from a model built on the meta device (no memory, no time)."""
    import torch

    from models import build_student, count_parameters

    with torch.device("meta"):
        return count_parameters(build_student(student, num_labels))


def student_train(spec: StudySpec, method: str) -> dict[str, Any]:
    settings = {**spec.student_train.model_dump(), **recipe_settings(spec.recipe, method)[0]}
    if method == "ckd":
        # CKD's relations are memory-hungry; the paper trains it with batch 16 where others use 32.
        settings["batch_size"] = min(settings["batch_size"], 16)
    return settings


def _split_sizes(spec: StudySpec, task: str) -> dict[str, int]:
    from tasks import is_custom

    if is_custom(task):
        sizes = get_task(task).split_sizes()  # type: ignore[attr-defined]
    elif spec.data == "hub":
        sizes = dict(HUB_SAMPLES[task])
    else:
        manifest = Path(spec.data) / "manifest.json"
        # build_local writes tasks.<task>.counts; the top-level "counts" is the older layout
        m = json.loads(manifest.read_text()) if manifest.exists() else {}
        counts = m.get("tasks", {}).get(task, {}).get("counts") or m.get("counts", {}).get(task)
        sizes = dict(counts) if isinstance(counts, dict) else {"train": 2000, "validation": 300, "test": 300}
    if spec.max_samples:
        sizes = {k: min(v, spec.max_samples) for k, v in sizes.items()}
    return sizes


def build_plan(spec: StudySpec, calibration: dict[str, Any] | None | str = "auto") -> StudyPlan:
    """``calibration``: measured step times (sweep/calibration.py); "auto" reads the study folder's
    calibration.json when it was measured on this device; None: the FLOP count alone."""
    dkey = data_key(spec)
    notes: list[str] = []
    shapes: dict[str, ModelShape] = {}
    tparams: dict[str, int] = {}
    for t in spec.teachers:
        shape, params, note = teacher_shape(t)
        shapes[t.name], tparams[t.name] = shape, params
        if note:
            notes.append(note)

    families = sorted(
        {(get_task(task).family, STUDENTS[s].vocab_size) for task in spec.tasks for s in spec.students}
    )
    kd_methods = [m for m in spec.methods if get_method(m).family != "none"]

    tflops = 100e12 * 0.35  # an A10G/A100-class GPU at a modest utilisation: a rough planning figure
    teachers, caches, tkeys, cache_bytes, gpu_seconds = _teacher_units(
        spec, dkey, kd_methods, shapes, tparams, tflops
    )
    trials, gpu_seconds = _trial_units(spec, dkey, tkeys, tparams, tflops, gpu_seconds)
    plan = StudyPlan(
        spec, families, teachers, caches, trials, shapes, int(cache_bytes), gpu_seconds / 3600, notes
    )
    plan.teacher_params = tparams
    apply_calibration(plan, calibration, _split_sizes)
    if spec.tuning is not None:
        plan.cells = [t for t in trials if t.seed == spec.seeds[0]]
        share = spec.tuning.max_epochs / spec.student_train.epochs
        plan.tune_gpu_hours = sum(t.gpu_seconds for t in plan.cells) * share * spec.tuning.samples / 3600
    return plan


def cell_id(spec: StudySpec, settings: dict[str, Any]) -> str:
    """A cell: a trial's settings but its seed, and the tuning budget and space when the study tunes."""
    payload = {k: v for k, v in settings.items() if k not in ("seed", "student_params")}
    if spec.tuning is not None:
        payload["tuning"] = spec.tuning.identity()
    return stable_key(payload)[:12]


def _teacher_units(
    spec: StudySpec,
    dkey: str,
    kd_methods: list[str],
    shapes: dict[str, ModelShape],
    tparams: dict[str, int],
    tflops: float,
) -> tuple[list[TeacherUnit], list[CacheUnit], dict[tuple[str, str], str], int, float]:
    """One fine-tune and one cache per (teacher, task), the cache holding the union of its students' signals."""
    teachers: list[TeacherUnit] = []
    caches: list[CacheUnit] = []
    tkeys: dict[tuple[str, str], str] = {}
    cache_bytes = 0
    gpu_seconds = 0.0
    for t in spec.teachers if kd_methods else []:
        for task in spec.tasks:
            key = stable_key(
                {
                    # the override enters through the merged train settings: keys without one are unchanged
                    "teacher": t.model_dump(exclude={"train"}),
                    "task": task,
                    "data": dkey,
                    "train": spec.teacher_train_for(t.name).model_dump(),
                }
            )
            tkeys[(t.name, task)] = key
            folder = str(Path(spec.storage) / "teachers" / f"{t.name}-{task}-{key}")
            union, ckd_sets = SignalSpec(logits=True), set()
            for s in spec.students:
                sshape = student_shape(s)
                for m in kd_methods:
                    method = get_method(m)(sshape, shapes[t.name], **spec.params_for(m))
                    sig = method.signals()
                    if m == "ckd" and spec.teacher_mode == "cached":
                        # CKD reads its teacher-side relations, precomputed at build time, not the token states.
                        ckd_sets.add((0, *layer_map(sshape.num_layers, shapes[t.name].num_layers)))
                        sig = SignalSpec(logits=sig.logits, cls_layers=sig.cls_layers)
                    union = union.union(sig)
            request = CacheRequest(
                folder,
                task,
                union,
                spec.student_train.max_length,
                spec.cache.dtype,
                tuple(sorted(ckd_sets)),
                precision=cache_precision(spec.precision),
            )
            sizes = _split_sizes(spec, task)
            mean_tok = (
                MEAN_TOKENS_512.get(task, MEAN_TOKENS_DECLARED)
                * min(spec.student_train.max_length, 512)
                / 512
            )
            tokens = {k: int(v * mean_tok) for k, v in sizes.items()}
            planned = plan_bytes(request, sizes, tokens, shapes[t.name], get_task(task).num_labels)
            cache_bytes += planned["total_bytes"]
            ft_tokens = sizes["train"] * mean_tok * spec.teacher_train_for(t.name).epochs
            p = tparams[t.name]
            ft_s, pass_s = 6 * p * ft_tokens / tflops, 2 * p * sum(tokens.values()) / tflops
            teachers.append(TeacherUnit(t.name, task, key, folder, ft_s))
            caches.append(CacheUnit(t.name, task, union, request.ckd_layer_sets, key, planned, pass_s))
            gpu_seconds += ft_s + pass_s
    return teachers, caches, tkeys, cache_bytes, gpu_seconds


def _trial_units(
    spec: StudySpec,
    dkey: str,
    tkeys: dict[tuple[str, str], str],
    tparams: dict[str, int],
    tflops: float,
    gpu_seconds: float,
) -> tuple[list[TrialUnit], float]:
    """Every (task, student, method, teacher, seed) trial with its key; ``gpu_seconds`` plus their estimated cost."""
    trials: list[TrialUnit] = []
    for task in spec.tasks:
        sizes = _split_sizes(spec, task)
        mean_tok = (
            MEAN_TOKENS_512.get(task, MEAN_TOKENS_DECLARED) * min(spec.student_train.max_length, 512) / 512
        )
        for s in spec.students:
            sparams = student_parameters(s, get_task(task).num_labels)
            for m in spec.methods:
                pairs = (
                    [("none", None)]
                    if get_method(m).family == "none"
                    else [(t.name, t) for t in spec.teachers]
                )
                for tname, _t in pairs:
                    for seed in spec.seeds:
                        settings = {
                            "task": task,
                            "teacher": tname,
                            "student": s,
                            "method": m,
                            "seed": seed,
                            "method_params": spec.params_for(m),
                            "train": student_train(spec, m),
                            "data": dkey,
                            "teacher_key": tkeys.get((tname, task)),
                            "mode": spec.teacher_mode,
                        }
                        key = stable_key(settings)
                        cell = cell_id(spec, settings)
                        settings["student_params"] = sparams
                        step_tokens = sizes["train"] * mean_tok * spec.student_train.epochs
                        cost = 6 * max(sparams, 1) * step_tokens
                        if tname != "none" and spec.teacher_mode == "online":
                            cost += 2 * tparams[tname] * step_tokens
                        gpu_seconds += cost / tflops
                        trials.append(TrialUnit(task, tname, s, m, seed, key, settings, cell, cost / tflops))
    return trials, gpu_seconds


def describe(plan: StudyPlan) -> str:
    c = plan.counts()
    lines = [
        f"study '{plan.spec.name}': {plan.spec.description}".rstrip(": "),
        f"  tokenizers          {c['stages']['tokenizers']:>6}",
        f"  teacher fine-tunes  {c['teacher_finetunes']:>6}",
        f"  teacher passes      {c['teacher_passes']:>6}   (one cache build per teacher x task)",
        f"  student trials      {c['trials']:>6}   "
        + ", ".join(f"{m}: {n}" for m, n in c["trials_by_method"].items()),
        f"  cache size (est.)   {human_bytes(c['cache_bytes']):>10}",
        f"  GPU-hours (est.)    {c['gpu_hours']:>10.2f}   {estimate_line(plan)}",
    ]
    tc = c["tuning"]
    if tc:
        lines[4] = lines[4].replace("student trials", "final trials  ")
        lines += [
            f"  tuning trials       {tc['trials']:>6}   ({tc['cells']} cells x {tc['samples_per_cell']} samples, "
            f"{tc['searcher']} + {tc['scheduler']}, at most {tc['max_epochs']} epochs each)",
            f"  tuning GPU-hours    {tc['gpu_hours']:>10.2f}   (upper bound: every trial to max_epochs)",
            f"  total GPU-hours     {c['total_gpu_hours']:>10.2f}   (teachers + final trials + tuning)",
        ]
    lines += [f"  note: {n}" for n in c["notes"]]
    return "\n".join(lines)


def plan_dict(plan: StudyPlan) -> dict[str, Any]:
    out = plan.counts()
    out["calibration"] = plan.calibration or None  # device, measured_at, units, uncovered (when calibrated)
    out["caches"] = [
        {
            "teacher": u.teacher,
            "task": u.task,
            "signals": u.spec.to_dict(),
            "ckd_layer_sets": [list(s) for s in u.ckd_layer_sets],
            "planned": u.planned,
        }
        for u in plan.caches
    ]
    return out
