"""The completion study's teacher work, without MLflow: a teacher written once into its content-keyed folder (a
``kdstudy_teacher.json`` marker says it is complete), scored on the line test, and the teacher caches its cached
trials read, built through the very function the trials call (``lm_trial.teacher_source``), so the trials find
them under the same key and never run the teacher."""

from __future__ import annotations

import json
import os
import shutil
import time
from pathlib import Path
from typing import Any

from orchestrator.core.log import log
from orchestrator.core.paths import partial_folder
from orchestrator.train.lm_work import CompletionWork, score_generation, with_texts

MARKER = "kdstudy_teacher.json"


def _make_teacher(t: Any, texts: dict[str, list[str]], folder: Path) -> Any:
    """The teacher, before any training: random (own BPE) or loaded with CodeXGLUE's tokens added."""
    from models.lm_teacher import LMTeacher, create_random_gpt2_teacher, load_codexglue_teacher
    from tasks.completion.tokenizer import build_bpe_tokenizer

    if t.random:
        tok = build_bpe_tokenizer(texts["train"], t.vocab)
        create_random_gpt2_teacher(folder, t.layers, t.hidden, t.heads, t.positions, t.vocab, tokenizer=tok)
        return LMTeacher.load(folder)
    # load, add the tokens, resize, then check: CodeGPT-small-py's tokenizer is one longer than its embeddings
    # until resized (its unknown token is in no vocabulary file), so LMTeacher.load would refuse it
    teacher, added = load_codexglue_teacher(t.source, trust_remote_code=t.trust_remote_code)
    log(f"teacher {t.name}: {added} CodeXGLUE tokens added, vocabulary {teacher.vocab_size}")
    return teacher


def materialise_teacher(
    folder: Path, key: str, t: Any, texts: dict[str, list[str]], block_size: int, device: str
) -> tuple[dict[str, Any], bool]:
    """The teacher folder's record, and whether this call built it (``t``: the study's teacher settings)."""
    from kd_methods import build_method
    from orchestrator.train.lm_trainer import LMTrainConfig, train_lm
    from orchestrator.train.lm_trial import tokenise

    if (folder / MARKER).is_file():
        return json.loads((folder / MARKER).read_text()), False
    tmp = partial_folder(folder)  # a killed builder's leftovers go first
    start = time.perf_counter()
    try:  # a full disk (or Ctrl-C) leaves no half-written folder behind
        teacher = _make_teacher(t, texts, tmp)
        record: dict[str, Any] = {
            "key": key,
            "source": t.source,
            "params": sum(p.numel() for p in teacher.parameters()),
        }
        if t.train is not None:
            blocks = tokenise(teacher, texts, min(block_size, teacher.max_positions))
            method = build_method("distil", teacher.shape, teacher.shape, alpha_ce=0.0, alpha_cos=0.0)
            result = train_lm(teacher, method, blocks, LMTrainConfig(**t.train.model_dump(), device=device))
            record.update(best_val_ppl=result.best_val_ppl, history=result.history, steps=result.steps)
            log(
                f"teacher {t.name}: LM-trained {result.steps} steps, validation perplexity {result.best_val_ppl:.2f}"
            )
        teacher.save(tmp)
        record["seconds"] = time.perf_counter() - start
        (tmp / MARKER).write_text(json.dumps(record, indent=2))
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    shutil.rmtree(folder, ignore_errors=True)
    os.replace(tmp, folder)
    return record, True


def score_teacher(
    folder: str, lines: list[dict], generation: dict[str, Any], device: str
) -> dict[str, float]:
    """The teacher's own line-completion scores, size and speed: the poster's baseline row."""
    from models.gpt2_student import model_size_mb
    from models.lm_teacher import LMTeacher
    from orchestrator.core.device import resolve_device

    teacher = LMTeacher.load(folder).to(resolve_device(device))
    test = score_generation(teacher.model, teacher.tokenizer, lines, generation)
    return {
        "test_es": test["es"],
        "test_em": test["em"],
        "test_score": test["es"],
        "model_mb": model_size_mb(teacher.model),
        "inference_samples_per_s": test["samples_per_s"],
        "generated_tokens_per_s": test["tokens_per_s"],
    }


def build_teacher(
    folder: str, key: str, t: Any, data: str, caps: dict, block_size: int, generation: dict, device: str,
    score: bool = False,
) -> tuple[dict[str, Any], bool, dict[str, float]]:  # fmt: skip
    """Materialise one teacher and score it when this call built it or ``score`` asks (its record, built, its
    scores): a teacher saved by a driver that died before recording it, or one another study built, is scored
    for this study's run."""
    from orchestrator.train.lm_work import load_data

    texts, lines = load_data(data, caps)
    record, built = materialise_teacher(Path(folder), key, t, texts, block_size, device)
    return record, built, score_teacher(folder, lines, generation, device) if built or score else {}


def build_cache(work: CompletionWork) -> tuple[bool, str]:
    """The cache a cached trial reads, built through the trials' own ``teacher_source``: whether this call built
    it, and its key."""
    from models.lm_teacher import LMTeacher
    from orchestrator.cache.build import cache_root
    from orchestrator.train.lm_trial import teacher_source, tokenise

    cfg, _ = with_texts(work)
    root = cache_root(cfg.storage)
    before = set(os.listdir(root)) if root.is_dir() else set()
    teacher = LMTeacher.load(cfg.teacher)
    _, info = teacher_source(
        cfg, teacher, tokenise(teacher, cfg.texts or {}, min(cfg.block_size, teacher.max_positions))
    )
    return bool(set(os.listdir(root)) - before), info["cache_key"]
