"""The one way in: ``load_spec`` reads a study (a built-in profile by name or a YAML file) of either kind, and
``build_plan`` expands it into typed units. A study's ``kind`` is ``completion`` when its YAML says
``task: completion`` (or ``kind: completion``), else ``classification``; everything downstream (driver, stages, trial
wrapper) reads the kind from the validated spec, never from the file again."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from pydantic import ValidationError

from orchestrator.core.errors import StudyError
from orchestrator.core.yaml_file import invalid_study, read_yaml

if TYPE_CHECKING:
    from orchestrator.design.completion_plan import CompletionPlan
    from orchestrator.design.completion_spec import CompletionStudySpec
    from orchestrator.design.plan import StudyPlan
    from orchestrator.design.spec import StudySpec

    Study = StudySpec | CompletionStudySpec
    Plan = StudyPlan | CompletionPlan

PROFILES_DIR = Path(__file__).parent.parent / "profiles"  # orchestrator/profiles (package data)
KINDS = ("classification", "completion")


def profiles() -> list[str]:
    return sorted(p.stem for p in PROFILES_DIR.glob("*.yaml"))


def study_path(name_or_path: str | Path) -> Path:
    """The YAML file of a profile name or a path; StudyError naming the profiles when it is neither."""
    path = Path(name_or_path)
    # a profile is a bare name: a path with a folder in it (``../x``) is the user's file, never looked up there
    if not path.suffix and not path.exists() and path.name == str(name_or_path):
        path = PROFILES_DIR / f"{name_or_path}.yaml"
        if not path.exists():
            raise StudyError(
                f"unknown study '{name_or_path}': not a file, and not a profile; profiles: {profiles()}"
            )
    if not path.exists():
        raise StudyError(f"study file {path} does not exist")
    return path


def kind_of(raw: dict[str, Any]) -> str:
    if "task" in raw and raw["task"] != "completion":  # a typo would read as a classification study's errors
        raise StudyError(
            f"task: unknown task {raw['task']!r}; valid: ['completion'] (a classification study has `tasks:`)"
        )
    kind = raw.pop("kind", None) or ("completion" if raw.get("task") == "completion" else "classification")
    if kind not in KINDS:
        raise StudyError(f"kind: unknown study kind '{kind}'; valid: {list(KINDS)}")
    return kind


def load_spec(name_or_path: str | Path, overrides: dict[str, Any] | None = None) -> Study:
    """A study of either kind, validated; one StudyError (file, line, key per problem) when it is not valid."""
    from orchestrator.design.completion_spec import CompletionStudySpec
    from orchestrator.design.spec import StudySpec

    path = study_path(name_or_path)
    node, raw = read_yaml(path)
    raw.setdefault("name", path.stem)
    raw.update(overrides or {})
    model = CompletionStudySpec if kind_of(raw) == "completion" else StudySpec
    try:
        return model.model_validate(raw, context={"base_dir": path.resolve().parent})
    except ValidationError as err:
        raise invalid_study(err, node, path) from None


def build_plan(spec: Study, calibration: dict[str, Any] | None | str = "auto") -> Plan:
    """The study's units, each trial a typed config the worker runs as it is (``calibration``: measured step times;
    "auto": the study folder's calibration.json when it was measured on this device; None: the FLOP count)."""
    if spec.kind == "completion":
        from orchestrator.design.completion_plan import build_completion_plan

        return build_completion_plan(spec, calibration)  # type: ignore[arg-type]
    from orchestrator.design.plan import build_classification_plan

    return build_classification_plan(spec, calibration)  # type: ignore[arg-type]
