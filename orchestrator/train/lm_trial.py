"""One completion-study trial: data -> teacher tokenizer -> token blocks -> teacher source -> student -> distil.

``run_lm_trial(cfg)`` ties the parts together (no MLflow: the sweep integration records what it returns). The
teacher's tokenizer encodes the files (teacher and student share one vocabulary), the files become fixed-length
blocks (``lm_data.make_blocks``), the teacher source is the exact cache (built once per teacher and blocks under
``storage``, then shared), a live frozen teacher or an in-training one; the student is a GPT-2 of the named depth at
the teacher's width with ``student_init``; the method (``distil`` by default) trains it with ``train_lm``.

Data: ``texts`` (``{"train": [...], "validation": [...]}``, preprocessed files ``"<s> tok tok <EOL> ... </s>"``) or
``data_dir``, read with ``tasks.completion.data.load_split(data_dir, split)``.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import torch

from kd_methods import build_method
from models.gpt2_student import build_gpt2_student
from models.lm_teacher import LMTeacher
from orchestrator.core.device import resolve_device
from orchestrator.train.lm_data import LMBlocks, make_blocks
from orchestrator.train.lm_teachers import (
    TEACHER_MODES,
    InTrainingLMTeacher,
    OnlineLMTeacher,
    TeacherTrainConfig,
)
from orchestrator.train.lm_trainer import LMTrainConfig, LMTrainResult, evaluate_lm, total_steps_for, train_lm

SPLITS = ("train", "validation")


@dataclass
class LMTrialConfig:
    teacher: str  # alias (codegpt), hub id or folder
    student: str = "gpt2-6l"
    student_init: str = "random"  # random | teacher_layers | pretrained:<folder>
    method: str = "distil"
    method_params: dict[str, Any] = field(default_factory=dict)
    teacher_mode: str = "cached"  # cached | cached-topk (approximate) | online | in_training
    block_size: int = 1024  # capped at the teacher's positions
    data_dir: str | None = None
    texts: dict[str, list[str]] | None = None
    storage: str = "runs"
    cache_dtype: str = "float16"
    topk: int = 64  # cached-topk only
    online_dtype: str = (
        "float32"  # online only: float32 | bfloat16 | float16 (a frozen teacher may run in half)
    )
    train: LMTrainConfig = field(default_factory=LMTrainConfig)
    teacher_train: TeacherTrainConfig = field(default_factory=TeacherTrainConfig)
    trust_remote_code: bool = False
    out_dir: str | None = None

    def __post_init__(self) -> None:
        if self.teacher_mode not in TEACHER_MODES:
            raise ValueError(f"unknown teacher_mode '{self.teacher_mode}'; valid: {list(TEACHER_MODES)}")
        if self.texts is None and self.data_dir is None:
            raise ValueError("an LM trial needs data: set data_dir (tasks.completion layout) or texts")


@dataclass
class LMTrialResult:
    train: LMTrainResult
    teacher_mode: str
    student_init: str
    block_size: int
    cache_key: str | None = None
    cache_bytes: int = 0
    approximate: bool = False  # cached-topk
    mass_kept: dict[str, float] = field(default_factory=dict)  # cached-topk: kept probability share per T
    teacher_val_ppl: float | None = None  # the teacher after the trial (in_training: after its own updates)

    def summary(self) -> dict[str, Any]:
        out = asdict(self)
        out["train"] = self.train.summary()
        return out


def load_texts(cfg: LMTrialConfig) -> dict[str, list[str]]:
    if cfg.texts is not None:
        missing = [s for s in SPLITS if s not in cfg.texts]
        if missing:
            raise ValueError(f"LM trial texts lack split(s) {missing}; need {list(SPLITS)}")
        return {s: list(cfg.texts[s]) for s in SPLITS}
    try:
        from tasks.completion.data import load_split  # the completion task (another module's work)
    except ImportError as err:
        raise RuntimeError(f"data_dir needs the completion task (tasks.completion.data): {err}") from err
    return {s: load_split(cfg.data_dir, s) for s in SPLITS}


def tokenise(teacher: LMTeacher, texts: dict[str, list[str]], block_size: int) -> dict[str, LMBlocks]:
    """Every split as blocks of the teacher's tokens; a validation split shorter than a block is kept, padded."""
    return {
        split: make_blocks(
            teacher.encode_texts(t), block_size, teacher.pad_id, keep_remainder=split != "train"
        )
        for split, t in texts.items()
    }


def teacher_source(cfg: LMTrialConfig, teacher: LMTeacher, blocks: dict[str, LMBlocks]) -> tuple[Any, dict]:
    """The trial's teacher source and what to record about it (cache key and bytes)."""
    device = resolve_device(cfg.train.device)
    if cfg.teacher_mode == "online":
        return OnlineLMTeacher(teacher, blocks, device, dtype=cfg.online_dtype), {}
    if cfg.teacher_mode == "in_training":
        # the teacher steps on every batch, the student once per grad_accum batches: a schedule sized in the
        # student's steps would take the teacher's lr to 0 after 1/grad_accum of the run
        t = cfg.train
        per_batch = replace(t, grad_accum=1, max_steps=t.max_steps * t.grad_accum if t.max_steps else None)
        steps = total_steps_for(len(blocks["train"]), per_batch)
        return InTrainingLMTeacher(teacher, blocks, steps, device, cfg.teacher_train), {}
    from orchestrator.cache.lm_cache import LMCacheRequest, get_or_build_lm
    from orchestrator.cache.lm_serve import LMCachedTeacher

    topk = cfg.topk if cfg.teacher_mode == "cached-topk" else 0
    temperature = float(cfg.method_params.get("temperature", 2.0))
    request = LMCacheRequest(
        teacher_dir=teacher.name_or_path,
        block_size=blocks["train"].block_size,
        dtype=cfg.cache_dtype,
        trust_remote_code=cfg.trust_remote_code,
        topk=topk,
        lse_temperatures=(1.0, temperature),
    )
    report = get_or_build_lm(request, blocks["train"], cfg.storage, device=cfg.train.device, teacher=teacher)
    teacher.to("cpu")  # the build may have moved it to the GPU; the trial reads the cache, not the teacher
    if torch.cuda.is_available():
        torch.cuda.empty_cache()  # give the memory back to trials packed beside this one
    cached = LMCachedTeacher(report.path, device=device)
    cached.check_data(blocks["train"].fingerprint())
    info = {"cache_key": report.key, "cache_bytes": report.bytes}
    return cached, {**info, "approximate": cached.approximate, "mass_kept": cached.mass_kept}


def run_lm_trial(cfg: LMTrialConfig) -> LMTrialResult:
    teacher = LMTeacher.load(cfg.teacher, trust_remote_code=cfg.trust_remote_code)
    block_size = min(cfg.block_size, teacher.max_positions)
    blocks = tokenise(teacher, load_texts(cfg), block_size)
    torch.manual_seed(cfg.train.seed)
    student = build_gpt2_student(cfg.student, teacher.model, cfg.student_init, cfg.trust_remote_code)
    method = build_method(cfg.method, student.shape, teacher.shape, **cfg.method_params)
    source, cache_info = teacher_source(cfg, teacher, blocks)
    out_dir = Path(cfg.out_dir) if cfg.out_dir else None
    result = train_lm(student, method, blocks, cfg.train, source, out_dir)
    device = resolve_device(cfg.train.device)
    teacher_ppl = None
    if cfg.teacher_mode == "in_training":
        teacher_ppl = evaluate_lm(
            teacher.to(device), blocks["validation"], cfg.train.eval_batch_size, device
        )["ppl"]
    return LMTrialResult(
        train=result,
        teacher_mode=cfg.teacher_mode,
        student_init=cfg.student_init,
        block_size=block_size,
        teacher_val_ppl=teacher_ppl,
        **cache_info,
    )
