"""The data a study trains on, resolved the same way by the run, ``--plan`` and ``--status`` (so trial keys agree).

``data: data/local`` (the default) names ``./data/local`` when that exists; otherwise the local real-code data is
built under the study's storage (``<storage>/data/local``), not in the current folder. A study whose tasks are all
declared in YAML (docs/OWN_DATA.md) reads only their own folders and builds nothing.
"""

from __future__ import annotations

from pathlib import Path

from orchestrator.sweep.spec import StudySpec

DEFAULT_DATA = "data/local"


def storage_data(spec: StudySpec) -> Path:
    return Path(spec.storage).resolve() / "data" / "local"


def resolve_spec_data(spec: StudySpec) -> StudySpec:
    """``spec`` with ``data`` pointing at the storage's copy when the default ``./data/local`` is absent."""
    if spec.data == DEFAULT_DATA and not Path(DEFAULT_DATA).exists() and not _all_custom(spec):
        return spec.model_copy(update={"data": str(storage_data(spec))})
    return spec


def study_data(spec: StudySpec, build: bool = True) -> str:
    """What trials receive as ``data``: ``hub`` or an absolute folder (built when it is the default and missing).

    Tune runs each trial in its own working folder, where a relative ``data/local`` would name another (freshly
    built) data set than the one the teachers were fine-tuned and cached on: hence absolute."""
    from orchestrator.train.trial import resolve_data

    if spec.data == "hub":
        return "hub"
    path = Path(spec.data)
    if _all_custom(spec):
        return str(path.resolve())  # never read: each declared task names its own folder
    if not path.exists() and build and path.resolve() == storage_data(spec):
        from tasks.build_local import build_local

        print(f"building local real-code data under {path} (python -m tasks.build_local)", flush=True)
        build_local(path)
    return str(Path(resolve_data(path)).resolve()) if build else str(path.resolve())


def _all_custom(spec: StudySpec) -> bool:
    from tasks import is_custom

    return all(is_custom(t) for t in spec.tasks)
