"""The three classification tasks of the study (defect, clone, exception): data loading and metrics.

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
from tasks.defect import DefectTask
from tasks.exception import EXCEPTION_LABELS, ExceptionTask

TASKS: dict[str, Task] = {"defect": DefectTask(), "clone": CloneTask(), "exception": ExceptionTask()}


def get_task(name: str) -> Task:
    """The registered task called ``name``; KeyError listing the valid names otherwise."""
    try:
        return TASKS[name]
    except (KeyError, TypeError):
        raise KeyError(f"unknown task {name!r}; valid: {sorted(TASKS)}") from None


def load_task_data(task: str, source: str | Path, seed: int = 0, max_samples: int | None = None) -> TaskData:
    """A task's train/validation/test examples.

    ``source`` is ``"hub"`` (``datasets.load_dataset``; ``seed`` picks clone detection's 10% sample) or a
    folder holding ``<task>/train.jsonl``, ``<task>/validation.jsonl`` and ``<task>/test.jsonl``.
    ``max_samples`` keeps the first N examples of each split, for quick runs.
    """
    t = get_task(task)
    if isinstance(source, str) and source == "hub":
        return t.load_hub(seed=seed, max_samples=max_samples)
    folder = Path(source) / t.name
    if not folder.is_dir():
        raise FileNotFoundError(
            f"{folder}: no data folder for task '{t.name}' (source must be 'hub' or a folder holding "
            f"<task>/train.jsonl etc.; build one with `python -m tasks.build_local --out {source}`)"
        )
    return t.load_jsonl(folder, max_samples=max_samples)


__all__ = [
    "EXCEPTION_LABELS",
    "SPLITS",
    "TASKS",
    "CloneTask",
    "DefectTask",
    "Example",
    "ExceptionTask",
    "HubUnavailableError",
    "RecordError",
    "Task",
    "TaskData",
    "get_task",
    "load_task_data",
    "normalise_code",
    "sample_fraction",
]
