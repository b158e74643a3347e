"""RoBERTa student: a randomly initialised ``RobertaForSequenceClassification`` behind the common student interface.

Features, as the KD methods read them (``kd_methods.StudentOutput``): ``hidden_states`` is Hugging Face's tuple
(embedding output, then the output of each of the ``num_layers`` blocks, each ``[B, N, hidden]``); ``cls_states[l]``
is position 0 (the ``<s>`` token) of ``hidden_states[l]``.

Special ids follow the student tokenizer (``models/tokenizer.py``): ``<s>`` 0, ``<pad>`` 1, ``</s>`` 2. RoBERTa
numbers positions from ``pad_token_id + 1``, so ``max_length`` tokens need ``max_length + 2`` position embeddings.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from torch import Tensor, nn
from transformers import RobertaConfig, RobertaForSequenceClassification

from kd_methods.base import StudentOutput

if TYPE_CHECKING:
    from models.spec import StudentSpec

BOS_ID = 0
PAD_ID = 1
EOS_ID = 2


def roberta_config(spec: StudentSpec, num_labels: int, max_length: int = 512) -> RobertaConfig:
    """The Hugging Face config of a student spec (also used to count parameters without building the model)."""
    return RobertaConfig(
        vocab_size=spec.vocab_size,
        hidden_size=spec.hidden_size,
        num_hidden_layers=spec.num_layers,
        num_attention_heads=spec.num_heads,
        intermediate_size=spec.intermediate_size,
        hidden_dropout_prob=spec.dropout,
        attention_probs_dropout_prob=spec.dropout,
        max_position_embeddings=max_length + PAD_ID + 1,
        type_vocab_size=1,
        pad_token_id=PAD_ID,
        bos_token_id=BOS_ID,
        eos_token_id=EOS_ID,
        num_labels=num_labels,
    )


class RobertaStudent(nn.Module):
    """``forward(input_ids, attention_mask) -> StudentOutput``; ``.shape``, ``.spec``, ``.model`` (the HF model)."""

    def __init__(self, spec: StudentSpec, num_labels: int, max_length: int = 512) -> None:
        super().__init__()
        if spec.arch != "roberta":
            raise ValueError(f"RobertaStudent needs a 'roberta' spec, got arch '{spec.arch}' ({spec.name})")
        self.spec = spec
        self.num_labels = num_labels
        self.max_length = max_length
        self.config = roberta_config(spec, num_labels, max_length)
        self.model = RobertaForSequenceClassification(self.config)
        self.shape = spec.model_shape()

    def forward(self, input_ids: Tensor, attention_mask: Tensor) -> StudentOutput:
        out = self.model(input_ids=input_ids, attention_mask=attention_mask, output_hidden_states=True)
        return hf_student_output(out, attention_mask)


def hf_student_output(out: Any, attention_mask: Tensor) -> StudentOutput:
    """A Hugging Face sequence-classification output (with hidden states) as a ``StudentOutput``: the [CLS]
    summary of each layer is its first position. Shared by the RoBERTa students and the teachers."""
    hidden_states = tuple(out.hidden_states)
    return StudentOutput(
        logits=out.logits,
        hidden_states=hidden_states,
        cls_states=tuple(h[:, 0] for h in hidden_states),
        attention_mask=attention_mask,
    )
