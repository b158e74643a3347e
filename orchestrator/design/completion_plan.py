"""A completion study expanded into units: teachers -> teacher caches -> trials, each with a content key.

A teacher unit is materialised once into ``<storage>/completion-teachers/<key>`` (a random teacher written, a hub
teacher loaded with CodeXGLUE's literal tokens added, either LM-trained when its settings say so); a cache unit is one
exact (or top-k) teacher pass per (teacher, data, kind), shared by every cached trial; a trial whose ``trial_key``
has a FINISHED MLflow run is not run again. Planning reads no weights: sizes come from the settings (random
teachers), a known table (hub aliases) or a folder's ``config.json``; cost is a FLOP count at an assumed rate.
"""

from __future__ import annotations

import hashlib
import itertools
import json
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any

from orchestrator.core.paths import scratch_dir, stable_key
from orchestrator.design.completion_spec import CACHED_MODES, CompletionStudySpec, LMTeacherSettings
from orchestrator.design.data_source import will_build
from orchestrator.design.units import CompletionTrial, LMCacheUnit, LMTeacherUnit

# layers, hidden, vocab (CodeXGLUE's tokens included), positions of the hub teachers the profiles name. CodeGPT's
# 50,235 rows: its vocabulary once models/lm_teacher.extend_vocabulary added CodeXGLUE's literal tokens, as loaded on
# an H200 (docs/benchmarks/hub_teachers_h200.json, vocab_rows).
KNOWN_LM_TEACHERS = {"microsoft/CodeGPT-small-py": (12, 768, 50_235, 1024)}
# (files, code tokens) of a train split not on this machine yet, for the estimate: py150's (docs/COMPLETION_TASK.md),
# or the offline proxy's at its default size (tasks.build_local --tasks completion: 4 MB of text).
PY150_TRAIN = (95_000, 72_100_000)
PROXY_TRAIN = (499, 636_766)
BPE_PER_CODE_TOKEN = 1.35  # measured on the proxy (1.30-1.39 over its files)
# How a teacher's tokenizer treats CodeXGLUE's specials, part of its key: teacher folders written before their
# specials absorbed the spaces beside them (as run_lm.py's tokenizer does) are not reused.
TOKEN_RULES = "specials-absorb-spaces"
# Sustained training FLOP/s assumed for the estimate: 2 shared CPU cores; one GPU at about a third of bf16 peak.
ASSUMED_FLOPS = {"cpu": 2e10, "gpu": 1e14}


@dataclass
class CompletionPlan:
    spec: CompletionStudySpec
    data: str
    codexglue_version: str
    data_fingerprint: str
    train_tokens: int  # estimated BPE tokens of the (capped) train split
    teachers: list[LMTeacherUnit]
    caches: list[LMCacheUnit]
    trials: list[CompletionTrial]
    device: str
    totals: dict[str, float] = field(default_factory=dict)
    estimate: str = "flops"  # or "calibrated": measured step times on this device (design/calibration.py)
    calibration: dict[str, Any] = field(default_factory=dict)  # device, measured_at, units, uncovered
    notes: list[str] = field(default_factory=list)
    cells: list[Any] = field(default_factory=list)  # no tuning stage for completion studies

    @property
    def data_key(self) -> str:
        return self.data_fingerprint

    @property
    def gpu_hours(self) -> float:
        return sum(v for k, v in self.totals.items() if k != "wall_hours")

    @property
    def planned_hours(self) -> float:
        return self.gpu_hours


@cache
def _data_facts(
    data: str, train_files: int | None, stamp: tuple[int, int] | None, proxy: bool = False
) -> tuple[str, str, int]:
    """(codexglue_version, fingerprint of the train files used, estimated BPE tokens); data not here yet: the
    offline proxy's usual figures when the study builds it (``proxy``), else py150's; ``train_files`` caps both."""
    from tasks.completion.data import CompletionDataError, codexglue_version

    folder = Path(data)
    train = folder / "train.txt"
    if not train.is_file():
        version, (files, code_tokens) = (
            ("local-proxy", PROXY_TRAIN) if proxy else ("codexglue-2021", PY150_TRAIN)
        )
        used = files if train_files is None else min(train_files, files)
        return version, "absent", int(code_tokens * used / files * BPE_PER_CODE_TOKEN)
    digest, words, n = hashlib.sha256(), 0, 0
    with train.open("rb") as f:
        for line in (raw for raw in f if raw.strip()):  # the files load_split reads: blank lines skipped
            if train_files is not None and n >= train_files:
                break
            digest.update(line)
            words, n = words + line.count(b" ") + 1, n + 1
    try:
        version = codexglue_version(folder)
    except CompletionDataError:
        version = "codexglue-2021"
    return version, digest.hexdigest()[:16], int(words * BPE_PER_CODE_TOKEN)


def _teacher_shape(t: LMTeacherSettings) -> tuple[int, int, int, int]:
    from models.lm_teacher import resolve_lm_teacher

    if t.random:
        return t.layers, t.hidden, t.vocab, t.positions
    source = resolve_lm_teacher(t.source)
    if source in KNOWN_LM_TEACHERS:
        return KNOWN_LM_TEACHERS[source]
    config = Path(source).expanduser() / "config.json"
    if config.is_file():
        c = json.loads(config.read_text())
        return (
            c.get("n_layer", 12),
            c.get("n_embd", 768),
            c.get("vocab_size", 50257),
            c.get("n_positions", 1024),
        )
    return 12, 768, 50257, 1024  # a hub id not in the table: GPT-2 small's shape, for the estimate only


def gpt2_params(layers: int, hidden: int, vocab: int, positions: int) -> int:
    """GPT-2 parameters: 12 H^2 (+13 H) per block, tied token embeddings, positions, ln_f."""
    return layers * (12 * hidden * hidden + 13 * hidden) + (vocab + positions) * hidden + 2 * hidden


def _teacher_unit(spec: CompletionStudySpec, t: LMTeacherSettings, fingerprint: str) -> LMTeacherUnit:
    # A random teacher's BPE is trained on the train files, and a trained teacher learns from them: both depend on
    # the data. A hub teacher only loaded depends on its source alone.
    payload = {
        "teacher": t.model_dump(exclude={"name"}),
        "block_size": spec.block_size,
        "tokens": TOKEN_RULES,
    }
    if t.random or t.train:
        payload["data"] = fingerprint
    key = stable_key(payload)
    folder = str(Path(spec.storage).resolve() / "completion-teachers" / f"{t.name}-{key}")
    return LMTeacherUnit(t.name, t.source, key, folder, _teacher_shape(t), t.train is not None)


def _trial_flops(
    spec: CompletionStudySpec, teacher: LMTeacherUnit, student: str, mode: str, tokens: int
) -> float:
    from models.gpt2_student import LM_STUDENTS

    layers, hidden, vocab, positions = teacher.shape
    n_s = gpt2_params(LM_STUDENTS[student], hidden, vocab, positions)
    n_t = gpt2_params(layers, hidden, vocab, positions)
    # Per token: student forward+backward 6N; online teacher forward 2N; in-training forward+backward 6N;
    # cached: the head matmul rebuilding the logits (2 V H).
    teacher_cost = {"online": 2 * n_t, "in_training": 6 * n_t, "none": 0}.get(mode, 2 * vocab * hidden)
    lines = spec.max_files.line_test or 10_000
    gen = (
        lines * 2 * n_s * (spec.generation.max_new_tokens * spec.generation.beam_size + min(positions, 1024))
    )
    return float((6 * n_s + teacher_cost) * tokens * spec.student_train.epochs + gen)


def _pretrained_depth(init: str) -> str | None:
    """``pretrained:<folder>``: the checkpoint's own depth as a student name (its layer count replaces the named
    student's); a hub id or a missing folder: None (the trial keeps the named student and fails or loads then)."""
    from models.gpt2_student import LM_STUDENTS

    if not init.startswith("pretrained:"):
        return None
    config = Path(init.split(":", 1)[1].strip()).expanduser() / "config.json"
    if not config.is_file():
        return None
    name = f"gpt2-{json.loads(config.read_text()).get('n_layer')}l"
    return name if name in LM_STUDENTS else None


def _mode_settings(spec: CompletionStudySpec, mode: str) -> dict[str, Any]:
    """What besides the factors shapes a trial of ``mode`` (part of its key)."""
    if mode == "in_training":
        return {"teacher_train": spec.teacher_train.model_dump()}
    if mode in CACHED_MODES:
        return {"cache": spec.cache.model_dump()}
    return {"online_dtype": spec.online_dtype} if mode == "online" else {}


def _expand(
    spec: CompletionStudySpec, teachers: list[LMTeacherUnit], base: dict, tokens: int, data: str, version: str,
    fingerprint: str,
) -> list[CompletionTrial]:  # fmt: skip
    """Every (teacher, student, init, method, mode, seed); ``lm_only`` runs once with mode ``none``."""
    trials: list[CompletionTrial] = []
    seen: set[str] = set()
    grid = itertools.product(teachers, spec.students, spec.student_init, spec.methods, spec.seeds)
    for t, name, init, method, seed in grid:
        student = _pretrained_depth(init) or name
        for mode in ["none"] if method == "lm_only" else spec.teacher_modes:
            key = stable_key(
                {**base, **_mode_settings(spec, mode), "teacher": t.key, "student": student, "init": init,
                 "mode": mode, "method": method, "params": spec.params_for(method, mode), "seed": seed}
            )  # fmt: skip
            if key in seen:  # a pretrained init fixes the depth: one trial, not one per student name
                continue
            seen.add(key)
            trial = _trial(spec, t, student, init, method, mode, seed, key, data)
            trial.tags.update(codexglue_version=version, data_key=fingerprint)
            trial.flops = _trial_flops(spec, t, student, mode, tokens)
            trials.append(trial)
    return trials


def _trial(
    spec: CompletionStudySpec, t: LMTeacherUnit, student: str, init: str, method: str, mode: str, seed: int,
    key: str, data: str,
) -> CompletionTrial:  # fmt: skip
    """One trial as the worker runs it: the LM trial (distil; ``lm_only`` is distil without its teacher terms, wired
    online but reading no signal), its tags, params and identity."""
    from orchestrator.train.lm_teachers import TeacherTrainConfig
    from orchestrator.train.lm_trainer import LMTrainConfig
    from orchestrator.train.lm_trial import LMTrialConfig
    from orchestrator.train.lm_work import CompletionWork

    params = spec.params_for(method, mode)
    lm = LMTrialConfig(
        teacher=t.folder, student=student, student_init=init, method="distil", method_params=params,
        teacher_mode="online" if mode == "none" else mode, block_size=spec.block_size, data_dir=data,
        storage=str(Path(spec.storage).resolve() / "completion-cache"), cache_dtype=spec.cache.dtype,
        topk=spec.cache.topk, online_dtype=spec.online_dtype,
        train=LMTrainConfig(
            **spec.student_train.model_dump(), seed=seed, device=spec.device, freeze_pos_embs=spec.freeze_pos_embs
        ),
        teacher_train=TeacherTrainConfig(**spec.teacher_train.model_dump()),
    )  # fmt: skip
    caps, generation = spec.max_files.model_dump(), spec.generation.model_dump()
    flat = {
        **spec.student_train.model_dump(), **{f"method.{k}": v for k, v in params.items()},
        "teacher": t.name, "student": student, "student_init": init, "teacher_mode": mode, "method": method,
        "seed": seed, "data": data, "block_size": spec.block_size, **{f"max_files.{k}": v for k, v in caps.items()},
        **{f"generation.{k}": v for k, v in generation.items()}, "freeze_pos_embs": spec.freeze_pos_embs,
    }  # fmt: skip
    if mode == "in_training":
        flat.update({f"teacher_train.{k}": v for k, v in spec.teacher_train.model_dump().items()})
    tags = {
        "stage": "student", "study": spec.name, "task": "completion", "teacher": t.name, "student": student,
        "student_arch": "gpt2", "method": method, "seed": str(seed), "trial_key": key, "teacher_mode": mode,
        "student_init": init,
    }  # fmt: skip
    return CompletionTrial(
        kind="completion", trial_key=key, run_name=f"{method} {student} {init.split(':')[0]} {mode} "
        f"{t.name} s{seed}", tags=tags, params=flat, teacher=t.name, student=student, method=method, seed=seed,
        cpus=spec.trial_resources.cpu, scratch=str(scratch_dir(Path(spec.storage).resolve(), spec.name)),
        student_init=init, teacher_mode=mode, work=CompletionWork(lm, mode, caps, generation),
    )  # fmt: skip


def _estimate(plan: CompletionPlan) -> dict[str, float]:
    """Hours at ``ASSUMED_FLOPS``: teacher LM training, cache passes, trials, and the wall time."""
    rate = ASSUMED_FLOPS[plan.device] * 3600
    shapes = {u.name: u.shape for u in plan.teachers}
    pretrain = sum(
        6 * gpt2_params(*shapes[t.name]) * plan.train_tokens * t.train.epochs
        for t in plan.spec.teachers
        if t.train
    )
    caches = sum(2 * gpt2_params(*shapes[c.teacher]) * plan.train_tokens for c in plan.caches)
    trials = sum(t.flops for t in plan.trials)
    return {
        "teacher_train_hours": pretrain / rate,
        "cache_hours": caches / rate,
        "trial_hours": trials / rate,
        "wall_hours": (pretrain + caches + trials / max(1, plan.spec.max_concurrent_trials)) / rate,
    }


def build_completion_plan(
    spec: CompletionStudySpec, calibration: dict[str, Any] | None | str = "auto"
) -> CompletionPlan:
    """``calibration``: measured step times (design/calibration.py); "auto" reads the study folder's
    calibration.json when it was measured on this device; None: the FLOP count alone."""
    from orchestrator.design.calibration import apply_lm_calibration
    from tasks.completion.data import scoring_digest

    data = str(Path(spec.data).resolve())
    train = Path(data) / "train.txt"
    stamp = (
        (train.stat().st_mtime_ns, train.stat().st_size) if train.is_file() else None
    )  # re-read a changed file
    proxy = will_build(spec)
    version, fingerprint, tokens = _data_facts(data, spec.max_files.train_files, stamp, proxy)
    teachers = [_teacher_unit(spec, t, fingerprint) for t in spec.teachers]
    if fingerprint != "absent":  # and what scores the trials: another line set or validation text, new keys
        fingerprint = stable_key({"train": fingerprint, "scoring": scoring_digest(data)})
    base = {
        "data": fingerprint,
        "block_size": spec.block_size,
        "caps": spec.max_files.model_dump(),
        "train": spec.student_train.model_dump(),
        "generation": spec.generation.model_dump(),
        **({"freeze_pos_embs": True} if spec.freeze_pos_embs else {}),  # absent when off: earlier keys hold
    }
    trials = _expand(spec, teachers, base, tokens, data, version, fingerprint)
    caches = [LMCacheUnit(t.name, m) for t in teachers for m in spec.teacher_modes if m in CACHED_MODES]
    device = "gpu" if spec.trial_resources.gpu > 0 else "cpu"
    plan = CompletionPlan(spec, data, version, fingerprint, tokens, teachers, caches, trials, device)
    for t in trials:
        t.gpu_seconds = t.flops / ASSUMED_FLOPS[device]
    plan.totals = _estimate(plan)
    if fingerprint == "absent":
        what = "the offline proxy, built when the study starts" if proxy else "py150's published size"
        plan.notes.append(
            f"data not here yet: train tokens estimated from {what}; trial keys follow the data"
        )
    apply_lm_calibration(plan, calibration)
    return plan
