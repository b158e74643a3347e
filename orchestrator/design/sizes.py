"""What a classification plan knows without loading weights or downloading data: teacher shapes (a table of the
studies' teachers, else a local config), student parameter counts (from the spec), split sizes (the local
data's manifest or files, clone's official files as sampled, the hub's published sizes, a declared task's files)
and mean tokens per sample."""

from __future__ import annotations

import json
from functools import cache
from pathlib import Path
from typing import Any

from kd_methods import ModelShape
from orchestrator.train.trial import TEACHER_ALIASES
from tasks import get_task
from tasks.clone import HUB_SAMPLE_FRACTION as CLONE_FRACTION
from tasks.examples import sample_size

# Shapes of the teachers the studies name, so --plan needs no download. Others are read from a local config.
KNOWN_TEACHERS: dict[str, tuple[int, int, int]] = {  # layers, hidden, parameters
    "microsoft/unixcoder-base": (12, 768, 126_000_000),
    "answerdotai/ModernBERT-base": (22, 768, 149_000_000),
    "microsoft/CodeGPT-small-py": (12, 768, 124_000_000),
    "minilm": (6, 384, 22_700_000),
}
# Hub split sizes (docs/STUDY.md) and mean teacher tokens per sample at max length 512, for estimates before download.
# Clone trains and validates on CodeXGLUE's 10% sample of BigCloneBench's 901,028 / 415,416 rows: its size by the
# sampler's own rule (90,103 / 41,542), all of test.
HUB_SAMPLES = {
    "defect": {"train": 21854, "validation": 2732, "test": 2732},
    "clone": {
        "train": sample_size(901_028, CLONE_FRACTION),
        "validation": sample_size(415_416, CLONE_FRACTION),
        "test": 415416,
    },
    "exception": {"train": 18480, "validation": 2088, "test": 10348},
}
MEAN_TOKENS_512 = {"defect": 380, "clone": 460, "exception": 230}
MEAN_TOKENS_DECLARED = 512  # a declared task (docs/OWN_DATA.md): plan for full-length inputs, an upper bound


def teacher_shape(t: Any) -> tuple[ModelShape, int, str | None]:
    """(shape, parameter estimate, note) of a teacher (``TeacherSettings``), without loading weights."""
    if t.source.startswith("random:"):
        layers, hidden = t.layers or 2, t.hidden or 64
        return ModelShape(layers, hidden), 12 * layers * hidden * hidden, None
    source = TEACHER_ALIASES.get(t.source, t.source)
    local = _local_config(source)
    if local is not None:  # the model that will run: its layers decide which ones the cache stores
        layers, hidden = local
        known = KNOWN_TEACHERS.get(source)
        params = known[2] if known and known[:2] == local else 12 * layers * hidden * hidden
        return ModelShape(layers, hidden), params, None
    if source in KNOWN_TEACHERS or t.source in KNOWN_TEACHERS:
        layers, hidden, params = KNOWN_TEACHERS.get(source) or KNOWN_TEACHERS[t.source]
        return ModelShape(layers, hidden), params, None
    try:
        from transformers import AutoConfig

        cfg = AutoConfig.from_pretrained(source, local_files_only=True, trust_remote_code=t.trust_remote_code)
        shape = ModelShape(cfg.num_hidden_layers, cfg.hidden_size)
        return shape, 12 * cfg.num_hidden_layers * cfg.hidden_size**2, None
    except Exception:  # noqa: BLE001 - unknown offline: plan with a RoBERTa-base shape and say so
        return (
            ModelShape(12, 768),
            125_000_000,
            f"teacher '{t.name}': shape unknown offline, planned as 12x768",
        )


def _local_config(source: str) -> tuple[int, int] | None:
    """(layers, hidden) from the ``config.json`` of a local folder or of the hub cache's snapshot of a hub id (what
    ``from_pretrained`` will load offline), read as JSON without importing transformers; None when there is none."""
    from tasks.hub_cache import hub_snapshot

    folder: Path | None = Path(source).expanduser()
    if not (folder and folder.is_dir()):
        folder = hub_snapshot(source, "model") if source.count("/") == 1 else None
    file = folder / "config.json" if folder else None
    if file is None or not file.is_file():
        return None
    cfg = json.loads(file.read_text())
    if not isinstance(cfg.get("num_hidden_layers"), int) or not isinstance(cfg.get("hidden_size"), int):
        return None
    return cfg["num_hidden_layers"], cfg["hidden_size"]


@cache
def student_parameters(student: str, num_labels: int) -> int:
    """A student's parameter count, from its spec (``StudentSpec.num_parameters``): no model is built, so the
    driver does not import transformers to plan."""
    from models.students import get_student_spec

    return get_student_spec(student).num_parameters(num_labels)


def split_sizes(spec: Any, task: str) -> dict[str, int]:
    """Samples per split of ``task`` as the study will read them (capped by ``max_samples``)."""
    from tasks import is_custom

    if is_custom(task):
        sizes = get_task(task).split_sizes()  # type: ignore[attr-defined]
    elif spec.data == "hub":
        sizes = dict(HUB_SAMPLES[task])
    else:
        root = Path(spec.data).expanduser()  # clone's official layout: its sampled pairs (local_sizes)
        local = get_task(task).local_sizes(root / task)
        sizes = local or _manifest_counts(root / "manifest.json", task) or _counted(root / task)
    if spec.max_samples:
        sizes = {k: min(v, spec.max_samples) for k, v in sizes.items()}
    return sizes


def _manifest_counts(manifest: Path, task: str) -> dict[str, int] | None:
    """``task``'s split sizes as ``tasks.build_local`` recorded them (``tasks.<task>.counts``; the top-level
    ``counts`` is the older layout); None when the manifest is missing or malformed (not JSON, not a mapping, a
    count that is not a non-negative integer): a plan never fails on it, it counts the files instead."""
    try:
        m = json.loads(manifest.read_text())
    except (OSError, UnicodeDecodeError, ValueError):
        return None
    if not isinstance(m, dict):
        return None
    entry = m.get("tasks")
    entry = entry.get(task) if isinstance(entry, dict) else None
    counts = entry.get("counts") if isinstance(entry, dict) else None
    if not counts and isinstance(m.get("counts"), dict):
        counts = m["counts"].get(task)
    if not isinstance(counts, dict) or not all(
        type(counts.get(s)) is int and counts[s] >= 0 for s in ("train", "validation", "test")
    ):
        return None
    return {s: counts[s] for s in ("train", "validation", "test")}


def _counted(folder: Path) -> dict[str, int]:
    """Lines per split file of a task's folder; a missing split is planned at the local default's size."""
    from tasks.base import count_records
    from tasks.custom import split_path

    default = {"train": 2000, "validation": 300, "test": 300}
    sizes = {}
    for split, n in default.items():
        path = split_path(folder, split)
        try:
            sizes[split] = count_records(path) if path else n
        except OSError:
            sizes[split] = n
    return sizes


def mean_tokens(spec: Any, task: str) -> float:
    """Mean teacher tokens per sample of ``task`` at the study's max length."""
    return MEAN_TOKENS_512.get(task, MEAN_TOKENS_DECLARED) * min(spec.student_train.max_length, 512) / 512


def label_counts(spec: Any, task: str, level: Any) -> tuple[int, int]:
    """(labelled, unlabelled) training inputs of ``task`` at a labels level (a ``LabelSpec``, None: all): the
    labelled part of the training split, and the rest of it plus a declared task's ``unlabelled.jsonl``."""
    from tasks.labels import count_unlabelled

    n = split_sizes(spec, task)["train"]
    labelled = n if level is None else level.size(n)
    return labelled, n - labelled + count_unlabelled(get_task(task), spec.max_samples)
