"""GPT-2 students for the completion study: 4-12 layers at the teacher's width, three initialisations.

Students (``LM_STUDENTS``, names a study factor can use): ``gpt2-4l``, ``gpt2-6l``, ``gpt2-8l``, ``gpt2-10l``,
``gpt2-12l``, plus ``gpt2-1l`` and ``gpt2-2l`` for tests. A student copies the teacher's config (vocabulary, width,
heads, ``n_positions``) and changes only the layer count, so the students are the teacher's shape but shallower, as
HF's DistilGPT2 ``train.py`` asserts (vocab, hidden size and positions equal).

Initialisation (``student_init``, a factor of its own):

- ``random``: GPT-2's own initialisation (seed with ``torch.manual_seed`` first).
- ``teacher_layers``: the DistilBERT/DistilGPT2 recipe (HF ``distillation/scripts/extract.py``): token and position
  embeddings, ``ln_f`` and the output head copied from the teacher, and block ``i`` of the student from teacher block
  ``round(i * (T - 1) / (L - 1))`` (Python's round, half to even; both ends kept). For 6 of 12 this is
  ``[0, 2, 4, 7, 9, 11]``, exactly extract.py's hard-coded list (not strictly "every other layer"); 4 of 12 gives
  ``[0, 4, 7, 11]``, 8 of 12 ``[0, 2, 3, 5, 6, 8, 9, 11]``, 10 of 12 ``[0, 1, 2, 4, 5, 6, 7, 9, 10, 11]``, 12 of 12
  the identity. Not PKD's ``layer_map`` (``kd_methods.base``), which is 1-based and drops block 0.
- ``pretrained:<folder>``: a causal-LM checkpoint (e.g. a GPT-2 already trained on code, the poster's
  "Pretrained-Weights" variant); its layer count replaces the name's, and its vocabulary must equal the teacher's
  (a study refuses a hub id when it is checked: no hub GPT-2 has CodeXGLUE's added tokens).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from torch import Tensor, nn
from transformers import GPT2Config, GPT2LMHeadModel

from kd_methods.base import ModelShape, StudentOutput

LM_STUDENTS: dict[str, int] = {f"gpt2-{n}l": n for n in (1, 2, 4, 6, 8, 10, 12)}
INITS = ("random", "teacher_layers", "pretrained:<folder>")


def get_lm_student_layers(name: str) -> int:
    try:
        return LM_STUDENTS[name.lower()]
    except KeyError:
        raise KeyError(f"unknown GPT-2 student '{name}'; valid: {sorted(LM_STUDENTS, key=len)}") from None


@dataclass(frozen=True)
class StudentInit:
    """A parsed ``student_init``: ``kind`` in random/teacher_layers/pretrained, ``source`` for pretrained."""

    kind: str
    source: str | None = None

    @classmethod
    def parse(cls, text: str) -> StudentInit:
        if text in ("random", "teacher_layers"):
            return cls(text)
        match = re.fullmatch(r"pretrained:(.+)", text)
        if match:
            return cls("pretrained", match.group(1).strip())
        raise ValueError(f"unknown student_init '{text}'; valid: {list(INITS)}")


def teacher_block_indices(student_layers: int, teacher_layers: int) -> list[int]:
    """Teacher block (0-based) copied into each student block: ``round(i * (T - 1) / (L - 1))``, ends kept."""
    if not 1 <= student_layers <= teacher_layers:
        raise ValueError(
            f"a student initialised from teacher layers needs 1..{teacher_layers} layers, got {student_layers}"
        )
    if student_layers == 1:
        return [0]
    return [round(i * (teacher_layers - 1) / (student_layers - 1)) for i in range(student_layers)]


def check_vocab(student_vocab: int, teacher_vocab: int, where: str = "student") -> None:
    """Distillation compares distributions token by token: both vocabularies must be the same size."""
    if student_vocab != teacher_vocab:
        raise ValueError(
            f"{where} vocabulary has {student_vocab} tokens but the teacher's has {teacher_vocab}: distil needs "
            "the same vocabulary (use the teacher's tokenizer and resize the student's embeddings to it)"
        )


class GPT2Student(nn.Module):
    """A ``GPT2LMHeadModel`` behind the student interface: ``forward(ids, mask) -> StudentOutput``.

    ``logits`` ``[B, N, V]`` (position n predicts token n + 1), ``hidden_states`` ``L + 1`` states, the last after
    ``ln_f`` (what the head reads); ``cls_states`` is empty (no sequence summary in a causal LM)."""

    def __init__(self, model: GPT2LMHeadModel, name: str, init: str) -> None:
        super().__init__()
        self.model = model
        self.name = name
        self.init = init
        cfg = model.config
        self.shape = ModelShape(num_layers=int(cfg.n_layer), hidden_size=int(cfg.n_embd))

    @property
    def vocab_size(self) -> int:
        return int(self.model.config.vocab_size)

    def forward(self, input_ids: Tensor, attention_mask: Tensor) -> StudentOutput:
        out = self.model(input_ids=input_ids, attention_mask=attention_mask, output_hidden_states=True)
        return StudentOutput(out.logits, tuple(out.hidden_states), (), attention_mask)


def _copy_teacher_layers(student: GPT2LMHeadModel, teacher: nn.Module) -> list[int]:
    """Copy embeddings, the mapped blocks, ln_f and the head from ``teacher`` (a GPT-2) by state-dict prefix, so
    checkpoints with or without the old ``attn.bias`` buffer both work. Returns the teacher blocks used."""
    t_state = teacher.state_dict()
    s_state = student.state_dict()
    blocks = teacher_block_indices(student.config.n_layer, teacher.config.n_layer)
    mapped: dict[str, Tensor] = {}
    for key in s_state:
        match = re.fullmatch(r"transformer\.h\.(\d+)\.(.+)", key)
        source = f"transformer.h.{blocks[int(match.group(1))]}.{match.group(2)}" if match else key
        if source not in t_state:
            raise KeyError(f"teacher checkpoint lacks '{source}' needed for student parameter '{key}'")
        mapped[key] = t_state[source].detach().clone()
    student.load_state_dict(mapped)
    return blocks


def build_gpt2_student(
    name: str, teacher_model: nn.Module, student_init: str = "random", trust_remote_code: bool = False
) -> GPT2Student:
    """A student named in ``LM_STUDENTS`` shaped after ``teacher_model`` (a ``GPT2LMHeadModel``), initialised by
    ``student_init``. Raises ValueError (one line) on a non-GPT-2 teacher, too many layers or a vocabulary
    mismatch."""
    init = StudentInit.parse(student_init)
    t_cfg: Any = teacher_model.config
    if t_cfg.model_type != "gpt2":
        raise ValueError(
            f"GPT-2 students need a GPT-2 teacher (same config family), got model_type '{t_cfg.model_type}'"
        )
    layers = get_lm_student_layers(name)
    if init.kind == "pretrained":
        from models.lm_teacher import LMTeacher

        loaded = LMTeacher.load(init.source or "", trust_remote_code=trust_remote_code).model
        if loaded.config.model_type != "gpt2":
            raise ValueError(f"student_init '{student_init}': not a GPT-2 checkpoint")
        check_vocab(
            int(loaded.config.vocab_size), int(t_cfg.vocab_size), f"pretrained student '{init.source}'"
        )
        if loaded.config.n_embd != t_cfg.n_embd:
            raise ValueError(
                f"pretrained student '{init.source}' is {loaded.config.n_embd} wide, the teacher {t_cfg.n_embd}"
            )
        return GPT2Student(loaded, f"gpt2-{loaded.config.n_layer}l", student_init)
    if layers > t_cfg.n_layer:
        raise ValueError(f"student '{name}' has {layers} layers, more than the teacher's {t_cfg.n_layer}")
    config = GPT2Config.from_dict({**t_cfg.to_dict(), "n_layer": layers})
    model = GPT2LMHeadModel(config)
    if init.kind == "teacher_layers":
        _copy_teacher_layers(model, teacher_model)
    check_vocab(int(model.config.vocab_size), int(teacher_model.get_output_embeddings().weight.shape[0]))
    return GPT2Student(model, name, student_init)


def model_size_mb(model: nn.Module) -> float:
    """Bytes of the parameters and buffers as stored (a tied tensor once: ``parameters()`` yields it once), in MB
    (10^6 bytes). Works on the ``meta`` device."""
    tensors = {id(t): t for t in [*model.parameters(), *model.buffers()]}
    return sum(t.numel() * t.element_size() for t in tensors.values()) / 1e6
