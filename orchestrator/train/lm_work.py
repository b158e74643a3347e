"""One completion trial's work, without MLflow: distil (or LM-train) a GPT-2 student, then complete test lines.

``CompletionWork`` is the typed config the study's planner builds (the LM trial, the data caps, the generation
settings). ``run_completion_work`` composes ``lm_trial.tokenise`` / ``teacher_source``, ``build_gpt2_student`` and
``train_lm`` so the per-epoch validation perplexity is reported as it comes, then scores line completion on the
best-validation weights with ``tasks.completion`` (beam search, CodeXGLUE's evaluator) and measures generation
speed. An in-training teacher is scored the same way after the trial (it learnt too).
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from orchestrator.train.lm_trial import LMTrialConfig

_TEXTS: dict[tuple, Any] = {}  # a reused Tune actor keeps the loaded data between trials


@dataclass
class CompletionWork:
    """What a completion trial runs: the LM trial (``data_dir`` the study's data; ``teacher_mode`` online for
    ``lm_only``, which reads no teacher signal), the first N files / line samples of each split, and CodeXGLUE's
    line-completion settings. ``mode`` is the study's teacher mode (``none`` for ``lm_only``)."""

    trial: LMTrialConfig
    mode: str
    caps: dict[str, int | None] = field(default_factory=dict)
    generation: dict[str, Any] = field(default_factory=dict)


def load_data(data: str, caps: dict[str, int | None]) -> tuple[dict[str, list[str]], list[dict]]:
    """Train / validation files and line-level test samples, each capped to its first N (``max_files``)."""
    from tasks.completion.data import load_line_test, load_split

    key = (data, tuple(sorted(caps.items())))
    if key not in _TEXTS:
        _TEXTS.clear()
        texts = {
            "train": load_split(Path(data), "train")[: caps.get("train_files")],
            "validation": load_split(Path(data), "validation")[: caps.get("validation_files")],
        }
        _TEXTS[key] = (texts, load_line_test(Path(data))[: caps.get("line_test")])
    return _TEXTS[key]


def with_texts(work: CompletionWork) -> tuple[LMTrialConfig, list[dict]]:
    """The LM trial with its capped texts loaded, and the line samples."""
    texts, lines = load_data(str(work.trial.data_dir), work.caps)
    return dataclasses.replace(work.trial, texts=texts), lines


def score_generation(model: Any, tokenizer: Any, lines: list[dict], gen: dict[str, Any]) -> dict[str, Any]:
    """ES/EM of ``model`` on the line samples, samples/s and generated tokens/s, and the predictions."""
    from tasks.completion.generate import GenerationSettings, complete_lines
    from tasks.completion.scorer import score_lines

    settings = GenerationSettings(**gen)
    t0 = time.perf_counter()
    preds = complete_lines(model, tokenizer, [s["input"] for s in lines], settings)
    seconds = max(time.perf_counter() - t0, 1e-9)
    scores = score_lines(preds, [s["gt"] for s in lines])
    # Generated tokens: the predicted lines re-encoded, plus the stop token each ended with.
    tokens = sum(len(tokenizer.encode(p, add_special_tokens=False)) + 1 for p in preds)
    return {
        "es": float(scores.es),
        "em": float(scores.em),
        "samples_per_s": len(lines) / seconds,
        "tokens_per_s": tokens / seconds,
        "seconds": seconds,
        "predictions": preds,
    }


def run_completion_work(
    work: CompletionWork, out_dir: Path, on_epoch: Callable[[dict[str, float]], None] | None = None
) -> dict[str, Any]:
    """Train, select on validation perplexity, score on the line test; returns metrics and predictions."""
    import torch

    from kd_methods import build_method
    from models.gpt2_student import build_gpt2_student
    from models.lm_teacher import LMTeacher
    from orchestrator.train.lm_trainer import train_lm
    from orchestrator.train.lm_trial import teacher_source, tokenise

    cfg, lines = with_texts(work)
    teacher = LMTeacher.load(cfg.teacher)
    blocks = tokenise(teacher, cfg.texts or {}, min(cfg.block_size, teacher.max_positions))
    torch.manual_seed(cfg.train.seed)
    student = build_gpt2_student(cfg.student, teacher.model, cfg.student_init)
    method = build_method(cfg.method, student.shape, teacher.shape, **cfg.method_params)
    source, cache_info = (None, {}) if method.signals().empty else teacher_source(cfg, teacher, blocks)
    result = train_lm(student, method, blocks, cfg.train, source, out_dir, callback=on_epoch)
    test = score_generation(student.model, teacher.tokenizer, lines, work.generation)
    metrics = {
        "test_es": test["es"],
        "test_em": test["em"],
        "test_score": test["es"],  # one column compares every run
        "best_val_ppl": result.best_val_ppl,
        "best_epoch": float(result.best_epoch),
        "student_params": float(result.params),
        "model_mb": result.model_mb,
        "inference_samples_per_s": test["samples_per_s"],
        "generated_tokens_per_s": test["tokens_per_s"],
        "generation_seconds": test["seconds"],
        "train_tokens_per_s": result.tokens_per_s,
        "train_seconds": result.train_seconds,
        "teacher_seconds": result.teacher_seconds,
        "eval_seconds": result.eval_seconds,
        "steps": float(result.steps),
        "train_blocks": float(len(blocks["train"])),
        "test_lines": float(len(lines)),
    }
    metrics.update(_cache_metrics(cache_info))
    if work.mode == "in_training":
        metrics.update(_teacher_scores(teacher, blocks, lines, work, result))
    return {
        "metrics": metrics,
        "predictions": test["predictions"],
        "cache_key": cache_info.get("cache_key"),
        "approximate": bool(cache_info.get("approximate", False)),
        "checkpoint": result.checkpoint,
    }


def _cache_metrics(cache_info: dict[str, Any]) -> dict[str, float]:
    out = {"cache_bytes": float(cache_info["cache_bytes"])} if cache_info.get("cache_bytes") else {}
    for temp, mass in (cache_info.get("mass_kept") or {}).items():
        out[f"topk_mass_kept_T{temp}"] = float(mass)
    return out


def _teacher_scores(teacher: Any, blocks: dict, lines: list[dict], work: CompletionWork, result: Any) -> dict:
    """An in-training teacher after the trial: its validation perplexity and its own line-completion scores."""
    from orchestrator.core.device import resolve_device
    from orchestrator.train.lm_trainer import evaluate_lm

    device = resolve_device(work.trial.train.device)
    out = {
        "teacher_val_ppl": evaluate_lm(
            teacher.to(device), blocks["validation"], work.trial.train.eval_batch_size, device
        )["ppl"]
    }
    own = score_generation(teacher.model, teacher.tokenizer, lines, work.generation)
    out.update(teacher_test_es=own["es"], teacher_test_em=own["em"])
    if result.teacher_losses:
        out["teacher_final_train_loss"] = result.teacher_losses[-1]
    return out
