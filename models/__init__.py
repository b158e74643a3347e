"""Students (RoBERTa, BiGRU), their byte-level BPE tokenizers, and teachers wrapping Hugging Face classifiers."""

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

__all__ = [
    "SPECIAL_TOKENS",
    "STUDENTS",
    "ModelNotAvailableError",
    "StudentSpec",
    "StudentTokenizer",
    "Teacher",
    "build_student",
    "count_parameters",
    "create_random_teacher",
    "get_student_spec",
    "get_student_tokenizer",
    "minilm_path",
    "nominal_params_from_name",
    "resolve_input_form",
    "student_param_count",
    "train_bpe",
]
