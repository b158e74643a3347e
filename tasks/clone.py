"""Clone detection (CodeXGLUE / BigCloneBench): are these two Java methods clones? Scored by F1 and accuracy.

As in CodeXGLUE, training and validation use a seeded 10% sample of the (very large) hub splits; test uses all
of it. The sample's seed is the study's data seed (``load_task_data(..., data_seed=...)``), the same for every
trial, so a teacher cache built once fits every seed's trials.
"""

from __future__ import annotations

import numpy as np

from tasks.base import BinaryTask, sample_fraction

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

    def hub_rows(self, split: str, n_rows: int, data_seed: int) -> np.ndarray | None:
        if split == "test":
            return None
        return sample_fraction(n_rows, HUB_SAMPLE_FRACTION, data_seed)
