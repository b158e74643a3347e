"""BiGRU student: token embedding -> N bidirectional GRU layers -> dropout + linear classifier.

Features, as the KD methods read them (``kd_methods.StudentOutput``), for a model with N layers of H units per
direction and embedding width E:

- ``hidden_states[0]`` is the embedding output ``[B, T, E]``; ``hidden_states[l]`` (l = 1..N) is layer l's output
  ``[B, T, 2H]``, the forward and backward states of each position concatenated (forward first). Padding positions
  are zero in every layer (the padding embedding is zero and the GRUs run on packed sequences).
- ``cls_states[l]`` (l >= 1) is layer l's whole-sequence summary ``[B, 2H]``: concat(forward state at the last real
  token, backward state at position 0), i.e. each direction's final state, the usual BiGRU sentence encoding.
  ``cls_states[0]`` is position 0's embedding ``[B, E]`` (the ``<s>`` token), mirroring RoBERTa's layer 0.
- ``shape = ModelShape(N, 2H, embedding_size=E)`` (``embedding_size`` None when E == 2H): layer 0 is E wide, so a
  method that reads layer 0 sizes it from ``shape.embedding_width``.
- The classifier reads ``cls_states[N]``.

Each layer is its own ``nn.GRU`` (rather than one ``nn.GRU(num_layers=N)``) because the stacked module only exposes
the last layer's outputs, and the methods need every layer. Sequences are packed so that the padding a batch
happens to have never reaches the states: the same text gives the same features however much it is padded.
Padding must be on the right (``attention_mask`` a prefix of ones), which is how the student tokenizer pads.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch
from torch import Tensor, nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

from kd_methods.base import StudentOutput

if TYPE_CHECKING:
    from models.spec import StudentSpec


class BiGRUStudent(nn.Module):
    """``forward(input_ids, attention_mask) -> StudentOutput``; ``.shape``, ``.spec``."""

    def __init__(self, spec: StudentSpec, num_labels: int) -> None:
        super().__init__()
        if spec.arch != "bigru":
            raise ValueError(f"BiGRUStudent needs a 'bigru' spec, got arch '{spec.arch}' ({spec.name})")
        self.spec = spec
        self.num_labels = num_labels
        self.hidden_size = spec.hidden_size
        self.embedding = nn.Embedding(spec.vocab_size, spec.embed_dim, padding_idx=spec.pad_token_id)
        self.layers = nn.ModuleList(
            nn.GRU(
                input_size=spec.embed_dim if i == 0 else 2 * spec.hidden_size,
                hidden_size=spec.hidden_size,
                batch_first=True,
                bidirectional=True,
            )
            for i in range(spec.num_layers)
        )
        self.dropout = nn.Dropout(spec.dropout)
        self.classifier = nn.Linear(2 * spec.hidden_size, num_labels)
        self.shape = spec.model_shape()

    def forward(self, input_ids: Tensor, attention_mask: Tensor) -> StudentOutput:
        length = input_ids.shape[1]
        lengths = attention_mask.sum(dim=1)
        positions = torch.arange(length, device=attention_mask.device)
        if not torch.equal(attention_mask.bool(), positions[None, :] < lengths[:, None]):
            raise ValueError(
                "BiGRUStudent needs right padding: each attention_mask row must be ones then zeros"
            )
        # pack_padded_sequence rejects empty sequences; an all-padding row (never produced by the tokenizer, which
        # always adds <s> and </s>) is treated as holding its first token.
        lengths_cpu = lengths.clamp(min=1).cpu()

        embedded = self.embedding(input_ids)
        hidden_states: list[Tensor] = [embedded]
        cls_states: list[Tensor] = [embedded[:, 0]]
        x = embedded
        # The recurrence runs in float32 with autocast off. On CUDA, autocast runs cuDNN RNNs in float16 whatever
        # dtype it was given (bf16 included), and bf16 training has no loss scaling to keep fp16 from underflowing.
        with torch.autocast(device_type=input_ids.device.type, enabled=False):
            for gru in self.layers:
                packed = pack_padded_sequence(
                    self.dropout(x).float(), lengths_cpu, batch_first=True, enforce_sorted=False
                )
                out_packed, final = gru(packed)
                out, _ = pad_packed_sequence(out_packed, batch_first=True, total_length=length)
                # final is [2, B, H]: the forward direction's state after the last real token and the backward
                # direction's state after reaching position 0, already in the batch's original order.
                summary = torch.cat([final[0], final[1]], dim=-1)
                hidden_states.append(out)
                cls_states.append(summary)
                x = out

        logits = self.classifier(self.dropout(cls_states[-1]))
        return StudentOutput(
            logits=logits,
            hidden_states=tuple(hidden_states),
            cls_states=tuple(cls_states),
            attention_mask=attention_mask,
        )
