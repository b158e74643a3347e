"""CKD's teacher side in a cache: Gram numbers instead of token states (``teacher_grams``), its relations derived
from them per batch on the training device (``relations_from_grams``). Registered as the derived signal ``ckd``:
``CKD.cache_needs`` asks for it, and the cache builds, sizes and serves it through this class alone."""

from __future__ import annotations

from typing import Any, ClassVar

from torch import Tensor

from kd_methods.base import DerivedRequest, DerivedSignal, register_signal
from kd_methods.ckd_relations import relations_from_grams, teacher_grams

DEFAULT_WINDOW = 10  # what a manifest written before the window was recorded means (the CKD default)


@register_signal
class CKDGrams(DerivedSignal):
    """Per token and stored layer the banded Gram (4w+1 numbers) and the layer Gram (L x L), float32."""

    kind: ClassVar[str] = "ckd"
    fields: ClassVar[tuple[str, ...]] = ("ckd.band", "ckd.layer_gram")

    def build(self, states: list[Tensor], request: DerivedRequest) -> dict[str, Tensor]:
        bands, gram = teacher_grams([s.float() for s in states], int(request.param("window")))
        return {"ckd.band": bands, "ckd.layer_gram": gram}

    def serve(
        self, fields: dict[str, Tensor], positions: list[int], request: DerivedRequest
    ) -> dict[str, Tensor]:
        window = int(request.param("window"))
        rel = relations_from_grams(fields["ckd.band"], fields["ckd.layer_gram"], positions, window)
        return {f"ckd.{name}": value for name, value in rel.items()}

    def values_per_token(self, request: DerivedRequest) -> int:
        k = len(request.layers)
        return k * (4 * int(request.param("window")) + 1) + k * k

    # The names a cache has always recorded CKD under, so existing caches keep their keys and manifests.
    def key_entries(self, request: DerivedRequest | None) -> dict[str, Any]:
        if request is None:
            return {"ckd": [], "window": None}
        return {"ckd": [list(s) for s in request.layer_sets], "window": request.param("window")}

    def manifest_entries(self, request: DerivedRequest | None) -> dict[str, Any]:
        if request is None:
            return {"ckd_layer_sets": [], "ckd_window": DEFAULT_WINDOW}
        return {
            "ckd_layer_sets": [list(s) for s in request.layer_sets],
            "ckd_window": request.param("window"),
        }

    def from_manifest(self, entries: dict[str, Any]) -> DerivedRequest | None:
        sets = entries.get("ckd_layer_sets") or []
        if not sets:
            return None
        window = int(entries.get("ckd_window", DEFAULT_WINDOW))
        return DerivedRequest(self.kind, tuple(tuple(s) for s in sets), (("window", window),))
