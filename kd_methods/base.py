"""What every KD method shares: the teacher signals it declares, the student outputs it reads, its registry.

A method declares *which* teacher signals it needs (``signals()``) separately from computing its loss
(``loss_terms()``, summed by ``loss()``), so the trainer can ask an online teacher or the teacher cache for exactly those tensors.

Layer indices follow Hugging Face's ``hidden_states`` convention for both models: 0 is the embedding output,
``i`` is the output of block ``i`` (1-based), so a 12-layer teacher has layers 0..12.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any, ClassVar

import torch
from torch import Tensor, nn

FAMILIES = ("none", "logit", "feature")


@dataclass(frozen=True)
class SignalSpec:
    """The teacher outputs a method reads: logits, [CLS] states of some layers, all token states of some layers."""

    logits: bool = False
    cls_layers: tuple[int, ...] = ()
    token_layers: tuple[int, ...] = ()

    def __post_init__(self) -> None:
        object.__setattr__(self, "cls_layers", tuple(sorted(set(self.cls_layers))))
        object.__setattr__(self, "token_layers", tuple(sorted(set(self.token_layers))))

    def union(self, other: SignalSpec) -> SignalSpec:
        return SignalSpec(
            logits=self.logits or other.logits,
            cls_layers=self.cls_layers + other.cls_layers,
            token_layers=self.token_layers + other.token_layers,
        )

    def covers(self, other: SignalSpec) -> bool:
        """True when every signal of ``other`` is also in ``self``."""
        return (
            (self.logits or not other.logits)
            and set(other.cls_layers) <= set(self.cls_layers)
            and set(other.token_layers) <= set(self.token_layers)
        )

    @property
    def empty(self) -> bool:
        return not (self.logits or self.cls_layers or self.token_layers)

    def key(self) -> str:
        """A stable text form, used in content-addressed cache keys."""
        cls = ",".join(map(str, self.cls_layers))
        tok = ",".join(map(str, self.token_layers))
        return f"logits={int(self.logits)};cls={cls};tokens={tok}"

    def to_dict(self) -> dict[str, Any]:
        return {
            "logits": self.logits,
            "cls_layers": list(self.cls_layers),
            "token_layers": list(self.token_layers),
        }


@dataclass
class TeacherSignals:
    """Teacher outputs for one batch, row ``b`` belonging to the batch's sample ``b``.

    ``tokens[l]`` is ``[B, N_t, H_t]`` over the teacher's own token positions; ``token_mask`` ``[B, N_t]`` marks the
    real (non-padding) ones. Student and teacher tokenizers differ, so token positions do not correspond; like the
    paper's authors we compare position by position over the positions both models have.
    """

    logits: Tensor | None = None
    cls: dict[int, Tensor] = field(default_factory=dict)
    tokens: dict[int, Tensor] = field(default_factory=dict)
    token_mask: Tensor | None = None
    # Extra tensors a cache may precompute for a method (e.g. CKD's teacher-side relations), keyed by name.
    extras: dict[str, Tensor] = field(default_factory=dict)

    def restrict(self, spec: SignalSpec) -> TeacherSignals:
        """Only the signals ``spec`` names; raises KeyError naming what is missing."""
        if spec.logits and self.logits is None:
            raise KeyError("teacher signals lack logits")
        missing_cls = [layer for layer in spec.cls_layers if layer not in self.cls]
        missing_tok = [layer for layer in spec.token_layers if layer not in self.tokens]
        if missing_cls or missing_tok:
            raise KeyError(f"teacher signals lack cls layers {missing_cls} / token layers {missing_tok}")
        return TeacherSignals(
            logits=self.logits if spec.logits else None,
            cls={layer: self.cls[layer] for layer in spec.cls_layers},
            tokens={layer: self.tokens[layer] for layer in spec.token_layers},
            token_mask=self.token_mask if spec.token_layers else None,
            extras=dict(self.extras),
        )

    def map(self, fn: Callable[[Tensor], Tensor]) -> TeacherSignals:
        """The same signals with ``fn`` applied to every tensor (the one walk over the fields: moves, pinning)."""
        return TeacherSignals(
            logits=None if self.logits is None else fn(self.logits),
            cls={k: fn(v) for k, v in self.cls.items()},
            tokens={k: fn(v) for k, v in self.tokens.items()},
            token_mask=None if self.token_mask is None else fn(self.token_mask),
            extras={k: fn(v) for k, v in self.extras.items()},
        )

    def tensors(self) -> list[Tensor]:
        """Every tensor the signals hold."""
        found = [
            self.logits,
            self.token_mask,
            *self.cls.values(),
            *self.tokens.values(),
            *self.extras.values(),
        ]
        return [t for t in found if t is not None]

    def to(self, device: torch.device | str, dtype: torch.dtype = torch.float32) -> TeacherSignals:
        return self.map(lambda t: t.to(device=device, dtype=dtype) if t.is_floating_point() else t.to(device))


@dataclass
class StudentOutput:
    """What a student's forward pass returns, the same for RoBERTa and BiGRU students.

    ``hidden_states[l]`` is ``[B, N, H]`` for l = 0 (embedding output) .. L; ``cls_states[l]`` is ``[B, H]``, the
    layer's sequence summary (RoBERTa: the ``<s>`` position; BiGRU: see models/bigru.py).
    """

    logits: Tensor
    hidden_states: tuple[Tensor, ...]
    cls_states: tuple[Tensor, ...]
    attention_mask: Tensor


@dataclass(frozen=True)
class ModelShape:
    """The sizes a method needs to build its layer map and projections.

    ``hidden_size`` is the width of the outputs of layers 1..L (a BiGRU's is 2 x its per-direction size);
    ``embedding_size`` is the width of layer 0 (the embedding output) when it differs (a BiGRU's E), else None.
    """

    num_layers: int
    hidden_size: int
    embedding_size: int | None = None

    @property
    def embedding_width(self) -> int:
        """Width of ``hidden_states[0]``."""
        return self.hidden_size if self.embedding_size is None else self.embedding_size


def layer_map(student_layers: int, teacher_layers: int) -> list[int]:
    """Teacher layer matched to each student layer 1..S: round(i * T / S), as in PKD/CKD (i*12/L_s for 12 layers)."""
    if student_layers < 1 or teacher_layers < 1:
        raise ValueError(
            f"layer counts must be positive, got student={student_layers} teacher={teacher_layers}"
        )
    return [max(1, round(i * teacher_layers / student_layers)) for i in range(1, student_layers + 1)]


class KDMethod(nn.Module, ABC):
    """Base class: a method is an ``nn.Module`` so that its own trainable parts (e.g. PKD's projection) are trained
    with the student. Subclasses set ``name``, ``family`` and ``defaults`` and implement ``signals`` and ``loss_terms``
    (``loss`` is their sum)."""

    name: ClassVar[str] = ""
    family: ClassVar[str] = "none"
    defaults: ClassVar[dict[str, Any]] = {}
    # A method whose memory needs smaller batches than the study's caps them (a study's plan reads it).
    batch_size_cap: ClassVar[int | None] = None

    def __init__(self, student: ModelShape, teacher: ModelShape | None = None, **params: Any) -> None:
        super().__init__()
        unknown = sorted(set(params) - set(self.defaults))
        if unknown:
            raise ValueError(
                f"unknown hyperparameter(s) {unknown} for method '{self.name}'; valid: {sorted(self.defaults)}"
            )
        self.params: dict[str, Any] = {**self.defaults, **params}
        self.student_shape = student
        self.teacher_shape = teacher
        if self.needs_teacher and teacher is None:
            raise ValueError(f"method '{self.name}' needs a teacher")

    @property
    def needs_teacher(self) -> bool:
        return self.family != "none"

    @abstractmethod
    def signals(self) -> SignalSpec:
        """The teacher signals ``loss`` reads (empty for FT)."""

    def cache_needs(self) -> tuple[SignalSpec, DerivedRequest | None]:
        """What this method reads from a teacher cache: stored signals, and numbers derived from the teacher's
        token states in their place (a registered ``DerivedSignal``; CKD's Gram numbers). The cache builds and
        serves them without knowing the method. Default: ``signals()`` as they are."""
        return self.signals(), None

    @abstractmethod
    def loss_terms(
        self, student: StudentOutput, teacher: TeacherSignals | None, labels: Tensor
    ) -> dict[str, Tensor]:
        """The method's loss for one batch as named scalar terms, each already multiplied by its weight, so that
        their sum is ``loss()``; reads exactly ``signals()`` of ``teacher``. Terms whose weight is 0 are left out.
        ``kd_methods.diagnostics.term_breakdown`` reads them to compare the terms' sizes and gradients."""

    def loss(self, student: StudentOutput, teacher: TeacherSignals | None, labels: Tensor) -> Tensor:
        """The method's loss for one batch: the sum of ``loss_terms``."""
        terms = list(self.loss_terms(student, teacher, labels).values())
        if not terms:
            raise RuntimeError(f"method '{self.name}' returned no loss terms")
        total = terms[0]
        for term in terms[1:]:
            total = total + term
        return total


METHODS: dict[str, type[KDMethod]] = {}


def register(cls: type[KDMethod]) -> type[KDMethod]:
    """Class decorator: make a method available by its ``name``."""
    if not cls.name:
        raise ValueError(f"{cls.__name__} has no name")
    if cls.family not in FAMILIES:
        raise ValueError(f"{cls.__name__}.family must be one of {FAMILIES}")
    METHODS[cls.name] = cls
    return cls


def get_method(name: str) -> type[KDMethod]:
    try:
        return METHODS[name.lower()]
    except KeyError:
        raise KeyError(f"unknown KD method '{name}'; valid: {sorted(METHODS)}") from None


def build_method(
    name: str, student: ModelShape, teacher: ModelShape | None = None, **params: Any
) -> KDMethod:
    return get_method(name)(student, teacher, **params)


# ---------------------------------------------------------------------------------------------------------------
# Derived teacher signals: what a cache stores in place of token states for a method that asks (``cache_needs``)


@dataclass(frozen=True)
class DerivedRequest:
    """Numbers of the registered ``DerivedSignal`` ``kind``, over the teacher layers of each reader (one tuple per
    reader, 0 = embeddings, in the reader's order, repeats kept), shaped by ``params`` (e.g. a window)."""

    kind: str
    layer_sets: tuple[tuple[int, ...], ...]
    params: tuple[tuple[str, Any], ...] = ()

    def __post_init__(self) -> None:
        object.__setattr__(self, "layer_sets", tuple(sorted({tuple(s) for s in self.layer_sets})))
        object.__setattr__(self, "params", tuple(sorted(self.params)))

    @property
    def layers(self) -> list[int]:
        """Every teacher layer a reader maps to: what the cache computes the numbers over."""
        return sorted(set().union(*[set(s) for s in self.layer_sets]))

    def param(self, name: str) -> Any:
        return dict(self.params)[name]


class DerivedSignal(ABC):
    """How a cache builds, stores, sizes and serves one kind of derived teacher signal. Its ``fields`` are
    token-level float32 arrays; ``serve`` turns the stored rows of a batch into the extras the method reads."""

    kind: ClassVar[str] = ""
    fields: ClassVar[tuple[str, ...]] = ()

    @abstractmethod
    def build(self, states: list[Tensor], request: DerivedRequest) -> dict[str, Tensor]:
        """The stored fields from the teacher's token states of ``request.layers`` (each ``[B, N, H]``)."""

    @abstractmethod
    def serve(
        self, fields: dict[str, Tensor], positions: list[int], request: DerivedRequest
    ) -> dict[str, Tensor]:
        """The method's extras from a batch's stored fields; ``positions`` index the reader's layers among the
        stored ones."""

    @abstractmethod
    def values_per_token(self, request: DerivedRequest) -> int:
        """Float32 numbers stored per token (for a cache's size before it is built)."""

    @abstractmethod
    def key_entries(self, request: DerivedRequest | None) -> dict[str, Any]:
        """What the cache's content key records of ``request`` (None: the kind is not requested)."""

    @abstractmethod
    def manifest_entries(self, request: DerivedRequest | None) -> dict[str, Any]:
        """What a cache's manifest records of ``request``; ``from_manifest`` reads it back."""

    @abstractmethod
    def from_manifest(self, entries: dict[str, Any]) -> DerivedRequest | None:
        """The request a manifest's ``request`` entries describe, or None."""


DERIVED_SIGNALS: dict[str, DerivedSignal] = {}


def register_signal(cls: type[DerivedSignal]) -> type[DerivedSignal]:
    """Class decorator: make a derived signal available to the cache by its ``kind``."""
    if not cls.kind or not cls.fields:
        raise ValueError(f"{cls.__name__} needs a kind and its fields")
    DERIVED_SIGNALS[cls.kind] = cls()
    return cls


def merge_derived(requests: Iterable[DerivedRequest | None]) -> tuple[DerivedRequest, ...]:
    """One request per (kind, params), holding every reader's layer set: what one cache serves them all from."""
    merged: dict[tuple[str, tuple[tuple[str, Any], ...]], set[tuple[int, ...]]] = {}
    for r in requests:
        if r is not None:
            merged.setdefault((r.kind, r.params), set()).update(r.layer_sets)
    return tuple(DerivedRequest(k, tuple(merged[(k, p)]), p) for k, p in sorted(merged, key=repr))
