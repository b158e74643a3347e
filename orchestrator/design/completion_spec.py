"""A completion study (``task: completion``): GPT-2 teachers and students, teacher modes, inits, read from YAML.

Factors: ``teachers`` x ``students`` (GPT-2 depths) x ``student_init`` x ``teacher_modes`` x ``methods`` x ``seeds``.
``methods``: ``distil`` (DistilBERT's loss) and ``lm_only`` (the same student trained on the LM loss alone, no teacher
signal: distil with alpha_ce = alpha_cos = 0; one run per (teacher, student, init, seed), ``teacher_mode=none``).
A teacher is ``random:gpt2`` (tiny, random, its BPE trained on the study's train split), an alias (``codegpt``), a
hub id or a folder; ``train`` trains it on the LM loss once before the study (the local profile's pre-training on
the proxy, or a fine-tune of a hub model), keyed by content. Errors name the file, line and key, like
a classification study's (``study.load_spec`` reads both).
"""

from __future__ import annotations

import re
from typing import Any, ClassVar, Literal

from pydantic import Field, field_validator, model_validator

from orchestrator.design.base import Strict, StudyBase, known

TEACHER_MODES = ("cached", "cached-topk", "online", "in_training")
CACHED_MODES = ("cached", "cached-topk")
METHODS = ("distil", "lm_only")


class LMTrainSettings(Strict):
    """``orchestrator.train.lm_trainer.LMTrainConfig`` fields a study sets (HF distiller defaults)."""

    epochs: int = Field(3, ge=1)
    batch_size: int = Field(8, ge=1)
    eval_batch_size: int = Field(8, ge=1)
    lr: float = Field(5e-4, gt=0)
    weight_decay: float = Field(0.0, ge=0)
    warmup_ratio: float = Field(0.05, ge=0, le=1)
    max_grad_norm: float = Field(5.0, gt=0)
    grad_accum: int = Field(1, ge=1)
    max_steps: int | None = Field(None, ge=1)
    amp: Literal["bf16"] | None = None


class InTrainingSettings(Strict):
    """The in-training teacher's own optimiser (``lm_teachers.TeacherTrainConfig``; CodeXGLUE's recipe)."""

    lr: float = Field(8e-5, gt=0)
    weight_decay: float = Field(0.01, ge=0)
    warmup_ratio: float = Field(0.0, ge=0, le=1)
    max_grad_norm: float = Field(1.0, gt=0)


class LMTeacherSettings(Strict):
    name: str  # a folder name: <storage>/completion-teachers/<name>-<key>
    source: str  # random:gpt2 | codegpt | hub id | folder
    layers: int = Field(2, ge=1)  # random:gpt2 only (the next four too)
    hidden: int = Field(64, ge=8)
    heads: int = Field(2, ge=1)
    positions: int = Field(256, ge=32)
    vocab: int = Field(1000, ge=300)  # BPE size trained on the train split (specials included)
    train: LMTrainSettings | None = (
        None  # LM training of the teacher before the study (once, keyed by content)
    )
    trust_remote_code: bool = False

    @field_validator("name")
    @classmethod
    def _name(cls, v: str) -> str:
        from orchestrator.design.spec import folder_name

        return folder_name(v)

    @property
    def random(self) -> bool:
        return self.source.startswith("random:")


class DataCaps(Strict):
    """Use the first N files / line samples of each split (quick studies); None: all."""

    train_files: int | None = Field(None, ge=1)
    validation_files: int | None = Field(None, ge=1)
    line_test: int | None = Field(None, ge=1)


class GenerationSpec(Strict):
    """CodeXGLUE's line completion (``tasks.completion.generate.GenerationSettings``)."""

    beam_size: int = Field(5, ge=1)
    max_new_tokens: int = Field(100, ge=1)
    batch_size: int = Field(8, ge=1)
    max_length: int | None = Field(None, ge=8)
    codexglue_compat: bool = False


class CacheSpec(Strict):
    dtype: Literal["float16", "float32"] = "float16"
    topk: int = Field(64, ge=1)  # cached-topk only


class CompletionStudySpec(StudyBase):
    kind: ClassVar[str] = "completion"

    task: Literal["completion"] = "completion"
    # A folder in tasks.completion's layout (the proxy or prepared py150); the default is built on first use
    # (under the storage unless ./data/local/completion exists: design/data_source.py).
    data: str = "data/local/completion"
    teachers: list[LMTeacherSettings]
    students: list[str]
    student_init: list[str] = Field(default_factory=lambda: ["teacher_layers"])
    teacher_modes: list[str] = Field(default_factory=lambda: ["cached"])
    methods: list[str] = Field(default_factory=lambda: ["distil"])
    block_size: int = Field(1024, ge=8)
    max_files: DataCaps = Field(default_factory=DataCaps)
    student_train: LMTrainSettings = Field(default_factory=LMTrainSettings)
    teacher_train: InTrainingSettings = Field(default_factory=InTrainingSettings)
    method_params: dict[str, dict[str, Any]] = Field(default_factory=dict)
    generation: GenerationSpec = Field(default_factory=GenerationSpec)
    cache: CacheSpec = Field(default_factory=CacheSpec)
    online_dtype: Literal["float32", "bfloat16", "float16"] = "float32"
    device: str = "auto"  # where each trial runs: auto, cpu, cuda, cuda:N
    freeze_pos_embs: bool = False  # every student's position embeddings frozen, as DistilBERT's recipe does
    max_failures: int = Field(0, ge=0)
    labels: Any = Field(None, exclude=True)  # refused: a classification study's factor

    @field_validator("device")
    @classmethod
    def _device(cls, v: str) -> str:
        if not re.fullmatch(r"auto|cpu|cuda(:\d+)?", v):
            raise ValueError(f"unknown device '{v}'; valid: auto, cpu, cuda, cuda:N")
        return v

    @field_validator("labels")
    @classmethod
    def _labels(cls, v: Any) -> Any:
        if v is not None:
            raise ValueError(
                "not meaningful for a completion study (every line is its own target); labels is a factor of "
                "classification studies"
            )
        return v

    @field_validator("teachers")
    @classmethod
    def _teachers(cls, v: list[LMTeacherSettings]) -> list[LMTeacherSettings]:
        names = [t.name for t in v]
        if not v or len(set(names)) != len(names):
            raise ValueError(f"at least one teacher, with unique names, is needed; got {names}")
        for t in v:
            if t.random and t.source != "random:gpt2":
                raise ValueError(
                    f"teacher '{t.name}': unknown random architecture '{t.source}'; valid: random:gpt2"
                )
            if t.random and t.hidden % t.heads:
                raise ValueError(
                    f"teacher '{t.name}': hidden {t.hidden} is not a multiple of heads {t.heads}"
                )
        return v

    @field_validator("students")
    @classmethod
    def _students(cls, v: list[str]) -> list[str]:
        from models.gpt2_student import LM_STUDENTS

        return known(v, sorted(LM_STUDENTS, key=lambda s: (len(s), s)), "student")

    @field_validator("student_init")
    @classmethod
    def _inits(cls, v: list[str]) -> list[str]:
        from models.gpt2_student import StudentInit

        if not v:
            raise ValueError("at least one student_init is needed")
        for init in v:
            StudentInit.parse(init)  # raises "unknown student_init ...; valid: [...]"
        return v

    @field_validator("teacher_modes")
    @classmethod
    def _modes(cls, v: list[str]) -> list[str]:
        for mode in v:
            parts = {p for p in mode.replace("+", " ").replace(",", " ").split() if p}
            if "in_training" in parts and parts & set(CACHED_MODES) or mode.startswith("in_training-cache"):
                raise ValueError(
                    f"teacher mode '{mode}': in_training cannot use a teacher cache (the teacher's weights change "
                    "every step, so there is nothing to share); use 'in_training' alone (it runs online)"
                )
        return known(v, list(TEACHER_MODES), "teacher mode")

    @field_validator("methods")
    @classmethod
    def _methods(cls, v: list[str]) -> list[str]:
        return known(v, list(METHODS), "method")

    @model_validator(mode="after")
    def _params(self) -> CompletionStudySpec:
        from kd_methods import get_method

        defaults = get_method("distil").defaults
        for method, params in self.method_params.items():
            if method != "distil":
                raise ValueError(f"method_params: unknown method '{method}'; valid: ['distil']")
            unknown = sorted(set(params) - set(defaults))
            if unknown:
                raise ValueError(
                    f"method_params.distil: unknown hyperparameter(s) {unknown}; valid: {sorted(defaults)}"
                )
        if self.freeze_pos_embs and "random" in self.student_init:
            raise ValueError(
                "freeze_pos_embs: true would keep a random student's random position embeddings (the recipe "
                "freezes those the student takes from its teacher); use it with teacher_layers or pretrained:"
            )
        return self

    def distil_params(self) -> dict[str, Any]:
        from kd_methods import get_method

        return {**get_method("distil").defaults, **self.method_params.get("distil", {})}

    def params_for(self, method: str, mode: str = "cached") -> dict[str, Any]:
        """The distil hyperparameters of a trial: ``lm_only`` is distil without its teacher terms; a ``cached-topk``
        trial runs with alpha_cos = 0, since a top-k cache holds no hidden states (recorded in its params)."""
        params = self.distil_params()
        if method == "lm_only":
            return {**params, "alpha_ce": 0.0, "alpha_cos": 0.0}
        return {**params, "alpha_cos": 0.0} if mode == "cached-topk" else params
