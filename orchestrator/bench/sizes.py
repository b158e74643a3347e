"""The benchmarks' sizes, in a module without torch so the command line (and its ``--help``) loads fast.

``OVERHEAD_SIZES`` (``overhead.py``) and ``TRANSFER_SIZES`` (``transfer.py``, which documents its choices)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from tasks.hole_window import CHECK_WINDOW


@dataclass(frozen=True)
class BenchSize:
    student: str
    teacher_layers: int
    teacher_hidden: int
    teacher_heads: int
    teacher_ffn: int
    teacher_vocab: int
    max_length: int
    batch_size: int
    steps: int


OVERHEAD_SIZES: dict[str, BenchSize] = {
    # 2-core CPU: RoBERTa-base-shaped teacher, 7M student, shorter sequences so online KD finishes in minutes.
    "default": BenchSize("roberta-7m", 12, 768, 12, 3072, 8000, 256, 16, 20),
    # A GPU: the paper's settings (max length 512, batch 32).
    "paper": BenchSize("roberta-7m", 12, 768, 12, 3072, 50000, 512, 32, 200),
    # Tests: everything tiny.
    "tiny": BenchSize("roberta-tiny", 2, 64, 2, 128, 600, 64, 8, 6),
}


@dataclass(frozen=True)
class TransferSize:
    """Everything the check trains, fixed per size before it runs (so nobody tunes the check itself). The design
    and the measurements it rests on: docs/METHODS.md, "The knowledge-transfer check: design"."""

    task: str
    student: str
    max_length: int
    # The labelled part of the training split (tasks/labels.py: LabelSpec), e.g. {"count": 500}; the rest of the
    # training inputs are the transfer set's unlabelled inputs.
    labelled: dict[str, Any]
    teacher_epochs: int  # the teacher is fine-tuned on the labelled part only
    teacher_lr: float
    teacher_batch_size: int
    # Every student run (FT, each KD method, every arm, every candidate and seed) takes this many optimiser steps
    # and is evaluated on validation at the same steps (every ``eval_every`` samples: the labelled part is tiled
    # to the size of the transfer set per "epoch"), so no method gets more updates or more checkpoints to pick from.
    steps: int
    batch_size: int
    seeds: tuple[int, ...]
    # The search: candidates per method, each a dict of ``lr`` plus method hyperparameters. The same number for
    # every method, FT included; fixed before any run of the check, never picked by looking at its outcomes.
    candidates: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    min_advantage: float = 0.10  # the teacher must beat the best FT student on validation by this much
    # Exception only: cut every function to its first line plus (lines above, lines below) the masked handler
    # (tasks/hole_window.py says why); None: whole functions.
    hole_window: tuple[int, int] | None = None
    max_samples: int | None = None  # caps every split (the tiny size)
    # The data: at least ``min_train`` training inputs; ``build`` is the tasks.build_local split sizes that make
    # the check's default data folder (data/transfer) when it is missing.
    min_train: int = 0
    build: dict[str, int] | None = None
    # the permutation of the teacher's cached rows (fixed, independent of the trial seeds)
    placebo_seed: int = 0
    workers: int = 1  # student runs at once, one process each (transfer_pool.py), sharing the cores


def _grid(lrs: tuple[float, ...]) -> dict[str, list[dict[str, Any]]]:
    """Three candidates per method: the lr range for FT; for KD methods the method's own knob across its
    published range at the middle lr (the authors tuned lr and T per run and did not publish the values)."""
    lo, mid, hi = lrs
    return {
        "ft": [{"lr": lo}, {"lr": mid}, {"lr": hi}],
        # KD: the authors' T 10 (no T^2), and the common T 2 / T 4 (Hinton; the README's example uses T 2).
        "kd": [{"lr": mid, "temperature": t} for t in (2.0, 4.0, 10.0)],
        # DIST: T 1 (the study's) and T 4 (DIST's ImageNet setting); and T 1 at the high lr.
        "dist": [
            {"lr": mid, "temperature": 1.0},
            {"lr": mid, "temperature": 4.0},
            {"lr": hi, "temperature": 1.0},
        ],
        # PKD: the authors' defaults (alpha 1, beta 10, T 10), and PKD's own paper's search range with the label
        # term on (alpha 0.5; beta 100 and 500 of its {10, 100, 500, 1000}).
        "pkd": [
            {"lr": mid, "alpha": 1.0, "beta": 10.0},
            {"lr": mid, "alpha": 0.5, "beta": 100.0},
            {"lr": mid, "alpha": 0.5, "beta": 500.0},
        ],
        # CKD: the authors' argparse default (beta = gamma = 10), their README example (beta = gamma = 1), and
        # beta = gamma = 10 at the low lr (their README runs CKD at a lower lr than KD).
        "ckd": [
            {"lr": mid, "beta": 10.0, "gamma": 10.0},
            {"lr": mid, "beta": 1.0, "gamma": 1.0},
            {"lr": lo, "beta": 10.0, "gamma": 10.0},
        ],
    }


def _grid2(lrs: tuple[float, float]) -> dict[str, list[dict[str, Any]]]:
    """Two candidates per method (the CPU budget), unchanged since the check's first version: FT's two lrs; for
    each KD method its authors' setting and the common alternative, both at the higher lr."""
    lo, hi = lrs
    return {
        "ft": [{"lr": lo}, {"lr": hi}],
        "kd": [{"lr": hi, "temperature": 10.0}, {"lr": hi, "temperature": 2.0}],
        "dist": [{"lr": hi, "temperature": 1.0}, {"lr": hi, "temperature": 4.0}],
        "pkd": [{"lr": hi, "alpha": 1.0, "beta": 10.0}, {"lr": hi, "alpha": 0.5, "beta": 100.0}],
        "ckd": [{"lr": hi, "beta": 10.0, "gamma": 10.0}, {"lr": hi, "beta": 1.0, "gamma": 1.0}],
    }


# The check's data: every exception sample this machine's Python yields (about 6,800; the builder's pool runs
# out before these counts, so they set the split proportions: about 5,800 / 390 / 590).
TRANSFER_BUILD = {"train": 6000, "validation": 400, "test": 600}

TRANSFER_SIZES: dict[str, TransferSize] = {
    # 2 CPU cores. Why each number: docs/METHODS.md, "The knowledge-transfer check: design".
    "cpu": TransferSize(
        task="exception",
        student="roberta-0.6m",
        max_length=128,
        labelled={"count": 500},
        teacher_epochs=8,
        teacher_lr=2e-4,
        teacher_batch_size=16,
        steps=500,
        batch_size=16,
        seeds=(0, 1, 2),
        candidates=_grid2((5e-4, 1e-3)),
        hole_window=CHECK_WINDOW,
        min_train=5000,
        build=TRANSFER_BUILD,
        # two student runs at once, one torch thread each: with two threads in one process, each op waits for
        # both cores, and a run slowed tenfold (48 s to over 8 min for one CKD run) as soon as another process
        # took one core; one thread per run degrades only in proportion to the CPU it loses
        workers=2,
    ),
    # One H200, about 4 minutes: whole functions at 384 tokens (the hole in view for 91% of the students' inputs,
    # 89% of the teacher's; 97% / 95% at 512, at 4/3 of the cost), the 7M student, five seeds, eight students at
    # once on the one GPU (transfer_pool.py). Why each number: docs/METHODS.md.
    "gpu": TransferSize(
        task="exception",
        student="roberta-7m",
        max_length=384,
        labelled={"count": 500},
        teacher_epochs=8,
        teacher_lr=2e-4,
        teacher_batch_size=16,
        steps=600,
        batch_size=32,
        seeds=(0, 1, 2, 3, 4),
        candidates=_grid2((3e-4, 1e-3)),
        min_train=5000,
        build=TRANSFER_BUILD,
        workers=8,
    ),
    # Tests: tiny, only that the machinery works end to end (every arm, the placebo, the verdict).
    "tiny": TransferSize(
        task="exception",
        student="roberta-tiny",
        max_length=48,
        labelled={"count": 24},
        teacher_epochs=1,
        teacher_lr=1e-4,
        teacher_batch_size=16,
        steps=6,
        batch_size=16,
        seeds=(0, 1),
        candidates={
            "ft": [{"lr": 1e-3}],
            "kd": [{"lr": 1e-3, "temperature": 2.0}],
            "dist": [{"lr": 1e-3}],
            "pkd": [{"lr": 1e-3}],
            "ckd": [{"lr": 1e-3, "beta": 1.0, "gamma": 1.0}],
        },
        hole_window=CHECK_WINDOW,
        max_samples=64,
        min_train=64,
    ),
}


@dataclass(frozen=True)
class PackingSize:
    """One packing measurement: each trial fine-tunes ``student`` for ``steps`` optimiser steps."""

    student: str
    max_length: int
    batch_size: int
    steps: int
    counts: tuple[int, ...] = (1, 2, 4, 8)


PACKING_SIZES: dict[str, PackingSize] = {
    # 2-core CPU: the 7M student at a shorter length; the cores are split between the trials of a round.
    "default": PackingSize("roberta-7m", 256, 16, 10),
    # A GPU: the paper's student and shapes; trials share the device.
    "paper": PackingSize("roberta-7m", 512, 32, 100),
    # Tests: seconds.
    "tiny": PackingSize("roberta-tiny", 64, 8, 4, (1, 2)),
}
