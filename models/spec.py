"""A student's architecture as data (``StudentSpec``): what the registry lists and the model classes are built from.

Kept apart from the registry (``models/students.py``) so that the model modules can name it without importing
the registry, which imports them.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from kd_methods.base import ModelShape

ARCHS = ("roberta", "bigru")
# Part of a BiGRU trial's key: the BiGRU became the authors' model (RoBERTa embeddings and head, models/bigru.py) on
# 2026-12-07, so a study resumed after that trains its BiGRU trials again instead of counting the old model's runs.
BIGRU_LAYOUT = "kd-empirical"


@dataclass(frozen=True)
class StudentSpec:
    """A student's architecture. ``hidden_size`` is the model width for RoBERTa and the per-direction GRU width for
    the BiGRU (whose layer outputs are ``2 * hidden_size`` wide). ``nominal_params`` is the size in its name."""

    name: str
    arch: str
    vocab_size: int
    hidden_size: int
    num_layers: int
    num_heads: int = 0  # RoBERTa only
    intermediate_size: int = 0  # RoBERTa only
    embed_dim: int = 0  # BiGRU only (RoBERTa embeds at hidden_size)
    dropout: float = 0.1
    pad_token_id: int = 1  # the student tokenizer's <pad>
    nominal_params: int = 0

    def __post_init__(self) -> None:
        if self.arch not in ARCHS:
            raise ValueError(f"student '{self.name}': unknown arch '{self.arch}'; valid: {list(ARCHS)}")
        if min(self.vocab_size, self.hidden_size, self.num_layers) < 1:
            raise ValueError(
                f"student '{self.name}': vocab_size, hidden_size and num_layers must be positive"
            )
        if self.arch == "roberta":
            if self.num_heads < 1 or self.hidden_size % self.num_heads:
                raise ValueError(
                    f"student '{self.name}': hidden_size {self.hidden_size} must be a multiple of num_heads "
                    f"{self.num_heads}"
                )
            if self.intermediate_size < 1:
                raise ValueError(f"student '{self.name}': intermediate_size must be positive")
            # The PKD/CKD layer map i * 12 / L must hit whole teacher layers.
            if 12 % self.num_layers:
                raise ValueError(
                    f"student '{self.name}': RoBERTa layer count {self.num_layers} must divide 12"
                )
        elif self.embed_dim < 1:
            raise ValueError(f"student '{self.name}': a BiGRU needs a positive embed_dim")

    def model_shape(self) -> ModelShape:
        """The layer count and widths the KD methods see (``model.shape``): RoBERTa's outputs are ``hidden_size``
        wide; a BiGRU's layer outputs are ``2 * hidden_size`` and its layer 0 (the embedding) ``embed_dim``."""
        from kd_methods.base import ModelShape

        if self.arch == "roberta":
            return ModelShape(num_layers=self.num_layers, hidden_size=self.hidden_size)
        width = 2 * self.hidden_size
        return ModelShape(
            num_layers=self.num_layers,
            hidden_size=width,
            embedding_size=None if self.embed_dim == width else self.embed_dim,
        )

    def num_parameters(self, num_labels: int, max_length: int = 512) -> int:
        """The parameter count of the model built from this spec (``models.build_student``), from the architecture
        alone: the planner prices every trial without importing torch and transformers (seconds per study start).
        ``tests/test_models.py`` checks it against the built model for every registered student."""
        h, v = self.hidden_size, self.vocab_size
        if self.arch == "roberta":
            # RobertaForSequenceClassification: word, position (max_length + 2) and one token-type embedding plus
            # LayerNorm; per layer Q, K, V, O (H x H + H each), two LayerNorms and the FFN; the head's dense H x H
            # and out_proj H x labels (each with its bias). No pooler.
            i = self.intermediate_size
            embeddings = (v + max_length + self.pad_token_id + 1 + 1) * h + 2 * h
            layer = 4 * (h * h + h) + 2 * (2 * h) + (h * i + i) + (i * h + h)
            head = (h * h + h) + (h * num_labels + num_labels)
            return embeddings + self.num_layers * layer + head

        # BiGRU: RoBERTa's embeddings E wide (word, max_length + pad + 1 positions, one token type, LayerNorm), then
        # per layer two directions of a GRU (3 gates: W_ih, W_hh, b_ih, b_hh), the first reading E and the rest
        # 2 x hidden, and RoBERTa's head on 2 x hidden (dense 2H x 2H, out_proj 2H x labels, with biases).
        def gru(inputs: int) -> int:
            return 2 * (3 * h * inputs + 3 * h * h + 6 * h)

        e = self.embed_dim
        embeddings = (v + max_length + self.pad_token_id + 1 + 1) * e + 2 * e
        layers = gru(e) + (self.num_layers - 1) * gru(2 * h)
        head = (2 * h * 2 * h + 2 * h) + (2 * h * num_labels + num_labels)
        return embeddings + layers + head

    def to_dict(self) -> dict[str, object]:
        return dataclasses.asdict(self)
