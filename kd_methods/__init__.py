"""KD methods, one per file, registered by name. A new method is one file plus one import line here."""

from kd_methods.base import (
    METHODS,
    KDMethod,
    ModelShape,
    SignalSpec,
    StudentOutput,
    TeacherSignals,
    build_method,
    get_method,
    layer_map,
    register,
)

# Importing a method's module registers it.
from kd_methods import ckd, dist, ft, kd, pkd  # noqa: F401, E402  (after base: the modules import from it)

__all__ = [
    "METHODS",
    "KDMethod",
    "ModelShape",
    "SignalSpec",
    "StudentOutput",
    "TeacherSignals",
    "build_method",
    "get_method",
    "layer_map",
    "register",
]
