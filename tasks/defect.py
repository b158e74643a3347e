"""Defect detection (CodeXGLUE / Devign): is this C function vulnerable? Two classes, scored by accuracy and F1."""

from __future__ import annotations

from tasks.base import BinaryTask


class DefectTask(BinaryTask):
    name = "defect"
    language = "c"
    family = "c_java"
    label_names = ("clean", "defective")
    hf_id = "google/code_x_glue_cc_defect_detection"
    hf_config = None
    code_field = "func"
    label_field = "target"
    id_fields = ("idx",)  # Devign's own id (CodeXGLUE's files), carried into the test predictions
