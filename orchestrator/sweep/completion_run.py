"""One completion trial's work, without MLflow: distil (or LM-train) a GPT-2 student, then complete test lines.

It composes the models branch's pieces (``lm_trial.tokenise`` / ``teacher_source``, ``build_gpt2_student``,
``train_lm``) so the per-epoch validation perplexity can be reported as it comes, then scores line completion on the
best-validation weights with ``tasks.completion`` (beam search, CodeXGLUE's evaluator) and measures generation
speed. An in-training teacher is scored the same way after the trial (it learnt too).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

_TEXTS: dict[tuple, Any] = {}  # a reused Tune actor keeps the loaded data between trials


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


def lm_trial_config(trial: dict[str, Any], texts: dict[str, list[str]]) -> Any:
    from orchestrator.train.lm_teachers import TeacherTrainConfig
    from orchestrator.train.lm_trainer import LMTrainConfig
    from orchestrator.train.lm_trial import LMTrialConfig

    mode = trial["teacher_mode"]
    return LMTrialConfig(
        teacher=trial["teacher_dir"],
        student=trial["student"],
        student_init=trial["student_init"],
        method="distil",
        method_params=trial["method_params"],
        # lm_only reads no teacher signal (distil with alpha_ce = alpha_cos = 0); "online" only wires the source.
        teacher_mode="online" if mode == "none" else mode,
        block_size=trial["block_size"],
        texts=texts,
        storage=trial["cache_storage"],
        cache_dtype=trial["cache"]["dtype"],
        topk=trial["cache"]["topk"],
        online_dtype=trial["online_dtype"],
        train=LMTrainConfig(**trial["train"], seed=trial["seed"], device=trial["device"]),
        teacher_train=TeacherTrainConfig(**trial["teacher_train"]),
    )


def run_completion_trial(
    trial: dict[str, Any], out_dir: Path, on_epoch: Callable[[dict[str, float]], None] | None = None
) -> dict[str, Any]:
    """Train, select on validation perplexity, score on the line test; returns metrics and predictions."""
    from kd_methods import build_method
    from models.gpt2_student import build_gpt2_student
    from models.lm_teacher import LMTeacher
    from orchestrator.train.lm_trainer import evaluate_lm, train_lm
    from orchestrator.train.lm_trial import teacher_source, tokenise
    from orchestrator.train.trainer import resolve_device

    texts, lines = load_data(trial["data"], trial["caps"])
    cfg = lm_trial_config(trial, texts)
    teacher = LMTeacher.load(cfg.teacher)
    blocks = tokenise(teacher, texts, min(cfg.block_size, teacher.max_positions))
    torch.manual_seed(cfg.train.seed)
    student = build_gpt2_student(cfg.student, teacher.model, cfg.student_init)
    method = build_method("distil", student.shape, teacher.shape, **cfg.method_params)
    source, cache_info = (None, {}) if method.signals().empty else teacher_source(cfg, teacher, blocks)
    result = train_lm(student, method, blocks, cfg.train, source, out_dir, callback=on_epoch)
    device = resolve_device(cfg.train.device)
    test = score_generation(student.model, teacher.tokenizer, lines, trial["generation"])
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
    if cache_info.get("cache_bytes"):
        metrics["cache_bytes"] = float(cache_info["cache_bytes"])
    for temp, mass in (cache_info.get("mass_kept") or {}).items():
        metrics[f"topk_mass_kept_T{temp}"] = float(mass)
    if cfg.teacher_mode == "in_training" and trial["teacher_mode"] != "none":
        metrics["teacher_val_ppl"] = evaluate_lm(
            teacher.to(device), blocks["validation"], cfg.train.eval_batch_size, device
        )["ppl"]
        own = score_generation(teacher.model, teacher.tokenizer, lines, trial["generation"])
        metrics.update(teacher_test_es=own["es"], teacher_test_em=own["em"])
        if result.teacher_losses:
            metrics["teacher_final_train_loss"] = result.teacher_losses[-1]
    return {
        "metrics": metrics,
        "predictions": test["predictions"],
        "cache_key": cache_info.get("cache_key"),
        "approximate": bool(cache_info.get("approximate", False)),
        "checkpoint": result.checkpoint,
    }
