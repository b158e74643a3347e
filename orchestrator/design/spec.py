"""A classification study (defect, clone, exception or declared tasks): factors, hyperparameters, resources and
storage, validated. ``study.load_spec`` reads it from YAML; errors name the file, the line and the key of a bad
value, and for an unknown task, teacher, student or method name, the valid ones.
"""

from __future__ import annotations

from typing import Any, ClassVar, Literal

from pydantic import Field, ValidationInfo, field_validator, model_validator

from orchestrator.design.base import Strict, StudyBase, known
from orchestrator.design.custom_tasks import declare_custom_tasks
from orchestrator.design.names import folder_name_problem
from orchestrator.design.tuning_spec import TuningSettings, parse_tuning, recipe_settings
from tasks.labels import ONE_OF, LabelSpec, level_name, value_problem


class TrainSettings(Strict):
    epochs: int = Field(5, ge=1)
    batch_size: int = Field(32, ge=1)
    lr: float = Field(2e-4, gt=0)
    weight_decay: float = Field(0.0, ge=0)
    warmup_ratio: float = Field(0.1, ge=0, le=1)
    max_grad_norm: float = Field(1.0, gt=0)
    max_length: int = Field(512, ge=8)


class StudentTrainSettings(TrainSettings):
    """A student's settings. ``steps``: every trial takes exactly that many optimiser steps, however many inputs its
    method reads (FT the labelled part, a KD method every input: ``labels``), so methods compare at the same
    budget; ``epochs`` is then ignored (each trial runs the epochs its steps take, the last one partial)."""

    steps: int | None = Field(None, ge=1)


class TrainOverride(Strict):
    """Some of TrainSettings, for one teacher: merged over the study's ``teacher_train``."""

    epochs: int | None = Field(None, ge=1)
    batch_size: int | None = Field(None, ge=1)
    lr: float | None = Field(None, gt=0)
    weight_decay: float | None = Field(None, ge=0)
    warmup_ratio: float | None = Field(None, ge=0, le=1)
    max_grad_norm: float | None = Field(None, gt=0)
    max_length: int | None = Field(None, ge=8)


RANDOM_HEADS = 2  # a random:<arch> teacher's attention heads (sweep/teacher_sources.py make_random_base)


def folder_name(name: str) -> str:
    """``name`` if it is usable as a folder name (the rule of study names, ``names.NAME_RE``); else a ValueError: a
    teacher's name becomes folders under the storage (and part of its trials' Ray folders), so it may never
    leave them."""
    problem = folder_name_problem(name)
    if problem:
        raise ValueError(problem)
    return name


class TeacherSettings(Strict):
    """A teacher: ``source`` is an alias (unixcoder, modernbert, minilm), a hub id, a local folder, or
    ``random:<arch>`` (a tiny randomly initialised model of that architecture, for smoke tests). ``train``: this
    teacher's own fine-tuning settings over the study's ``teacher_train`` (e.g. a lower lr for a pretrained one)."""

    name: str  # a folder name: <storage>/teachers/<name>-..., and part of every trial's Ray folder
    source: str
    trust_remote_code: bool = False
    layers: int | None = Field(None, ge=1)  # random:<arch> only (default 2)
    hidden: int | None = None  # random:<arch> only (default 64)
    train: TrainOverride | None = None

    @field_validator("name")
    @classmethod
    def _name(cls, v: str) -> str:
        return folder_name(v)

    @field_validator("hidden")
    @classmethod
    def _hidden(cls, v: int | None) -> int | None:
        if v is not None and (v < RANDOM_HEADS or v % RANDOM_HEADS):
            raise ValueError(
                f"must be a positive multiple of {RANDOM_HEADS} (a random teacher's {RANDOM_HEADS} attention "
                f"heads share it), got {v}"
            )
        return v


class CacheSettings(Strict):
    dtype: Literal["float16", "float32"] = "float16"
    # of the smallest node's object store, for all caches put together; larger ones are memory-mapped (cache/serve.py)
    object_store_share: float = Field(0.3, ge=0, le=1)


class LabelLevel(Strict):
    """One level of the ``labels:`` factor (``tasks.labels.LabelSpec``; its rules, so errors name the field)."""

    fraction: Any = None
    count: Any = None
    seed: Any = 0
    stratify: Any = False

    @field_validator("fraction", "count", "seed", "stratify")
    @classmethod
    def _value(cls, v: Any, info: ValidationInfo) -> Any:
        problem = value_problem(str(info.field_name), v)
        if problem:
            raise ValueError(problem)
        return v

    @model_validator(mode="after")
    def _one(self) -> LabelLevel:
        if (self.fraction is None) == (self.count is None):
            raise ValueError(ONE_OF)
        return self

    def label_spec(self) -> LabelSpec | None:
        """None when it keeps every label (``fraction: 1``): the default level, ``all``."""
        return None if self.fraction == 1 else LabelSpec(**self.model_dump(exclude_none=True))


class StudySpec(StudyBase):
    kind: ClassVar[str] = "classification"

    data: str = (
        "data/local"  # "hub" or a folder from python -m tasks.build_local (built if it is the default)
    )
    # A user's own tasks (docs/OWN_DATA.md): a `tasks:` entry that is a mapping declares one; they land here,
    # validated and with absolute data folders, and `tasks` holds their names.
    custom_tasks: list[dict[str, Any]] = Field(default_factory=list)
    tasks: list[str]
    teachers: list[TeacherSettings]
    students: list[str]
    methods: list[str]
    max_samples: int | None = Field(
        None, ge=1
    )  # the first N lines of every split, in file order (quick studies)
    # Fixes the data every trial sees whatever its seed: clone's 10% hub sample and the students' tokenizers
    # (docs/HUB.md). None: the first of ``seeds``.
    data_seed: int | None = None
    student_train: StudentTrainSettings = Field(default_factory=StudentTrainSettings)
    teacher_train: TrainSettings = Field(default_factory=lambda: TrainSettings(lr=2e-5))
    method_params: dict[str, dict[str, Any]] = Field(default_factory=dict)
    teacher_mode: Literal["cached", "online"] = "cached"
    # Forward passes of students, teacher fine-tunes and teacher passes: auto (bf16 on a GPU with bf16, else
    # fp32), fp32 or bf16 (torch.autocast). An execution setting: not part of any key; recorded per run.
    precision: Literal["auto", "fp32", "bf16"] = "auto"
    trials_per_gpu: int = Field(
        1, ge=1
    )  # >1: that many trials share a GPU (fractional resources, sweep/packing.py)
    cache: CacheSettings = Field(default_factory=CacheSettings)
    recipe: Literal["default", "authors"] = "default"  # authors: the published per-method settings
    tuning: TuningSettings | None = (
        None  # none: the fixed recipe; a mapping: tune every cell (tuning_spec.py)
    )
    # Labels on part of the training split (tasks/labels.py): one level ({count: 500}) or several, a factor crossed
    # with the others ([{count: 500}, {fraction: 1.0}]). None: every label, as before.
    labels: list[LabelLevel] | None = None

    @field_validator("labels", mode="before")
    @classmethod
    def _labels(cls, v: Any) -> Any:
        if v is None or v == "all":
            return None
        levels = v if isinstance(v, list) else [v]
        if not levels:
            raise ValueError("give at least one level, e.g. {count: 500} or [{count: 500}, {fraction: 1.0}]")
        return [{"fraction": 1.0} if x == "all" else x for x in levels]

    @field_validator("tuning", mode="before")
    @classmethod
    def _tuning(cls, v: Any) -> Any:
        return parse_tuning(v)

    @model_validator(mode="before")
    @classmethod
    def _declare_tasks(cls, raw: Any, info: ValidationInfo) -> Any:
        base = (info.context or {}).get("base_dir")
        return declare_custom_tasks(raw, base)

    @field_validator("tasks")
    @classmethod
    def _tasks(cls, v: list[str]) -> list[str]:
        from tasks import TASKS

        return known(v, sorted(TASKS), "task")

    @field_validator("students")
    @classmethod
    def _students(cls, v: list[str]) -> list[str]:
        from models import STUDENTS

        return known(v, sorted(STUDENTS), "student")

    @field_validator("methods")
    @classmethod
    def _methods(cls, v: list[str]) -> list[str]:
        from orchestrator.cli_help import METHOD_NAMES

        # the classification methods: distil is the completion study's (causal LMs)
        return known([m.lower() for m in v], sorted(METHOD_NAMES), "method")

    @field_validator("teachers")
    @classmethod
    def _teachers(cls, v: list[TeacherSettings]) -> list[TeacherSettings]:
        names = [t.name for t in v]
        if len(set(names)) != len(names):
            raise ValueError(f"teacher names must be unique, got {names}")
        for t in v:
            if t.name == "none":
                raise ValueError("'none' is reserved (the teacher tag of FT runs)")
            if t.source.startswith("random:") and t.source.split(":", 1)[1] not in ("roberta", "bert"):
                raise ValueError(
                    f"teacher '{t.name}': unknown random architecture '{t.source}'; "
                    "valid: random:roberta, random:bert"
                )
        return v

    @model_validator(mode="after")
    def _method_params(self) -> StudySpec:
        from kd_methods import get_method
        from orchestrator.cli_help import METHOD_NAMES

        for method, params in self.method_params.items():
            if method.lower() not in METHOD_NAMES:  # distil: the completion study's (causal LMs)
                raise ValueError(
                    f"method_params: unknown method '{method}' for a classification study; "
                    f"valid: {sorted(METHOD_NAMES)}"
                )
            cls = get_method(method)
            unknown = sorted(set(params) - set(cls.defaults))
            if unknown:
                raise ValueError(
                    f"method_params.{method}: unknown hyperparameter(s) {unknown}; "
                    f"valid: {sorted(cls.defaults)}"
                )
        if any(m != "ft" for m in self.methods) and not self.teachers:
            raise ValueError("KD methods need at least one teacher")
        if self.data_seed is None:
            self.data_seed = self.seeds[0]
        if self.tuning is not None and self.teacher_mode != "cached":
            raise ValueError(
                "tuning reads the teacher cache (a tuning trial never runs the teacher): teacher_mode: cached"
            )
        for m in (
            self.methods if self.tuning is not None else []
        ):  # a sampled batch size obeys the method's cap
            r, cap = self.tuning.space_for(m).get("batch_size"), get_method(m).batch_size_cap
            top = max(r.values or [0]) if r is not None and r.type == "choice" else (r.high if r else None)
            if cap is not None and top is not None and top > cap:
                raise ValueError(f"tuning.space.{m}.batch_size reaches {top}; {m} caps its batch at {cap}")
        if self.tuning is not None and self.tuning.trial_seed in self.seeds:
            raise ValueError(
                f"tuning.trial_seed {self.tuning.trial_seed} is one of the study's seeds {self.seeds}: a final run "
                "would replay its cell's winning tuning trial; give a seed the finals do not use"
            )
        if self.tuning is not None and self.student_train.steps is not None:
            raise ValueError(
                "student_train.steps: tuning budgets trials in epochs (tuning.max_epochs); give epochs, not steps"
            )
        return self

    def label_levels(self) -> dict[str, LabelSpec | None]:
        """The labels factor's levels by name (``all``, ``count=500``, ...), in the study's order."""
        specs = [lv.label_spec() for lv in self.labels] if self.labels else [None]
        return {level_name(s): s for s in specs}

    def teacher_train_for(self, teacher: str) -> TrainSettings:
        """``teacher_train`` with the teacher's own ``train`` override merged over it."""
        t = next(t for t in self.teachers if t.name == teacher)
        override = t.train.model_dump(exclude_none=True) if t.train else {}
        return TrainSettings(**{**self.teacher_train.model_dump(), **override})

    def params_for(self, method: str) -> dict[str, Any]:
        """The method's parameters: ``method_params``, then the ``recipe`` preset's (which wins where it has one)."""
        return {**self.method_params.get(method, {}), **recipe_settings(self.recipe, method)[1]}
