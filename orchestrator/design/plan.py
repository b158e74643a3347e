"""A classification study expanded into its units: tokenizers -> teacher fine-tunes -> teacher caches -> trials.

Every unit has a content key, so a unit whose output already exists is skipped, and a trial whose ``trial_key``
already has a FINISHED MLflow run is not run again. Each trial is a typed ``ClassificationTrial`` built here once
and run as it is by the worker. Planning reads no model weights and no hub data.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from itertools import product
from pathlib import Path
from typing import Any

from kd_methods import ModelShape, SignalSpec, get_method, merge_derived
from models import STUDENTS, get_student_spec
from models.spec import BIGRU_LAYOUT
from orchestrator.cache.key import CacheRequest, plan_bytes
from orchestrator.core.device import cache_precision
from orchestrator.core.paths import scratch_dir, stable_key
from orchestrator.design.calibration import apply_calibration
from orchestrator.design.identity import data_key, trial_data
from orchestrator.design.names import run_name, trial_params
from orchestrator.design.sizes import (
    label_counts,
    mean_tokens,
    split_sizes,
    student_parameters,
    teacher_shape,
)
from orchestrator.design.spec import StudySpec
from orchestrator.design.tuning_spec import recipe_settings
from orchestrator.design.units import CacheUnit, ClassificationTrial, TeacherUnit
from orchestrator.train.config import TrainConfig
from orchestrator.train.trial import TrialConfig, student_shape
from tasks import get_task
from tasks.labels import LabelSpec, level_name

TFLOPS = 100e12 * 0.35  # an A10G/A100-class GPU at a modest utilisation: a rough planning figure


@dataclass
class StudyPlan:
    spec: StudySpec
    data: str  # what trials read: "hub" or an absolute folder
    families: list[tuple[str, int]]  # (family, vocab size) tokenizers
    teachers: list[TeacherUnit]
    caches: list[CacheUnit]
    trials: list[ClassificationTrial]
    teacher_shapes: dict[str, ModelShape]
    cache_bytes: int
    gpu_hours: float
    notes: list[str] = field(default_factory=list)
    cells: list[ClassificationTrial] = field(
        default_factory=list
    )  # with tuning: each cell's first-seed trial
    tune_gpu_hours: float = 0.0  # an upper bound: every tuning trial runs max_epochs (ASHA stops some sooner)
    estimate: str = "flops"  # or "calibrated": measured step times on this device (design/calibration.py)
    calibration: dict[str, Any] = field(default_factory=dict)  # device, measured_at, units, uncovered
    teacher_params: dict[str, int] = field(default_factory=dict)  # parameter estimate per teacher name
    data_key: str = ""  # the data by content (identity.py): every trial's key and tag data_key

    @property
    def planned_hours(self) -> float:
        return self.gpu_hours + self.tune_gpu_hours

    def tuning_counts(self) -> dict[str, Any] | None:
        t = self.spec.tuning
        if t is None:
            return None
        return {
            "cells": len(self.cells), "samples_per_cell": t.samples, "max_epochs": t.max_epochs,
            "searcher": t.searcher, "scheduler": t.scheduler, "trials": len(self.cells) * t.samples,
            "gpu_hours": round(self.tune_gpu_hours, 2),
        }  # fmt: skip

    def counts(self) -> dict[str, Any]:
        by_stage = {
            "tokenizers": len(self.families), "teacher_finetune": len(self.teachers),
            "teacher_cache": len(self.caches), "student": len(self.trials),
        }  # fmt: skip
        return {
            "study": self.spec.name,
            "trials": len(self.trials),
            "teacher_finetunes": len(self.teachers),
            "teacher_passes": len(self.caches),
            "cache_bytes": self.cache_bytes,
            "gpu_hours": round(self.gpu_hours, 2),
            "stages": by_stage,
            "trials_by_method": {m: sum(t.method == m for t in self.trials) for m in self.spec.methods},
            "labels": self.labels_factor(),
            "tuning": self.tuning_counts(),
            "total_gpu_hours": round(self.gpu_hours + self.tune_gpu_hours, 2),
            "estimate": self.estimate,
            "device": self.calibration.get("device"),
            "notes": self.notes,
        }

    def labels_factor(self) -> dict[str, Any]:
        """The labels factor: its levels, each level's trials, and per task and level the labelled and unlabelled
        training inputs (FT trains on the first, KD on both)."""
        levels = self.spec.label_levels()
        return {
            "levels": list(levels),
            "trials": {name: sum(t.labels == name for t in self.trials) for name in levels},
            "samples": {
                task: {
                    name: dict(zip(("labelled", "unlabelled"), label_counts(self.spec, task, labels)))
                    for name, labels in levels.items()
                }
                for task in self.spec.tasks
            },
        }

    def trial(
        self, settings: dict[str, Any], key: str, cell: str, extra_tags: dict[str, str]
    ) -> ClassificationTrial:
        """The typed trial of ``settings`` (its key payload), as the worker runs it (see ``new_trial``)."""
        folders = {(u.teacher, u.task, u.labels): u.folder for u in self.teachers}
        return new_trial(self.spec, self.data, folders, settings, key, cell, extra_tags)


def student_train(spec: StudySpec, method: str) -> dict[str, Any]:
    """A method's training settings: the study's, the recipe's per-method ones, and the method's own batch cap."""
    # exclude_none: steps only when set, so a study without it keeps its trial keys
    settings = {**spec.student_train.model_dump(exclude_none=True), **recipe_settings(spec.recipe, method)[0]}
    cap = get_method(method).batch_size_cap  # e.g. CKD's relations are memory-hungry: the paper uses batch 16
    if cap is not None:
        settings["batch_size"] = min(settings["batch_size"], cap)
    return settings


def cell_id(spec: StudySpec, settings: dict[str, Any]) -> str:
    """A cell: a trial's settings but its seed, and the tuning budget and space when the study tunes."""
    payload = {k: v for k, v in settings.items() if k not in ("seed", "student_params")}
    if spec.tuning is not None:
        payload["tuning"] = spec.tuning.identity(settings["method"], spec.seeds)
    return stable_key(payload)[:12]


def new_trial(
    spec: StudySpec, data: str, folders: dict[tuple[str, str, str], str], settings: dict[str, Any], key: str, cell: str,
    extra_tags: dict[str, str] | None = None,
) -> ClassificationTrial:  # fmt: skip
    """A trial from its key payload ``settings``: the work ``run_trial`` does, its tags, params and identity."""
    task, teacher, student, method, seed = (
        settings[k] for k in ("task", "teacher", "student", "method", "seed")
    )
    train, method_params = dict(settings["train"]), dict(settings["method_params"])
    labels = LabelSpec.parse(settings.get("labels"))  # absent: every label (the keys of studies before it)
    level = level_name(labels)
    work = TrialConfig(
        task=task, student=student, method=method, teacher=folders.get((teacher, task, level)), seed=seed, data=data,
        data_seed=spec.data_seed or 0,
        max_length=train["max_length"], max_samples=spec.max_samples, method_params=method_params,
        # precision: an execution setting beside the recipe (not in the key)
        train=TrainConfig(**{k: v for k, v in train.items() if k != "max_length"}, precision=spec.precision),
        teacher_mode=spec.teacher_mode, cache_dir=str(Path(spec.storage) / "cache"), labels=settings.get("labels"),
    )  # fmt: skip
    factors = {"task": task, "teacher": teacher, "student": student, "method": method, "seed": seed}
    tags = {
        **(extra_tags or {}), "cell": cell, "stage": "student", "study": spec.name, **factors, "seed": str(seed),
        "student_arch": get_student_spec(student).arch, "student_params": str(settings.get("student_params", "")),
        "method_family": get_method(method).family, "trial_key": key, "data_key": str(settings.get("data", "")),
        "labels": level,
    }  # fmt: skip
    # the method's hyperparameters as the trial runs them: its defaults (DIST's beta, gamma, tau...) and the study's
    effective = {**get_method(method).defaults, **method_params}
    params = {**train, **{f"method.{k}": v for k, v in effective.items()}, **factors, "data": data}
    params.update(max_samples=spec.max_samples, teacher_mode=spec.teacher_mode, data_seed=spec.data_seed)
    params["labels"] = level  # labelled_samples / unlabelled_samples: the actual counts, logged by the work
    return ClassificationTrial(
        kind="classification", trial_key=key, run_name=run_name(task, student, method, teacher, seed, level), tags=tags,
        params=trial_params(params), teacher=teacher, student=student, method=method, seed=seed, task=task,
        cpus=spec.trial_resources.cpu, scratch=str(scratch_dir(Path(spec.storage).resolve(), spec.name)),
        declared_tasks=list(spec.custom_tasks), work=work, settings=settings, cell=cell,
        student_params=int(settings.get("student_params") or 0), labels=level,
    )  # fmt: skip


def build_classification_plan(
    spec: StudySpec, calibration: dict[str, Any] | None | str = "auto"
) -> StudyPlan:
    """``calibration``: measured step times (design/calibration.py); "auto" reads the study folder's
    calibration.json when it was measured on this device; None: the FLOP count alone."""
    dkey = data_key(spec)
    notes: list[str] = []
    shapes: dict[str, ModelShape] = {}
    tparams: dict[str, int] = {}
    for t in spec.teachers:
        shape, params, note = teacher_shape(t)
        shapes[t.name], tparams[t.name] = shape, params
        notes += [note] if note else []
    families = sorted(
        {(get_task(task).family, STUDENTS[s].vocab_size) for task in spec.tasks for s in spec.students}
    )
    teachers, caches, tkeys, cache_bytes = _teacher_units(spec, dkey, shapes, tparams)
    plan = StudyPlan(
        spec, trial_data(spec), families, teachers, caches, [], shapes, int(cache_bytes), 0.0, notes
    )
    plan.teacher_params, plan.data_key = tparams, dkey
    plan.trials = _trial_units(plan, dkey, tkeys, tparams)
    units = [*teachers, *caches, *plan.trials]
    plan.gpu_hours = sum(u.gpu_seconds for u in units) / 3600
    apply_calibration(plan, calibration, unit_sizes)
    if spec.tuning is not None:
        plan.cells = [t for t in plan.trials if t.seed == spec.seeds[0]]
        share = spec.tuning.max_epochs / spec.student_train.epochs
        plan.tune_gpu_hours = sum(t.gpu_seconds for t in plan.cells) * share * spec.tuning.samples / 3600
    return plan


def unit_sizes(spec: StudySpec, unit: Any) -> dict[str, int]:
    """The samples per split a unit reads: a teacher fine-tune and FT the labelled part of the training split, a
    teacher pass and a KD trial every training input (labelled and not)."""
    labelled, unlabelled = label_counts(spec, unit.task, spec.label_levels()[unit.labels])
    ft = isinstance(unit, TeacherUnit) or getattr(unit, "teacher", "") == "none"
    return {**split_sizes(spec, unit.task), "train": labelled if ft else labelled + unlabelled}


def _cache_request(spec: StudySpec, folder: str, task: str, shape: ModelShape) -> CacheRequest:
    """One cache per (teacher, task): the union of what every KD method of every student reads from it
    (``KDMethod.cache_needs``: stored signals, and derived numbers such as CKD's Gram numbers)."""
    union, derived = SignalSpec(logits=True), []
    for s in spec.students:
        for m in spec.methods:
            if get_method(m).family == "none":
                continue
            method = get_method(m)(student_shape(s), shape, **spec.params_for(m))
            signals, extra = (
                method.cache_needs() if spec.teacher_mode == "cached" else (method.signals(), None)
            )
            union, derived = union.union(signals), [*derived, extra]
    return CacheRequest(
        folder, task, union, spec.student_train.max_length, spec.cache.dtype, merge_derived(derived),
        precision=cache_precision(spec.precision),
    )  # fmt: skip


def _teacher_units(
    spec: StudySpec, dkey: str, shapes: dict[str, ModelShape], tparams: dict[str, int]
) -> tuple[list[TeacherUnit], list[CacheUnit], dict[tuple[str, str, str], str], int]:
    """One fine-tune and one cache per (teacher, task, labels level), with their estimated cost. The teacher sees
    the labelled part; its cache covers every training input (tasks/labels.py)."""
    teachers: list[TeacherUnit] = []
    caches: list[CacheUnit] = []
    tkeys: dict[tuple[str, str, str], str] = {}
    cache_bytes = 0
    kd = any(get_method(m).family != "none" for m in spec.methods)
    for t, task, (level, labels) in product(
        spec.teachers if kd else [], spec.tasks, spec.label_levels().items()
    ):
        # the override enters through the merged train settings: keys without one are unchanged; so does a
        # labels level other than all
        train = spec.teacher_train_for(t.name).model_dump()
        payload = {"teacher": t.model_dump(exclude={"train"}), "task": task, "data": dkey, "train": train}
        key = stable_key({**payload, **({"labels": labels.to_dict()} if labels else {})})
        tkeys[(t.name, task, level)] = key
        name = f"{t.name}-{task}-{key}" if labels is None else f"{t.name}-{task}-{_slug(level)}-{key}"
        folder = str(Path(spec.storage) / "teachers" / name)
        request = _cache_request(spec, folder, task, shapes[t.name])
        sizes, mean_tok = split_sizes(spec, task), mean_tokens(spec, task)
        labelled, unlabelled = label_counts(spec, task, labels)
        sizes["train"] = labelled + unlabelled
        tokens = {k: int(v * mean_tok) for k, v in sizes.items()}
        planned = plan_bytes(request, sizes, tokens, shapes[t.name], get_task(task).num_labels)
        cache_bytes += planned["total_bytes"]
        ft_tokens = labelled * mean_tok * spec.teacher_train_for(t.name).epochs
        p = tparams[t.name]
        ft_s, pass_s = 6 * p * ft_tokens / TFLOPS, 2 * p * sum(tokens.values()) / TFLOPS
        teachers.append(TeacherUnit(t.name, task, key, folder, ft_s, level))
        unit = CacheUnit(t.name, task, request.spec, request.derived, key, planned, pass_s, level)
        caches.append(unit)
    return teachers, caches, tkeys, cache_bytes


def _slug(level: str) -> str:
    """A level's name as part of a folder name (``count=500;seed=1`` -> ``count=500-seed=1``)."""
    return level.replace(";", "-")


def _trial_units(
    plan: StudyPlan, dkey: str, tkeys: dict[tuple[str, str, str], str], tparams: dict[str, int]
) -> list[ClassificationTrial]:
    """Every (task, labels level, student, method, teacher, seed) trial with its key and estimated cost."""
    spec, trials = plan.spec, []
    for task, (level, labels), s, m in product(
        spec.tasks, spec.label_levels().items(), spec.students, spec.methods
    ):
        mean_tok, sparams = mean_tokens(spec, task), student_parameters(s, get_task(task).num_labels)
        ft = get_method(m).family == "none"
        labelled, unlabelled = label_counts(spec, task, labels)
        names = ["none"] if ft else [t.name for t in spec.teachers]
        for tname, seed in product(names, spec.seeds):
            settings = {
                "task": task, "teacher": tname, "student": s, "method": m, "seed": seed,
                "method_params": spec.params_for(m), "train": student_train(spec, m), "data": dkey,
                "teacher_key": tkeys.get((tname, task, level)), "mode": spec.teacher_mode,
            }  # fmt: skip
            if labels is not None:  # in the key only then: a study without labels keeps its keys
                settings["labels"] = labels.to_dict()
            if get_student_spec(s).arch == "bigru":  # RoBERTa students keep their keys
                settings["student_layout"] = BIGRU_LAYOUT
            key, cell = stable_key(settings), cell_id(spec, settings)
            settings["student_params"] = sparams
            trial = plan.trial(settings, key, cell, {})
            # FT trains on the labelled part, KD on every input; with steps, each reads steps x batch samples
            train = settings["train"]
            if train.get("steps"):
                seen = train["steps"] * train["batch_size"]
            else:
                seen = (labelled if ft else labelled + unlabelled) * train["epochs"]
            step_tokens = seen * mean_tok
            cost = 6 * max(sparams, 1) * step_tokens
            if tname != "none" and spec.teacher_mode == "online":
                cost += 2 * tparams[tname] * step_tokens
            trial.gpu_seconds = cost / TFLOPS
            trials.append(trial)
    return trials
