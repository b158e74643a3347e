"""KD methods, one per file, registered by name. A new method is one file plus one import line here."""

# Importing a method's module registers it (@register); add a new method's module to this line.
from kd_methods import ckd, ckd_cache, dist, distil, ft, kd, pkd  # noqa: F401
from kd_methods.base import (
    DERIVED_SIGNALS,
    METHODS,
    DerivedRequest,
    DerivedSignal,
    KDMethod,
    ModelShape,
    SignalSpec,
    StudentOutput,
    TeacherSignals,
    build_method,
    get_method,
    layer_map,
    merge_derived,
    register,
    register_signal,
)

__all__ = [
    "DERIVED_SIGNALS",
    "METHODS",
    "DerivedRequest",
    "DerivedSignal",
    "KDMethod",
    "ModelShape",
    "SignalSpec",
    "StudentOutput",
    "TeacherSignals",
    "build_method",
    "get_method",
    "layer_map",
    "merge_derived",
    "register",
    "register_signal",
]
