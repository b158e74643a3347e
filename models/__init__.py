"""Students (RoBERTa, BiGRU; GPT-2 for the completion study), their tokenizers, and teachers wrapping Hugging Face
classifiers and causal LMs."""

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

__all__ = [
    "LM_STUDENTS",
    "SPECIAL_TOKENS",
    "STUDENTS",
    "GPT2Student",
    "LMTeacher",
    "ModelNotAvailableError",
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
