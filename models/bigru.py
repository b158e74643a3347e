"""BiGRU student, as the study authors build it (BackOnTruck/kd-empirical ``student-distill/*/model_gru.py``):
RoBERTa's embeddings (word + position + token type, LayerNorm, dropout) at the GRU width -> N bidirectional GRU
layers -> RoBERTa's classification head (dropout, dense 2H x 2H, tanh, dropout, out_proj) on the sequence summary.
The embeddings and the head are Hugging Face's own ``RobertaEmbeddings`` / ``RobertaClassificationHead``, initialised
as ``post_init`` initialises the authors' model (Linear and Embedding N(0, 0.02), LayerNorm 1 / 0; the GRUs keep
PyTorch's init). No dropout between GRU layers (the authors' one stacked ``nn.GRU`` has none).

Features, as the KD methods read them (``kd_methods.StudentOutput``), for a model with N layers of H units per
direction and embedding width E (the authors': E = H):

- ``hidden_states[0]`` is the embedding output ``[B, T, E]``; ``hidden_states[l]`` (l = 1..N) is layer l's output
  ``[B, T, 2H]``, the forward and backward states of each position concatenated (forward first). Padding positions
  are zero in layers 1..N (the GRUs run on packed sequences).
- ``cls_states[l]`` (l >= 1) is layer l's whole-sequence summary ``[B, 2H]``: concat(forward state at the last real
  token, backward state at position 0), i.e. each direction's final state, the usual BiGRU sentence encoding.
  (The authors read the forward state at the last *padded* position, as they do not pack: a documented
  deviation, docs/METHODS.md.) ``cls_states[0]`` is position 0's embedding ``[B, E]`` (the ``<s>`` token),
  mirroring RoBERTa's layer 0.
- ``shape = ModelShape(N, 2H, embedding_size=E)`` (``embedding_size`` None when E == 2H): layer 0 is E wide, so a
  method that reads layer 0 sizes it from ``shape.embedding_width``.
- The classifier reads ``cls_states[N]``.

Each layer is its own ``nn.GRU`` (rather than one ``nn.GRU(num_layers=N)``, which computes the same without
inter-layer dropout) because the stacked module only exposes the last layer's outputs, and the methods need every
layer. Sequences are packed so that the padding a batch happens to have never reaches the states: the same text
gives the same features however much it is padded. Padding must be on the right (``attention_mask`` a prefix of
ones), which is how the student tokenizer pads.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import torch
from torch import Tensor, nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

from kd_methods.base import StudentOutput

if TYPE_CHECKING:
    from models.spec import StudentSpec

INITIALIZER_RANGE = 0.02  # RobertaConfig's default, which the authors' post_init uses


def roberta_parts_config(spec: StudentSpec, num_labels: int, max_length: int) -> Any:
    """The RobertaConfig of the student's embeddings (E wide) and, with ``hidden_size`` doubled, its head."""
    from transformers import RobertaConfig

    return RobertaConfig(
        vocab_size=spec.vocab_size,
        hidden_size=spec.embed_dim,
        max_position_embeddings=max_length + spec.pad_token_id + 1,  # RoBERTa's positions start after <pad>
        type_vocab_size=1,
        pad_token_id=spec.pad_token_id,
        hidden_dropout_prob=spec.dropout,
        layer_norm_eps=1e-5,
        num_labels=num_labels,
    )


def _init_weights(module: nn.Module) -> None:
    """``RobertaPreTrainedModel._init_weights`` for the module kinds this model has besides its GRUs."""
    if isinstance(module, nn.Linear):
        nn.init.normal_(module.weight, std=INITIALIZER_RANGE)
        nn.init.zeros_(module.bias)
    elif isinstance(module, nn.Embedding):
        nn.init.normal_(module.weight, std=INITIALIZER_RANGE)
        if module.padding_idx is not None:
            with torch.no_grad():
                module.weight[module.padding_idx].zero_()
    elif isinstance(module, nn.LayerNorm):
        nn.init.ones_(module.weight)
        nn.init.zeros_(module.bias)


class BiGRUStudent(nn.Module):
    """``forward(input_ids, attention_mask) -> StudentOutput``; ``.shape``, ``.spec``."""

    def __init__(self, spec: StudentSpec, num_labels: int, max_length: int = 512) -> None:
        from transformers.models.roberta.modeling_roberta import RobertaClassificationHead, RobertaEmbeddings

        super().__init__()
        if spec.arch != "bigru":
            raise ValueError(f"BiGRUStudent needs a 'bigru' spec, got arch '{spec.arch}' ({spec.name})")
        self.spec = spec
        self.num_labels = num_labels
        self.hidden_size = spec.hidden_size
        config = roberta_parts_config(spec, num_labels, max_length)
        self.embeddings = RobertaEmbeddings(config)
        config.hidden_size = 2 * spec.hidden_size  # the head reads the 2H-wide summary, as the authors' does
        self.classifier = RobertaClassificationHead(config)
        self.layers = nn.ModuleList(
            nn.GRU(
                input_size=spec.embed_dim if i == 0 else 2 * spec.hidden_size,
                hidden_size=spec.hidden_size,
                batch_first=True,
                bidirectional=True,
            )
            for i in range(spec.num_layers)
        )
        self.embeddings.apply(_init_weights)
        self.classifier.apply(_init_weights)
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

        embedded = self.embeddings(input_ids=input_ids)  # positions from the padding, as RoBERTa's
        hidden_states: list[Tensor] = [embedded]
        cls_states: list[Tensor] = [embedded[:, 0]]
        x = embedded
        # The recurrence runs in float32 with autocast off. On CUDA, autocast runs cuDNN RNNs in float16 whatever
        # dtype it was given (bf16 included), and bf16 training has no loss scaling to keep fp16 from underflowing.
        with torch.autocast(device_type=input_ids.device.type, enabled=False):
            for gru in self.layers:
                packed = pack_padded_sequence(x.float(), lengths_cpu, batch_first=True, enforce_sorted=False)
                out_packed, final = gru(packed)
                out, _ = pad_packed_sequence(out_packed, batch_first=True, total_length=length)
                # final is [2, B, H]: the forward direction's state after the last real token and the backward
                # direction's state after reaching position 0, already in the batch's original order.
                summary = torch.cat([final[0], final[1]], dim=-1)
                hidden_states.append(out)
                cls_states.append(summary)
                x = out

        logits = self.classifier(cls_states[-1].unsqueeze(1))  # the head reads position 0 of its input
        return StudentOutput(
            logits=logits,
            hidden_states=tuple(hidden_states),
            cls_states=tuple(cls_states),
            attention_mask=attention_mask,
        )
