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
from dataclasses import asdict, dataclass, field
from functools import cache
from pathlib import Path
from typing import Any

from orchestrator.sweep.completion_spec import CACHED_MODES, CompletionStudySpec, LMTeacherSettings
from orchestrator.sweep.spec import stable_key

# layers, hidden, vocab (CodeXGLUE's tokens included), positions of the hub teachers the profiles name.
KNOWN_LM_TEACHERS = {"microsoft/CodeGPT-small-py": (12, 768, 50_234, 1024)}
PY150_CODE_TOKENS = (
    72_100_000  # py150 train (95k files, COMPLETION.md §5.1), when the data are not on this machine
)
BPE_PER_CODE_TOKEN = 1.35  # measured on the proxy (COMPLETION.md §0.10: 1.30-1.39)
# Sustained training FLOP/s assumed for the estimate: 2 shared CPU cores; one GPU at about a third of bf16 peak.
ASSUMED_FLOPS = {"cpu": 2e10, "gpu": 1e14}


@dataclass(frozen=True)
class LMTeacherUnit:
    name: str
    source: str
    key: str
    folder: str
    shape: tuple[int, int, int, int]  # layers, hidden, vocab, positions
    trains: bool


@dataclass(frozen=True)
class LMCacheUnit:
    teacher: str
    mode: str  # cached | cached-topk


@dataclass
class CompletionTrial:
    teacher: str
    student: str
    student_init: str
    teacher_mode: str  # none for lm_only
    method: str
    seed: int
    trial_key: str
    flops: float = 0.0

    @property
    def run_name(self) -> str:
        init = self.student_init.split(":")[0]
        return (
            f"completion-{self.student}-{init}-{self.method}-{self.teacher_mode}-{self.teacher}-s{self.seed}"
        )

    def tags(self, study: str, version: str) -> dict[str, str]:
        return {
            "stage": "student",
            "study": study,
            "task": "completion",
            "teacher": self.teacher,
            "student": self.student,
            "student_arch": "gpt2",
            "method": self.method,
            "seed": str(self.seed),
            "trial_key": self.trial_key,
            "teacher_mode": self.teacher_mode,
            "student_init": self.student_init,
            "codexglue_version": version,
        }


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


@cache
def _data_facts(data: str, train_files: int | None, stamp: tuple[int, int] | None) -> tuple[str, str, int]:
    """(codexglue_version, fingerprint of the train files used, estimated BPE tokens); no data: py150's figures."""
    from tasks.completion.data import CompletionDataError, codexglue_version

    folder = Path(data)
    train = folder / "train.txt"
    if not train.is_file():
        return "codexglue-2021", "absent", int(PY150_CODE_TOKENS * BPE_PER_CODE_TOKEN)
    digest, words = hashlib.sha256(), 0
    with train.open("rb") as f:
        for n, line in enumerate(f):
            if train_files is not None and n >= train_files:
                break
            digest.update(line)
            words += line.count(b" ") + 1
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
    payload = {"teacher": t.model_dump(exclude={"name"}), "block_size": spec.block_size}
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
    spec: CompletionStudySpec, teachers: list[LMTeacherUnit], base: dict, tokens: int
) -> list[CompletionTrial]:
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
            flops = _trial_flops(spec, t, student, mode, tokens)
            trials.append(CompletionTrial(t.name, student, init, mode, method, seed, key, flops))
    return trials


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


def build_completion_plan(spec: CompletionStudySpec) -> CompletionPlan:
    data = str(Path(spec.data).resolve())
    train = Path(data) / "train.txt"
    stamp = (
        (train.stat().st_mtime_ns, train.stat().st_size) if train.is_file() else None
    )  # re-read a changed file
    version, fingerprint, tokens = _data_facts(data, spec.max_files.train_files, stamp)
    teachers = [_teacher_unit(spec, t, fingerprint) for t in spec.teachers]
    base = {
        "data": fingerprint,
        "block_size": spec.block_size,
        "caps": spec.max_files.model_dump(),
        "train": spec.student_train.model_dump(),
        "generation": spec.generation.model_dump(),
    }
    trials = _expand(spec, teachers, base, tokens)
    caches = [LMCacheUnit(t.name, m) for t in teachers for m in spec.teacher_modes if m in CACHED_MODES]
    device = "gpu" if spec.trial_resources.gpu > 0 else "cpu"
    plan = CompletionPlan(spec, data, version, fingerprint, tokens, teachers, caches, trials, device)
    plan.totals = _estimate(plan)
    return plan


def plan_dict(plan: CompletionPlan) -> dict[str, Any]:
    modes: dict[str, int] = {}
    for t in plan.trials:
        modes[t.teacher_mode] = modes.get(t.teacher_mode, 0) + 1
    return {
        "study": plan.spec.name,
        "task": "completion",
        "data": plan.data,
        "codexglue_version": plan.codexglue_version,
        "train_tokens_estimate": plan.train_tokens,
        "teachers": [asdict(u) for u in plan.teachers],
        "caches": [asdict(c) for c in plan.caches],
        "trials": len(plan.trials),
        "trials_by_teacher_mode": modes,
        "device": plan.device,
        "assumed_flops_per_s": ASSUMED_FLOPS[plan.device],
        "estimate_hours": {k: round(v, 5) for k, v in plan.totals.items()},
        "trial_keys": [t.trial_key for t in plan.trials],
    }


def _duration(hours: float) -> str:
    if hours >= 1:
        return f"{hours:.1f} h"
    return f"{hours * 60:.1f} min" if hours * 60 >= 1 else f"{hours * 3600:.1f} s"


def describe(plan: CompletionPlan) -> str:
    d = plan_dict(plan)
    teachers = ", ".join(
        f"{u.name} ({u.shape[0]}x{u.shape[1]}, {gpt2_params(*u.shape) / 1e6:.1f}M{', LM-trained first' if u.trains else ''})"
        for u in plan.teachers
    )
    est = {k: _duration(v) for k, v in plan.totals.items()}
    return "\n".join(
        [
            f"completion study {plan.spec.name}: {len(plan.trials)} trials "
            f"({', '.join(f'{k} {v}' for k, v in d['trials_by_teacher_mode'].items())})",
            f"data {plan.data} ({plan.codexglue_version}; about {plan.train_tokens:,} train tokens)",
            f"teachers: {teachers}",
            f"teacher caches: {len(plan.caches)} (one pass each, shared by every cached trial; in_training runs online)",
            f"students {plan.spec.students} x init {plan.spec.student_init} x methods {plan.spec.methods} x "
            f"seeds {plan.spec.seeds}",
            f"estimated cost on {plan.device} at {d['assumed_flops_per_s']:.0e} FLOP/s: teacher training "
            f"{est['teacher_train_hours']}, caches {est['cache_hours']}, trials {est['trial_hours']} in all, about "
            f"{est['wall_hours']} wall with {plan.spec.max_concurrent_trials} concurrent trials (compute only: no "
            "start-up, no waiting)",
        ]
    )
