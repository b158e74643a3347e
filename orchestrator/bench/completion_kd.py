"""Does distillation reach a code-completion student? ``distil`` against the LM-only baseline, paired by seed.

    python -m orchestrator.bench completion-kd --size gpu --out completion_kd.json   # one GPU, a few minutes
    python -m orchestrator.bench completion-kd --size cpu --out completion_kd.json   # 2 CPU cores, about an hour
    python -m orchestrator.bench completion-kd --size tiny --out completion_kd.json  # the tests: seconds

A controlled experiment on the completion study's parts (no Ray, no MLflow, so it runs on a lent GPU as it is):

1. **Teacher.** A GPT-2 with its own byte-level BPE (CodeXGLUE's special tokens) is LM-trained from scratch on the
   proxy's train split (``python -m tasks.build_local --tasks completion``), so it knows this corpus better than
   any student can learn it in the students' budget.
2. **Students.** Each seed trains two students of the same depth, width, initialisation (``random``: the poster's
   standard students, docs/COMPLETION_STUDY.md) and budget, on the same blocks in the same order: ``distil``
   (DistilBERT's loss: 5 T^2 KL + 2 LM + 1 cosine, T = 2) against the frozen teacher run live (``online``: the
   values equal the exact cache's; the cache's economics are the overhead benchmark's business), and ``lm_only``
   (the LM loss alone, the same method with alpha_ce = alpha_cos = 0).
3. **Scores.** Validation perplexity of the best epoch (selection on it, as the study does), and edit similarity
   (ES) and exact match (EM) on the line-level test by beam search, scored as CodeXGLUE's evaluator does.

Each metric's seed-paired difference (distil - lm_only) gets a mean, a 95% t interval and a paired t-test. The
sizes are fixed below, before any run; nothing is tuned to make distillation look good.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np


@dataclass(frozen=True)
class CompletionKDSize:
    """Everything the benchmark trains, fixed per size."""

    teacher_layers: int
    hidden: int
    heads: int
    vocab: int
    block_size: int
    teacher_epochs: int
    teacher_lr: float
    student: str  # a name in models.gpt2_student.LM_STUDENTS
    student_epochs: int
    student_lr: float
    batch_size: int
    seeds: tuple[int, ...]
    train_files: int | None  # caps on the proxy's files / line samples (None: all)
    validation_files: int | None
    line_test: int | None
    beam_size: int
    max_new_tokens: int
    amp: str | None  # "bf16" on a GPU


SIZES: dict[str, CompletionKDSize] = {
    # One GPU, about two minutes: a 6 x 512 teacher on the whole proxy (build it with --completion-mb 12) at block
    # 512, 4 epochs; 2-layer students of its width, 3 epochs each.
    "gpu": CompletionKDSize(
        6, 512, 8, 16000, 512, 4, 5e-4, "gpt2-2l", 3, 5e-4, 32, (0, 1), None, None, 500, 5, 48, "bf16"
    ),
    # 2 CPU cores: the local profile's shapes (6 x 256, 8k BPE, block 256), 2-layer students.
    "cpu": CompletionKDSize(
        6, 256, 8, 8000, 256, 4, 5e-4, "gpt2-2l", 4, 5e-4, 8, (0, 1), 200, 24, 200, 3, 32, None
    ),
    # Tests: seconds; only that the machinery runs end to end.
    "tiny": CompletionKDSize(2, 32, 2, 600, 64, 1, 3e-3, "gpt2-1l", 1, 3e-3, 8, (0, 1), 6, 3, 8, 2, 8, None),
}

METHODS = ("distil", "lm_only")
LM_ONLY = {"alpha_ce": 0.0, "alpha_cos": 0.0}  # distil's LM term alone: the study's lm_only baseline


def _log(msg: str) -> None:
    print(f"[completion-kd {time.strftime('%H:%M:%S')}] {msg}", flush=True)


def _load(data: Path, size: CompletionKDSize) -> tuple[dict[str, list[str]], list[dict]]:
    from tasks.completion.data import load_line_test, load_split

    texts = {
        "train": load_split(data, "train")[: size.train_files],
        "validation": load_split(data, "validation")[: size.validation_files],
    }
    return texts, load_line_test(data)[: size.line_test]


def _score(model: Any, tokenizer: Any, lines: list[dict], size: CompletionKDSize) -> dict[str, float]:
    """ES/EM of ``model`` on the line samples (beam search; CodeXGLUE's evaluator's arithmetic)."""
    from tasks.completion.generate import GenerationSettings, complete_lines
    from tasks.completion.scorer import score_lines

    settings = GenerationSettings(beam_size=size.beam_size, max_new_tokens=size.max_new_tokens, batch_size=32)
    t0 = time.perf_counter()
    preds = complete_lines(model, tokenizer, [s["input"] for s in lines], settings)
    scores = score_lines(preds, [s["gt"] for s in lines])
    return {"es": float(scores.es), "em": float(scores.em), "generation_s": time.perf_counter() - t0}


def _train_cfg(size: CompletionKDSize, epochs: int, lr: float, seed: int, device: str) -> Any:
    from orchestrator.train.lm_trainer import LMTrainConfig

    return LMTrainConfig(
        epochs=epochs,
        batch_size=size.batch_size,
        eval_batch_size=size.batch_size,
        lr=lr,
        seed=seed,
        device=device,
        amp=size.amp,
    )


def build_teacher(size: CompletionKDSize, texts: dict[str, list[str]], work: Path, device: str) -> Any:
    """A random GPT-2 with a BPE trained on the train split, LM-trained on it (the study's local recipe)."""
    from kd_methods import build_method
    from models.lm_teacher import LMTeacher, create_random_gpt2_teacher
    from orchestrator.train.lm_trainer import train_lm
    from orchestrator.train.lm_trial import tokenise
    from tasks.completion.tokenizer import build_bpe_tokenizer

    folder = work / "teacher"
    tok = build_bpe_tokenizer(texts["train"], size.vocab)
    create_random_gpt2_teacher(
        folder, size.teacher_layers, size.hidden, size.heads, size.block_size, size.vocab, tokenizer=tok
    )
    teacher = LMTeacher.load(folder)
    blocks = tokenise(teacher, texts, size.block_size)
    method = build_method("distil", teacher.shape, teacher.shape, **LM_ONLY)
    cfg = _train_cfg(size, size.teacher_epochs, size.teacher_lr, 0, device)
    result = train_lm(
        teacher,
        method,
        blocks,
        cfg,
        callback=lambda r: _log(f"teacher epoch {int(r['epoch'])}: val ppl {r['val_ppl']:.2f}"),
    )
    teacher.model.eval()
    return teacher, blocks, result


def run_student(
    size: CompletionKDSize,
    teacher: Any,
    blocks: dict,
    lines: list[dict],
    method_name: str,
    seed: int,
    device: str,
) -> dict[str, Any]:
    """One student: train with ``distil`` or ``lm_only``, select on validation perplexity, score the line test."""
    import torch

    from kd_methods import build_method
    from models.gpt2_student import build_gpt2_student
    from orchestrator.train.lm_teachers import OnlineLMTeacher
    from orchestrator.train.lm_trainer import train_lm
    from orchestrator.train.trainer import resolve_device

    torch.manual_seed(seed)
    student = build_gpt2_student(size.student, teacher.model, "random")
    params = LM_ONLY if method_name == "lm_only" else {}
    method = build_method("distil", student.shape, teacher.shape, **params)
    source = None
    if not method.signals().empty:
        source = OnlineLMTeacher(teacher, blocks, resolve_device(device))
    cfg = _train_cfg(size, size.student_epochs, size.student_lr, seed, device)
    result = train_lm(student, method, blocks, cfg, source)
    test = _score(student.model, teacher.tokenizer, lines, size)
    return {
        "method": method_name,
        "seed": seed,
        "best_val_ppl": result.best_val_ppl,
        "best_epoch": result.best_epoch,
        "test_es": test["es"],
        "test_em": test["em"],
        "steps": result.steps,
        "train_seconds": result.train_seconds,
        "teacher_seconds": result.teacher_seconds,
        "generation_seconds": test["generation_s"],
        "params": result.params,
    }


def _paired(runs: list[dict[str, Any]], metric: str, seeds: tuple[int, ...]) -> dict[str, Any]:
    from orchestrator.bench.transfer import paired_stats

    by = {(r["method"], r["seed"]): r[metric] for r in runs}
    distil = [by[("distil", s)] for s in seeds]
    base = [by[("lm_only", s)] for s in seeds]
    return {"distil": distil, "lm_only": base, **paired_stats(distil, base)}


def completion_kd(size_name: str, data: str, work: Path, device: str = "auto") -> dict[str, Any]:
    """Run the benchmark; returns the JSON it writes."""
    from orchestrator.bench.overhead import _device_name
    from orchestrator.train.trainer import resolve_device

    size = SIZES[size_name]
    started = time.perf_counter()
    texts, lines = _load(Path(data), size)
    _log(f"{len(texts['train'])} train files, {len(texts['validation'])} validation, {len(lines)} test lines")
    teacher, blocks, tres = build_teacher(size, texts, work, device)
    dev = resolve_device(device)
    teacher_test = _score(teacher.model.to(dev), teacher.tokenizer, lines, size)
    # The teacher's weights are its best epoch's (train_lm leaves them in place).
    teacher_val = tres.best_val_ppl
    _log(f"teacher: val ppl {teacher_val:.2f}, ES {teacher_test['es']:.2f}, EM {teacher_test['em']:.2f}")
    runs = []
    for seed in size.seeds:
        for name in METHODS:
            runs.append(run_student(size, teacher, blocks, lines, name, seed, device))
            r = runs[-1]
            _log(
                f"{name} seed {seed}: val ppl {r['best_val_ppl']:.2f}, ES {r['test_es']:.2f}, EM {r['test_em']:.2f}"
            )
    return {
        "size": {"name": size_name, **asdict(size)},
        "device": _device_name(device),
        "data": {
            "train_files": len(texts["train"]),
            "validation_files": len(texts["validation"]),
            "test_lines": len(lines),
            "train_blocks": len(blocks["train"]),
        },
        "teacher": {
            "params": sum(p.numel() for p in teacher.model.parameters()),
            "best_val_ppl": teacher_val,
            "test_es": teacher_test["es"],
            "test_em": teacher_test["em"],
            "steps": tres.steps,
            "train_seconds": tres.train_seconds,
        },
        "runs": runs,
        "paired": {m: _paired(runs, m, size.seeds) for m in ("test_es", "test_em", "best_val_ppl")},
        "means": {
            name: {
                m: float(np.mean([r[m] for r in runs if r["method"] == name]))
                for m in ("test_es", "test_em", "best_val_ppl")
            }
            for name in METHODS
        },
        "seconds": time.perf_counter() - started,
    }


def print_table(r: dict[str, Any]) -> None:
    t = r["teacher"]
    print(
        f"\ncompletion-kd ({r['size']['name']}), device {r['device']}; teacher {t['params'] / 1e6:.1f}M: "
        f"val ppl {t['best_val_ppl']:.2f}, ES {t['test_es']:.2f}, EM {t['test_em']:.2f}"
    )
    print(f"{'metric':<14}{'distil':>10}{'lm_only':>10}{'delta':>10}{'ci95':>22}{'p':>8}")
    for metric, p in r["paired"].items():
        ci = f"[{p['ci95'][0]:+.3f}, {p['ci95'][1]:+.3f}]"
        print(
            f"{metric:<14}{np.mean(p['distil']):>10.3f}{np.mean(p['lm_only']):>10.3f}"
            f"{p['mean_delta']:>+10.3f}{ci:>22}{p['p_value']:>8.3f}"
        )
    print(f"({r['seconds'] / 60:.1f} min)")
