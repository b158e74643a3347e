"""What each of a study's teachers fine-tunes from: a hub id, an alias or a folder as given, or for ``random:<arch>``
a tiny randomly initialised teacher made once under ``<storage>/teachers/base`` (shared by the studies on that
storage; the first study to need it makes it while the others wait)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from orchestrator.core.paths import exclusive, teacher_complete, writing


def teacher_sources(spec: Any, data: str, needed: set[str]) -> tuple[dict[str, Any], dict[str, str]]:
    """The study's teachers by name, and what each of ``needed`` fine-tunes from. A random teacher
    is created once, on disk, and only when a fine-tune needs it: a study of FT alone, or one whose teachers are
    all fine-tuned already, makes none (and the driver does not import transformers for it)."""
    from orchestrator.train.trial import resolve_teacher

    storage = Path(spec.storage)
    teachers = {t.name: t for t in spec.teachers}
    sources: dict[str, str] = {}
    for t in spec.teachers:
        if t.name not in needed:
            continue
        if t.source.startswith("random:"):
            base = storage / "teachers" / "base" / f"{t.name}-{t.layers}x{t.hidden}"
            # Another study on this storage may be making the same base now: wait for it, then use its base.
            with exclusive(base):
                if not teacher_complete(base):  # a half-written base (an older run out of disk) is made again
                    make_random_base(spec, t, base, data)
            sources[t.name] = str(base)
        else:
            sources[t.name] = resolve_teacher(t.source)
    return teachers, sources


def make_random_base(spec: Any, t: Any, base: Path, data: str) -> None:
    """A random teacher ``t`` (``source: random:<arch>``) with a BPE vocabulary fitted on the study's tasks."""
    from models.teacher import create_random_teacher
    from orchestrator.train.trial import load_data

    texts = [
        ex.code for task in spec.tasks for ex in load_data(task, data, spec.data_seed, spec.max_samples).train
    ]
    with writing(base) as partial:  # renamed into place when complete, removed if not
        create_random_teacher(
            partial,
            arch=t.source.split(":", 1)[1],
            num_layers=t.layers or 2,
            hidden_size=t.hidden or 64,
            num_heads=2,
            intermediate_size=2 * (t.hidden or 64),
            tokenizer_texts=texts,
            vocab_size=1000,
            num_labels=2,
            max_length=max(spec.teacher_train_for(t.name).max_length, spec.student_train.max_length),
        )
