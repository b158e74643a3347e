"""Students (RoBERTa, BiGRU; GPT-2 for the completion study), their tokenizers, and teachers wrapping Hugging Face
classifiers and causal LMs.

The names below are imported on first use (PEP 562), not with the package: the study driver reads the student
registry to plan a study, and importing torch and transformers for that cost it 3.5 s per command (``--plan``,
``--status``, every study start). ``from models import build_student`` works as before.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

# name -> the module that defines it
_WHERE = {
    "LM_STUDENTS": "models.gpt2_student",
    "GPT2Student": "models.gpt2_student",
    "build_gpt2_student": "models.gpt2_student",
    "teacher_block_indices": "models.gpt2_student",
    "LMTeacher": "models.lm_teacher",
    "create_random_gpt2_teacher": "models.lm_teacher",
    "StudentSpec": "models.spec",
    "STUDENTS": "models.students",
    "build_student": "models.students",
    "count_parameters": "models.students",
    "get_student_spec": "models.students",
    "nominal_params_from_name": "models.students",
    "student_param_count": "models.students",
    "ModelNotAvailableError": "models.offline",
    "Teacher": "models.teacher",
    "create_random_teacher": "models.teacher",
    "minilm_path": "models.offline",
    "resolve_input_form": "models.teacher",
    "SPECIAL_TOKENS": "models.tokenizer",
    "StudentTokenizer": "models.tokenizer",
    "get_student_tokenizer": "models.tokenizer",
    "train_bpe": "models.tokenizer",
}

__all__ = [
    "GPT2Student",
    "LMTeacher",
    "LM_STUDENTS",
    "ModelNotAvailableError",
    "SPECIAL_TOKENS",
    "STUDENTS",
    "StudentSpec",
    "StudentTokenizer",
    "Teacher",
    "build_gpt2_student",
    "build_student",
    "count_parameters",
    "create_random_gpt2_teacher",
    "create_random_teacher",
    "get_student_spec",
    "get_student_tokenizer",
    "minilm_path",
    "nominal_params_from_name",
    "resolve_input_form",
    "student_param_count",
    "teacher_block_indices",
    "train_bpe",
]


def __getattr__(name: str) -> Any:
    module = _WHERE.get(name)
    if module is None:
        raise AttributeError(f"module 'models' has no attribute '{name}'")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value  # later lookups skip this function
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_WHERE))


if TYPE_CHECKING:  # what type checkers and editors see
    from models.gpt2_student import LM_STUDENTS, GPT2Student, build_gpt2_student, teacher_block_indices
    from models.lm_teacher import LMTeacher, create_random_gpt2_teacher
    from models.spec import StudentSpec
    from models.students import (
        STUDENTS,
        build_student,
        count_parameters,
        get_student_spec,
        nominal_params_from_name,
        student_param_count,
    )
    from models.teacher import (
        ModelNotAvailableError,
        Teacher,
        create_random_teacher,
        minilm_path,
        resolve_input_form,
    )
    from models.tokenizer import SPECIAL_TOKENS, StudentTokenizer, get_student_tokenizer, train_bpe
