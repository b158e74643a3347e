"""What every study has, whatever its kind: a name, a storage folder, seeds, resources and how many trials run at
once. ``spec.StudySpec`` (classification) and ``completion_spec.CompletionStudySpec`` (completion) extend it; the
pipeline reads only these fields and ``kind``."""

from __future__ import annotations

from pathlib import Path
from typing import ClassVar

from pydantic import BaseModel, ConfigDict, Field, field_validator


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Resources(Strict):
    cpu: float = Field(1, ge=0)
    gpu: float = Field(0, ge=0)


class StudyBase(Strict):
    """The fields the driver, the stages and the trial wrapper read for both kinds."""

    kind: ClassVar[str] = ""  # classification | completion: which planner, stages and trial work run it

    name: str
    description: str = ""
    storage: str = "runs"  # caches, checkpoints, Ray results, MLflow; the study's folder is <storage>/<name>
    seeds: list[int] = Field(default_factory=lambda: [0], min_length=1)  # no seed: no trial
    trial_resources: Resources = Field(default_factory=Resources)
    teacher_resources: Resources = Field(default_factory=Resources)
    max_concurrent_trials: int = Field(2, ge=1)
    max_failures: int = Field(1, ge=0)  # retries of a failing trial

    @field_validator("storage")
    @classmethod
    def _storage(cls, v: str) -> str:
        if "://" in v:
            raise ValueError(
                f"storage must be a file system path every node sees (e.g. an EFS/NFS mount such as /mnt/kdstudy), "
                f"got '{v}': trials memory-map the teacher-cache shards written there"
            )
        return v

    @property
    def study_dir(self) -> Path:
        return Path(self.storage) / self.name


def known(values: list[str], valid: list[str], what: str) -> list[str]:
    """``values`` if every one is in ``valid``; else a ValueError naming the unknown one and the valid ones."""
    if not values:
        raise ValueError(f"at least one {what} is needed; valid: {valid}")
    for v in values:
        if v not in valid:
            raise ValueError(f"unknown {what} '{v}'; valid: {valid}")
    return values
