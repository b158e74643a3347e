"""The units a plan is made of, typed. A trial unit is built once by the planner and handed to the worker as it is
(Ray Tune passes it in the trial's config): the identity the trial wrapper needs (key, run name, tags, params,
scratch folder, declared tasks) and the ``work`` the kind's trial function runs (classification: ``run_trial``'s
``TrialConfig``; completion: ``CompletionWork``). Teacher and cache units are what the kind's teacher stages build.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

# annotations only: planning a study imports neither torch nor transformers (seconds per command)
if TYPE_CHECKING:
    from kd_methods import SignalSpec
    from orchestrator.train.lm_work import CompletionWork
    from orchestrator.train.trial import TrialConfig


@dataclass(kw_only=True)
class TrialUnit:
    """One trial of either kind: what the trial wrapper (``sweep/trial.py``) reads, whatever the work."""

    kind: str  # classification | completion: which work function runs it (sweep/work.py)
    trial_key: str
    run_name: str
    tags: dict[str, str]  # factor tags, stage, study, trial_key, data_key (the driver adds the parent run)
    params: dict[str, Any]  # MLflow params
    teacher: str  # the teacher's name; "none" without one
    student: str
    method: str
    seed: int
    cpus: float = 1.0  # torch threads on the worker
    scratch: str = ""  # <storage>/<study>/scratch: the trial's files until MLflow holds them
    declared_tasks: list[dict[str, Any]] = field(
        default_factory=list
    )  # registered on the worker (docs/OWN_DATA.md)
    gpu_seconds: float = 0.0  # estimated: FLOP count or calibration

    @property
    def stage(self) -> str:
        return self.tags.get("stage", "student")


@dataclass(kw_only=True)
class ClassificationTrial(TrialUnit):
    task: str
    work: TrialConfig  # what run_trial trains (out_dir: set by the wrapper to the trial's scratch folder)
    settings: dict[str, Any]  # what the trial key (and, without the seed, the cell) is made of
    cell: str = ""  # one id per (task, teacher, student, method) and what shapes its training
    student_params: int = 0
    labels: str = "all"  # the labels level's name (tasks/labels.py level_name)
    tuned: tuple[str, ...] = ()  # a tuning trial's base: the hyperparameters its searcher samples
    untuned: bool = False  # a final trial whose cell has no finished tuning run yet: not run


@dataclass(kw_only=True)
class CompletionTrial(TrialUnit):
    student_init: str
    teacher_mode: str  # none for lm_only
    work: CompletionWork
    flops: float = 0.0


@dataclass(frozen=True)
class TeacherUnit:
    teacher: str
    task: str
    key: str
    folder: str
    gpu_seconds: float = field(default=0.0, compare=False, hash=False)  # estimated: the fine-tune
    labels: str = "all"  # the labels level it is fine-tuned at (its labelled part only)


@dataclass(frozen=True)
class CacheUnit:
    teacher: str
    task: str
    spec: SignalSpec
    derived: tuple[Any, ...]  # kd_methods.DerivedRequest: what methods read in place of token states
    key: str
    planned: dict[str, Any] = field(default_factory=dict, compare=False, hash=False)
    gpu_seconds: float = field(default=0.0, compare=False, hash=False)  # estimated: the teacher pass
    labels: str = "all"  # its teacher's labels level; the cache covers every training input


def slot(teacher: str, task: str, labels: str = "all") -> str:
    """Where a trial finds its teacher cache among a study's (``StudyContext.caches``): ``teacher/task`` and, at
    a labels level other than ``all``, ``/level``."""
    return f"{teacher}/{task}" + (f"/{labels}" if labels != "all" else "")


@dataclass(frozen=True)
class LMTeacherUnit:
    name: str
    source: str
    key: str
    folder: str
    shape: tuple[int, int, int, int]  # layers, hidden, vocab, positions
    trains: bool


@dataclass(frozen=True)
class LMCacheUnit:
    teacher: str
    mode: str  # cached | cached-topk
