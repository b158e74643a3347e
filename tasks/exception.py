"""Exception type classification (CuBERT, ETH Py150 Open): which of 20 exception types does the masked handler
(``except __HOLE__:``) of this Python function catch? Scored by accuracy, top-3 accuracy and macro F1."""

from __future__ import annotations

from tasks.base import MulticlassTask

# CuBERT's 20 labels, in CuBERT's order (the class index is the position here).
EXCEPTION_LABELS: tuple[str, ...] = (
    "ValueError",
    "KeyError",
    "AttributeError",
    "TypeError",
    "OSError",
    "IOError",
    "ImportError",
    "IndexError",
    "DoesNotExist",
    "KeyboardInterrupt",
    "StopIteration",
    "AssertionError",
    "SystemExit",
    "RuntimeError",
    "HTTPError",
    "UnicodeDecodeError",
    "NotImplementedError",
    "ValidationError",
    "ObjectDoesNotExist",
    "NameError",
)


class ExceptionTask(MulticlassTask):
    name = "exception"
    language = "python"
    family = "python"
    label_names = EXCEPTION_LABELS
    hf_id = "claudios/cubert_ETHPy150Open"
    hf_config = "exception_datasets"
    code_field = "function"
    label_field = "label"
