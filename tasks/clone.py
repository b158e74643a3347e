"""Clone detection (CodeXGLUE / BigCloneBench): are these two Java methods clones? Scored by F1 and accuracy.

As in CodeXGLUE, training and validation use a seeded 10% sample of the (very large) hub splits; test uses all
of it. The sample's seed is the study's data seed (``load_task_data(..., data_seed=...)``), the same for every
trial, so a teacher cache built once fits every seed's trials. A local folder holds either pre-joined pairs
(``train.jsonl`` etc. with ``func1``/``func2``/``label``, read whole, as before) or CodeXGLUE's official files
(``data.jsonl`` + ``train.txt``/``valid.txt``/``test.txt``), sampled by the same rule (tasks/clone_official.py).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

import tasks.clone_official as clone_official
from tasks.base import BinaryTask, TaskData, sample_fraction

HUB_SAMPLE_FRACTION = 0.1


class CloneTask(BinaryTask):
    name = "clone"
    language = "java"
    family = "c_java"
    label_names = ("not_clone", "clone")
    hf_id = "google/code_x_glue_cc_clone_detection_big_clone_bench"
    hf_config = None
    code_field = "func1"
    code2_field = "func2"
    label_field = "label"
    headline_metric = "f1"
    id_fields = (
        "id1",
        "id2",
    )  # BigCloneBench's ids of the two methods (hub columns; an HF export keeps them)

    def hub_rows(self, split: str, n_rows: int, data_seed: int) -> np.ndarray | None:
        if split == "test":
            return None
        return sample_fraction(n_rows, HUB_SAMPLE_FRACTION, data_seed)

    def official_layout(self, folder: str | Path) -> bool:
        return clone_official.is_official(Path(folder))

    def data_files(self, folder: str | Path) -> dict[str, Path | None]:
        if self.official_layout(folder):
            return clone_official.official_files(Path(folder))
        return super().data_files(folder)

    def missing_files(self, folder: str | Path) -> list[str]:
        if self.official_layout(folder):
            return clone_official.missing_files(Path(folder))
        return super().missing_files(folder)

    def layout_hint(self, folder: str | Path) -> str:
        return "" if self.official_layout(folder) else clone_official.LAYOUT_HINT

    def local_sizes(self, folder: str | Path) -> dict[str, int] | None:
        return clone_official.official_sizes(self, Path(folder)) if self.official_layout(folder) else None

    def official_problem(self, folder: str | Path) -> str | None:
        return clone_official.official_problem(Path(folder))

    def load_jsonl(
        self, directory: str | Path, max_samples: int | None = None, data_seed: int = 0
    ) -> TaskData:
        if self.official_layout(directory):
            return clone_official.load_official(self, Path(directory), data_seed, max_samples)
        return super().load_jsonl(directory, max_samples, data_seed)
