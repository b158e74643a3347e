"""A study definition: factors, hyperparameters, resources and storage, read from YAML and validated.

Errors name the place: the file, the line and the key of a bad value, and for an unknown task, teacher, student or
method name, the valid ones.
"""

from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)

from orchestrator.sweep.custom_tasks import declare_custom_tasks
from orchestrator.sweep.tuning_spec import TuningSettings, parse_tuning, recipe_settings

PROFILES_DIR = Path(__file__).parent.parent / "profiles"  # orchestrator/profiles (package data)
DECLARED_AT = re.compile(r"(custom_tasks|tasks)\[(\d+)\]: ")  # the prefix custom_tasks.py gives its errors


class StudyError(ValueError):
    """A study file or profile is invalid; the message names the place."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class TrainSettings(_Strict):
    epochs: int = Field(5, ge=1)
    batch_size: int = Field(32, ge=1)
    lr: float = Field(2e-4, gt=0)
    weight_decay: float = Field(0.0, ge=0)
    warmup_ratio: float = Field(0.1, ge=0, le=1)
    max_grad_norm: float = Field(1.0, gt=0)
    max_length: int = Field(512, ge=8)


class TrainOverride(_Strict):
    """Some of TrainSettings, for one teacher: merged over the study's ``teacher_train``."""

    epochs: int | None = Field(None, ge=1)
    batch_size: int | None = Field(None, ge=1)
    lr: float | None = Field(None, gt=0)
    weight_decay: float | None = Field(None, ge=0)
    warmup_ratio: float | None = Field(None, ge=0, le=1)
    max_grad_norm: float | None = Field(None, gt=0)
    max_length: int | None = Field(None, ge=8)


class TeacherSettings(_Strict):
    """A teacher: ``source`` is an alias (unixcoder, modernbert, minilm), a hub id, a local folder, or
    ``random:<arch>`` (a tiny randomly initialised model of that architecture, for smoke tests). ``train``: this
    teacher's own fine-tuning settings over the study's ``teacher_train`` (e.g. a lower lr for a pretrained one)."""

    name: str
    source: str
    trust_remote_code: bool = False
    layers: int | None = None  # random:<arch> only
    hidden: int | None = None  # random:<arch> only
    train: TrainOverride | None = None


class Resources(_Strict):
    cpu: float = Field(1, ge=0)
    gpu: float = Field(0, ge=0)


class CacheSettings(_Strict):
    dtype: Literal["float16", "float32"] = "float16"
    object_store_share: float = Field(0.3, ge=0, le=1)  # of the object store; larger caches are memory-mapped


class StudySpec(_Strict):
    name: str
    description: str = ""
    data: str = (
        "data/local"  # "hub" or a folder from python -m tasks.build_local (built if it is the default)
    )
    storage: str = "runs"  # caches, checkpoints, Ray results; the study's folder is <storage>/<name>
    # A user's own tasks (docs/OWN_DATA.md): a `tasks:` entry that is a mapping declares one; they land here,
    # validated and with absolute data folders, and `tasks` holds their names.
    custom_tasks: list[dict[str, Any]] = Field(default_factory=list)
    tasks: list[str]
    teachers: list[TeacherSettings]
    students: list[str]
    methods: list[str]
    seeds: list[int] = Field(default_factory=lambda: [0])
    max_samples: int | None = Field(None, ge=1)  # cap every split (quick studies)
    student_train: TrainSettings = Field(default_factory=TrainSettings)
    teacher_train: TrainSettings = Field(default_factory=lambda: TrainSettings(lr=2e-5))
    method_params: dict[str, dict[str, Any]] = Field(default_factory=dict)
    teacher_mode: Literal["cached", "online"] = "cached"
    trial_resources: Resources = Field(default_factory=Resources)
    teacher_resources: Resources = Field(default_factory=Resources)
    max_concurrent_trials: int = Field(2, ge=1)
    # Forward passes of students, teacher fine-tunes and teacher passes: auto (bf16 on a GPU with bf16, else
    # fp32), fp32 or bf16 (torch.autocast). An execution setting: not part of any key; recorded per run.
    precision: Literal["auto", "fp32", "bf16"] = "auto"
    trials_per_gpu: int = Field(
        1, ge=1
    )  # >1: that many trials share a GPU (fractional resources, sweep/packing.py)
    max_failures: int = Field(1, ge=0)  # retries of a failing trial
    cache: CacheSettings = Field(default_factory=CacheSettings)
    recipe: Literal["default", "authors"] = "default"  # authors: the published per-method settings
    tuning: TuningSettings | None = (
        None  # none: the fixed recipe; a mapping: tune every cell (tuning_spec.py)
    )

    @field_validator("tuning", mode="before")
    @classmethod
    def _tuning(cls, v: Any) -> Any:
        return parse_tuning(v)

    @field_validator("storage")
    @classmethod
    def _storage(cls, v: str) -> str:
        if "://" in v:
            raise ValueError(
                f"storage must be a file system path every node sees (e.g. an EFS/NFS mount such as /mnt/kdstudy), "
                f"got '{v}': trials memory-map the teacher-cache shards written there"
            )
        return v

    @model_validator(mode="before")
    @classmethod
    def _declare_tasks(cls, raw: Any, info: ValidationInfo) -> Any:
        base = (info.context or {}).get("base_dir")
        return declare_custom_tasks(raw, base)

    @field_validator("tasks")
    @classmethod
    def _tasks(cls, v: list[str]) -> list[str]:
        from tasks import TASKS

        return _known(v, sorted(TASKS), "task")

    @field_validator("students")
    @classmethod
    def _students(cls, v: list[str]) -> list[str]:
        from models import STUDENTS

        return _known(v, sorted(STUDENTS), "student")

    @field_validator("methods")
    @classmethod
    def _methods(cls, v: list[str]) -> list[str]:
        from kd_methods import METHODS

        return _known([m.lower() for m in v], sorted(METHODS), "method")

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

        for method, params in self.method_params.items():
            try:
                cls = get_method(method)
            except KeyError as err:
                raise ValueError(f"method_params: {err.args[0]}") from None
            unknown = sorted(set(params) - set(cls.defaults))
            if unknown:
                raise ValueError(
                    f"method_params.{method}: unknown hyperparameter(s) {unknown}; "
                    f"valid: {sorted(cls.defaults)}"
                )
        if any(m != "ft" for m in self.methods) and not self.teachers:
            raise ValueError("KD methods need at least one teacher")
        if self.tuning is not None and self.teacher_mode != "cached":
            raise ValueError(
                "tuning reads the teacher cache (a tuning trial never runs the teacher): teacher_mode: cached"
            )
        return self

    @property
    def study_dir(self) -> Path:
        return Path(self.storage) / self.name

    def teacher_train_for(self, teacher: str) -> TrainSettings:
        """``teacher_train`` with the teacher's own ``train`` override merged over it."""
        t = next(t for t in self.teachers if t.name == teacher)
        override = t.train.model_dump(exclude_none=True) if t.train else {}
        return TrainSettings(**{**self.teacher_train.model_dump(), **override})

    def params_for(self, method: str) -> dict[str, Any]:
        """The method's parameters: ``method_params``, then the ``recipe`` preset's (which wins where it has one)."""
        return {**self.method_params.get(method, {}), **recipe_settings(self.recipe, method)[1]}


def _known(values: list[str], valid: list[str], what: str) -> list[str]:
    if not values:
        raise ValueError(f"at least one {what} is needed; valid: {valid}")
    for v in values:
        if v not in valid:
            raise ValueError(f"unknown {what} '{v}'; valid: {valid}")
    return values


def profiles() -> list[str]:
    return sorted(p.stem for p in PROFILES_DIR.glob("*.yaml"))


def _line_of(node: yaml.Node | None, loc: tuple[Any, ...]) -> int | None:
    """The 1-based line of the YAML node at pydantic's error location ``loc``."""
    line = node.start_mark.line + 1 if node is not None else None
    for part in loc:
        if isinstance(node, yaml.MappingNode):
            match = next((v for k, v in node.value if k.value == part), None)
            if match is None:
                key = next((k for k, _ in node.value if k.value == part), None)
                return key.start_mark.line + 1 if key is not None else line
            node = match
        elif isinstance(node, yaml.SequenceNode) and isinstance(part, int) and part < len(node.value):
            node = node.value[part]
        else:
            break
        line = node.start_mark.line + 1
    return line


def load_spec(name_or_path: str | Path, overrides: dict[str, Any] | None = None) -> StudySpec:
    """A built-in profile by name (smoke, local, full) or a YAML file."""
    path = Path(name_or_path)
    if not path.suffix and not path.exists():
        path = PROFILES_DIR / f"{name_or_path}.yaml"
        if not path.exists():
            raise StudyError(
                f"unknown study '{name_or_path}': not a file, and not a profile; profiles: {profiles()}"
            )
    if not path.exists():
        raise StudyError(f"study file {path} does not exist")
    text = path.read_text()
    try:
        node = yaml.compose(text)
        raw = yaml.safe_load(text)
    except yaml.YAMLError as err:
        raise StudyError(f"{path}: invalid YAML: {err}") from None
    if not isinstance(raw, dict):
        raise StudyError(f"{path}: a study is a YAML mapping (name, tasks, teachers, students, methods, ...)")
    raw.setdefault("name", path.stem)
    raw.update(overrides or {})
    try:
        return StudySpec.model_validate(raw, context={"base_dir": path.resolve().parent})
    except ValidationError as err:
        lines = []
        for e in err.errors():
            loc = tuple(e["loc"])
            msg = e["msg"].removeprefix("Value error, ")
            declared = DECLARED_AT.match(msg) if not loc else None
            if declared:  # a task declaration's error (custom_tasks.py): point at its entry
                loc, msg = (declared[1], int(declared[2])), msg[declared.end() :]
            where = ".".join(str(p) for p in loc) or "(top level)"
            line = _line_of(node, loc)
            if e["type"] == "extra_forbidden":
                msg = "unknown key"
            lines.append(f"{path}:{line}: {where}: {msg}" if line else f"{path}: {where}: {msg}")
        raise StudyError("invalid study:\n  " + "\n  ".join(lines)) from None


def stable_key(payload: Any) -> str:
    """A short content hash of JSON-able settings (trial keys, unit keys)."""
    text = json.dumps(payload, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]
