"""The student registry: the paper's eight students (plus two tiny ones for tests) and the builder.

Published shapes: RoBERTa-124M is roberta-base (12 x 768, FFN 3072); the BiGRUs whole (the authors' code,
``models/bigru.py``: embeddings at the GRU width, their hidden sizes and layer counts, RoBERTa's head). The other
RoBERTa shapes are ours, chosen so each model's parameter count (2-label head, 512 tokens) lands near its name:

| name         | shape                                              | params (2 labels) |
|--------------|----------------------------------------------------|-------------------|
| roberta-124m | vocab 50000, 12 x 768, 12 heads, FFN 3072          | 124.44M           |
| roberta-30m  | vocab 20000, 6 x 512, 8 heads, FFN 2048            | 29.68M            |
| roberta-7m   | vocab 5000, 4 x 320, 5 heads, FFN 1280             | 6.80M             |
| roberta-1.5m | vocab 2000, 6 x 128, 2 heads, FFN 512              | 1.53M             |
| roberta-0.6m | vocab 1000, 2 x 128, 2 heads, FFN 512              | 0.61M             |
| bigru-30m    | vocab 20000, embed 448, 6 layers x 448 per dir     | 30.50M            |
| bigru-7m     | vocab 5000, embed 320, 3 layers x 320 per dir      | 7.10M             |
| bigru-1.5m   | vocab 2000, embed 176, 2 layers x 176 per dir      | 1.50M             |

RoBERTa students keep a head width of 64 and the usual FFN = 4 x hidden; their layer counts divide 12 so that the
PKD/CKD layer map ``i * 12 / L`` lands on whole teacher layers. ``tests/test_models.py`` checks the counts.
"""

from __future__ import annotations

import dataclasses
import re
from typing import TYPE_CHECKING

from models.spec import StudentSpec

# torch is imported where a model is built: the driver reads the registry without it (seconds)
if TYPE_CHECKING:
    from torch import nn


def _roberta(name: str, vocab: int, hidden: int, layers: int, ffn: int, nominal: int) -> StudentSpec:
    return StudentSpec(
        name=name,
        arch="roberta",
        vocab_size=vocab,
        hidden_size=hidden,
        num_layers=layers,
        num_heads=max(1, hidden // 64),
        intermediate_size=ffn,
        nominal_params=nominal,
    )


def _bigru(name: str, vocab: int, embed: int, hidden: int, layers: int, nominal: int) -> StudentSpec:
    return StudentSpec(
        name=name,
        arch="bigru",
        vocab_size=vocab,
        hidden_size=hidden,
        num_layers=layers,
        embed_dim=embed,
        nominal_params=nominal,
    )


STUDENTS: dict[str, StudentSpec] = {
    spec.name: spec
    for spec in (
        _roberta("roberta-124m", 50000, 768, 12, 3072, 124_000_000),
        _roberta("roberta-30m", 20000, 512, 6, 2048, 30_000_000),
        _roberta("roberta-7m", 5000, 320, 4, 1280, 7_000_000),
        _roberta("roberta-1.5m", 2000, 128, 6, 512, 1_500_000),
        _roberta("roberta-0.6m", 1000, 128, 2, 512, 600_000),
        _bigru("bigru-30m", 20000, 448, 448, 6, 30_000_000),
        _bigru("bigru-7m", 5000, 320, 320, 3, 7_000_000),
        _bigru("bigru-1.5m", 2000, 176, 176, 2, 1_500_000),
        # Tiny ones for tests and the smoke study: seconds on a CPU.
        StudentSpec("roberta-tiny", "roberta", 400, 64, 2, num_heads=2, intermediate_size=128),
        StudentSpec("bigru-tiny", "bigru", 400, 32, 2, embed_dim=32),
    )
}


def get_student_spec(name: str) -> StudentSpec:
    try:
        return STUDENTS[name.lower()]
    except KeyError:
        raise KeyError(f"unknown student '{name}'; valid: {sorted(STUDENTS)}") from None


def nominal_params_from_name(name: str) -> int | None:
    """``roberta-1.5m`` -> 1_500_000; None for names without a size (``roberta-tiny``)."""
    match = re.fullmatch(r"[a-z]+-(\d+(?:\.\d+)?)m", name.lower())
    return round(float(match.group(1)) * 1_000_000) if match else None


def build_student(
    name_or_spec: str | StudentSpec,
    num_labels: int,
    vocab_size: int | None = None,
    max_length: int = 512,
) -> nn.Module:
    """A randomly initialised student (seed with ``torch.manual_seed`` first for reproducibility).

    ``vocab_size`` replaces the spec's, for a tokenizer that came out smaller than asked (little training text);
    the returned model's ``.spec`` carries the size actually used. ``max_length`` sizes RoBERTa's position table.
    """
    spec = get_student_spec(name_or_spec) if isinstance(name_or_spec, str) else name_or_spec
    if num_labels < 1:
        raise ValueError(f"num_labels must be positive, got {num_labels}")
    if vocab_size is not None and vocab_size != spec.vocab_size:
        if vocab_size <= spec.pad_token_id:
            raise ValueError(f"vocab_size {vocab_size} is too small to hold pad id {spec.pad_token_id}")
        spec = dataclasses.replace(spec, vocab_size=vocab_size)
    # Imported here so that the registry can be read without building either architecture's modules.
    if spec.arch == "roberta":
        from models.roberta import RobertaStudent

        return RobertaStudent(spec, num_labels, max_length=max_length)
    from models.bigru import BiGRUStudent

    return BiGRUStudent(spec, num_labels, max_length=max_length)


def count_parameters(model: nn.Module, trainable_only: bool = False) -> int:
    """Number of parameters (``parameters()`` yields a tied tensor once; works on the ``meta`` device too)."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad or not trainable_only)


def student_param_count(name_or_spec: str | StudentSpec, num_labels: int = 2, max_length: int = 512) -> int:
    """Parameter count of a student, built on the ``meta`` device so that no memory is allocated or initialised."""
    import torch

    with torch.device("meta"):
        model = build_student(name_or_spec, num_labels, max_length=max_length)
    return count_parameters(model)
