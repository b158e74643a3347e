"""Clone detection (CodeXGLUE / BigCloneBench): are these two Java methods clones? Scored by F1 and accuracy.

As in CodeXGLUE, training and validation use a seeded 10% sample of the (very large) hub splits; test uses all
of it.
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

    def hub_rows(self, split: str, n_rows: int, seed: int) -> np.ndarray | None:
        if split == "test":
            return None
        return sample_fraction(n_rows, HUB_SAMPLE_FRACTION, seed)
