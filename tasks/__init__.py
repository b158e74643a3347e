"""The classification tasks: the study's three (defect, clone, exception) and a user's own, declared in YAML
(``declare``, tasks/custom.py, docs/OWN_DATA.md): data loading and metrics.

``get_task(name)`` gives a Task; ``load_task_data(task, source)`` reads its data from the Hugging Face hub
(``source="hub"``) or from a folder of JSON Lines built by ``python -m tasks.build_local --out DIR``.
"""

from __future__ import annotations

from pathlib import Path

from tasks.base import (
    SPLITS,
    Example,
    HubUnavailableError,
    RecordError,
    Task,
    TaskData,
    normalise_code,
    sample_fraction,
)
from tasks.clone import CloneTask
from tasks.custom import CustomTask, TaskDeclaration, TaskDeclarationError
from tasks.data_key import data_request_key, family_request_key
from tasks.defect import DefectTask
from tasks.exception import EXCEPTION_LABELS, ExceptionTask
from tasks.registry import (
    BUILTIN_TASKS,
    TASKS,
    declare,
    family_members,
    get_task,
    is_custom,
    load_task_file,
    registered,
)


def load_task_data(
    task: str,
    source: str | Path,
    data_seed: int = 0,
    max_samples: int | None = None,
    *,
    seed: int | None = None,
) -> TaskData:
    """A task's train/validation/test examples.

    ``source`` is ``"hub"`` (``datasets.load_dataset``) or a folder holding ``<task>/train.jsonl``,
    ``<task>/validation.jsonl`` and ``<task>/test.jsonl`` (clone: or CodeXGLUE's ``data.jsonl`` + ``*.txt``).
    ``data_seed`` is the study's data seed (by default its first seed): it picks clone detection's 10% sample (of
    the hub splits or of the official local files), the same for every trial whatever the trial's seed.
    ``seed`` is its old name, accepted from callers not yet passing ``data_seed``; never pass a trial's seed.
    ``max_samples`` keeps the first N examples of each split, for quick runs.
    """
    if seed is not None:
        if data_seed not in (0, seed):
            raise ValueError(
                f"load_task_data: data_seed={data_seed} and seed={seed} disagree; pass data_seed only"
            )
        data_seed = seed
    t = get_task(task)
    if is_custom(task):  # a declared task reads its own data folder whatever the study's data source
        return t.load_jsonl(None, max_samples=max_samples)
    if isinstance(source, str) and source == "hub":
        return t.load_hub(data_seed=data_seed, max_samples=max_samples)
    folder = Path(source) / t.name
    if not folder.is_dir():
        raise FileNotFoundError(
            f"{folder}: no data folder for task '{t.name}' (source must be 'hub' or a folder holding "
            f"<task>/train.jsonl etc.; build one with `python -m tasks.build_local --out {source}`)"
        )
    return t.load_jsonl(folder, max_samples=max_samples, data_seed=data_seed)


__all__ = [
    "BUILTIN_TASKS",
    "EXCEPTION_LABELS",
    "SPLITS",
    "TASKS",
    "CloneTask",
    "CustomTask",
    "DefectTask",
    "Example",
    "ExceptionTask",
    "HubUnavailableError",
    "RecordError",
    "Task",
    "TaskDeclaration",
    "TaskDeclarationError",
    "TaskData",
    "data_request_key",
    "declare",
    "family_members",
    "family_request_key",
    "get_task",
    "is_custom",
    "load_task_file",
    "registered",
    "load_task_data",
    "normalise_code",
    "sample_fraction",
]
