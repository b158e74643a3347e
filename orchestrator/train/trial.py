"""One trial: (task, student, method, teacher, seed) -> a trained, evaluated student.

The study runs this function inside Ray Tune; the command line runs it alone, to try or debug one trial:

    python -m orchestrator.trial --task exception --student roberta-tiny --method kd \\
        --teacher runs/teachers/minilm-exception --data data/local --epochs 2
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING, Any

from orchestrator.train import cli_checks
from orchestrator.train.config import PRECISION_HELP, PRECISIONS, TrainConfig
from tasks import BUILTIN_TASKS, SPLITS, TaskData, get_task, is_custom, load_task_data
from tasks.labels import LabelSpec, labelled_inputs, method_view

if TYPE_CHECKING:  # torch, transformers and the models load only when a trial runs (a fast --help and --plan)
    from kd_methods import ModelShape
    from models.tokenizer import StudentTokenizer
    from orchestrator.cache.serve import CachedTeacher
    from orchestrator.train.online_teacher import OnlineTeacher
    from orchestrator.train.trainer import EncodedSplit, TeacherSource, TrainResult

DEFAULT_DATA = Path("data/local")

# Short names for the teachers the studies use; anything else is a hub id or a local folder.
TEACHER_ALIASES: dict[str, str] = {
    "unixcoder": "microsoft/unixcoder-base",
    "modernbert": "answerdotai/ModernBERT-base",
    "codegpt": "microsoft/CodeGPT-small-py",
}


def resolve_teacher(name: str) -> str:
    """A teacher alias, hub id or local folder -> what ``Teacher.load`` takes. ``minilm`` is the offline package."""
    if name == "minilm":
        from models.offline import minilm_path  # no torch import to resolve a name

        return str(minilm_path())
    return TEACHER_ALIASES.get(name, name)


def resolve_data(source: str | Path) -> str | Path:
    """``hub`` or a folder of JSON Lines; the default local folder is built from real code on first use."""
    if str(source) == "hub":
        return "hub"
    path = Path(source)
    if not path.exists() and path.resolve() == DEFAULT_DATA.resolve():
        from tasks.build_local import build_local

        print(f"building local real-code data under {path} (python -m tasks.build_local)", file=sys.stderr)
        build_local(path)
    if not path.exists():
        raise FileNotFoundError(
            f"data folder {path} does not exist; build it with `python -m tasks.build_local --out {path}` "
            "or pass --data hub"
        )
    return path


def load_data(task: str, source: str | Path, data_seed: int = 0, max_samples: int | None = None) -> TaskData:
    """A task's splits; ``data_seed`` is the study's data seed (clone's 10% hub sample), never a trial's seed."""
    if is_custom(task):  # a declared task reads its own folder: nothing to resolve or build
        return load_task_data(task, source, data_seed, max_samples)
    return load_task_data(task, resolve_data(source), data_seed, max_samples)


def family_tokenizer(
    task: str,
    vocab_size: int,
    source: str | Path,
    cache_dir: Path,
    data_seed: int = 0,
    max_samples: int | None = None,
) -> StudentTokenizer:
    """The student's BPE tokenizer, trained on its task family's training data (C+Java or Python) drawn with the
    study's data seed, cached. The request key (files or hub revision, data seed) finds the cached tokenizer
    without loading the family's data: a defect trial never loads clone's hub splits."""
    from models.tokenizer import get_student_tokenizer
    from tasks import family_members, family_request_key

    family = get_task(task).family
    members = family_members(family)
    resolved = source if is_custom(task) else resolve_data(source)
    key = family_request_key(members, resolved, data_seed, max_samples)
    datasets = lambda: [load_data(name, source, data_seed, max_samples) for name in members]  # noqa: E731
    return get_student_tokenizer(family, vocab_size, datasets, cache_dir, request_key=key)


@dataclass
class TrialConfig:
    task: str
    student: str
    method: str
    teacher: str | None = None  # a fine-tuned teacher's folder (or hub id) for KD methods
    seed: int = 0
    data: str = str(DEFAULT_DATA)
    # the study's data seed: clone's 10% hub sample and the students' tokenizers, the same for every trial seed
    data_seed: int = 0
    max_length: int = 512
    max_samples: int | None = None  # cap each split (quick runs)
    method_params: dict[str, Any] = field(default_factory=dict)
    train: TrainConfig = field(default_factory=TrainConfig)
    teacher_mode: str = "online"  # "online" runs the teacher every step; "cached" reads the teacher cache
    cache_dir: str = "runs/cache"
    out_dir: str | None = None
    labels: dict[str, Any] | None = None  # a LabelSpec mapping: labels on part of the train split

    def __post_init__(self) -> None:
        if self.teacher_mode not in ("online", "cached"):
            raise ValueError(f"teacher_mode must be 'online' or 'cached', got '{self.teacher_mode}'")
        self.train.seed = self.seed


@dataclass
class PreparedTrial:
    """Everything a trial trains on, built once (the benchmark reuses it across methods)."""

    task_data: TaskData
    tokenizer: StudentTokenizer
    encoded: dict[str, EncodedSplit]
    num_labels: int
    keep: Any = None  # labelled positions of encoded["train"]; None: all (tasks.labels.method_view)


def prepare(cfg: TrialConfig) -> PreparedTrial:
    from models import get_student_spec
    from orchestrator.train.trainer import encode_split

    task = get_task(cfg.task)
    spec = get_student_spec(cfg.student)
    data = load_data(cfg.task, cfg.data, cfg.data_seed, cfg.max_samples)
    data, keep = labelled_inputs(data, task, LabelSpec.parse(cfg.labels), cfg.max_samples)
    folder = Path(cfg.cache_dir) / "tokenizers"
    tokenizer = family_tokenizer(cfg.task, spec.vocab_size, cfg.data, folder, cfg.data_seed, cfg.max_samples)
    encoded = {
        s: encode_split(data.split(s), tokenizer.encode, cfg.max_length, tokenizer.pad_id) for s in SPLITS
    }
    return PreparedTrial(data, tokenizer, encoded, task.num_labels, keep)


def online_teacher(
    teacher_id: str, prepared: PreparedTrial, max_length: int, device: str = "auto"
) -> OnlineTeacher:
    from models.teacher import Teacher
    from orchestrator.core.device import resolve_device
    from orchestrator.train.online_teacher import OnlineTeacher
    from orchestrator.train.trainer import encode_split

    teacher = Teacher.load(resolve_teacher(teacher_id), prepared.num_labels)
    encoded = {
        s: encode_split(prepared.task_data.split(s), teacher.encode, max_length, teacher.pad_id)
        for s in SPLITS
    }
    return OnlineTeacher(teacher, encoded, resolve_device(device))


@cache
def student_shape(student: str) -> ModelShape:
    """A student's layer count and widths (as its KD methods see them), from its registry entry: building it would
    import transformers, which the study driver (this runs when it plans) otherwise does without."""
    from models import get_student_spec

    return get_student_spec(student).model_shape()


def cached_teacher(cfg: Any, prepared: Any) -> tuple[CachedTeacher, ModelShape]:
    """Build (or find) the cache for one trial's own needs (what its method reads: ``KDMethod.cache_needs``) and
    open it."""
    from kd_methods import get_method
    from models.teacher import Teacher
    from orchestrator.cache.build import get_or_build
    from orchestrator.cache.key import CacheRequest
    from orchestrator.cache.serve import CachedTeacher
    from orchestrator.core.device import cache_precision

    teacher_dir = resolve_teacher(cfg.teacher)
    teacher = Teacher.load(teacher_dir, prepared.num_labels)
    shape = teacher.shape
    del teacher
    spec, derived = get_method(cfg.method)(
        student_shape(cfg.student), shape, **cfg.method_params
    ).cache_needs()
    request = CacheRequest(
        teacher_dir,
        cfg.task,
        spec,
        cfg.max_length,
        derived=(derived,) if derived else (),
        precision=cache_precision(cfg.train.precision),  # the study's rule: a trial by hand finds its cache
    )
    report = get_or_build(
        request,
        prepared.task_data,
        prepared.num_labels,
        Path(cfg.cache_dir),
        use_ray=False,
        device=cfg.train.device,
    )
    return CachedTeacher.open(report.path, reads=derived), shape


def run_trial(
    cfg: TrialConfig,
    callback: Callable[[dict[str, float]], None] | None = None,
    teacher_source: TeacherSource | None = None,
    teacher_shape: Any = None,
    prepared: PreparedTrial | None = None,
) -> TrainResult:
    """Train and evaluate one student. ``teacher_source``/``teacher_shape`` let the caller hand in cached signals;
    otherwise a KD method loads the teacher and runs it online."""
    from kd_methods import build_method, get_method
    from models import build_student
    from orchestrator.cache.serve import CachedTeacher
    from orchestrator.train.trainer import seed_everything, train

    needs_teacher = get_method(cfg.method).family != "none"
    # FT on the labelled part, KD on every input (labels masked outside it): tasks/labels.py
    prepared = method_view(prepared or prepare(cfg), not needs_teacher)
    seed_everything(cfg.seed)  # the student's and the method's initial weights depend on the seed alone
    student = build_student(
        cfg.student, prepared.num_labels, vocab_size=prepared.tokenizer.vocab_size, max_length=cfg.max_length
    )
    if needs_teacher and teacher_source is None:
        if not cfg.teacher:
            raise ValueError(f"method '{cfg.method}' needs a teacher: pass --teacher")
        if cfg.teacher_mode == "cached":
            teacher_source, teacher_shape = cached_teacher(cfg, prepared)
        else:
            teacher_source = online_teacher(cfg.teacher, prepared, cfg.max_length, cfg.train.device)
            teacher_shape = teacher_source.teacher.shape
    if needs_teacher and isinstance(teacher_source, CachedTeacher):
        teacher_source.check_data(prepared.task_data.fingerprint())
    method = build_method(
        cfg.method, student.shape, teacher_shape if needs_teacher else None, **cfg.method_params
    )
    out_dir = Path(cfg.out_dir) if cfg.out_dir else None
    return train(
        student, method, prepared.encoded, get_task(cfg.task), cfg.train, teacher_source, out_dir, callback
    )


def below_one(**flags: int | None) -> bool:
    """Print ``error: --flag must be >= 1`` for the first flag below 1 (an untrained model reported as a result,
    or a ZeroDivisionError, otherwise). True when one was."""
    for name, value in flags.items():
        if value is not None and value < 1:
            print(f"error: --{name.replace('_', '-')} must be >= 1, got {value}", file=sys.stderr)
            return True
    return False


def _parser() -> argparse.ArgumentParser:
    from orchestrator.cli_help import METHOD_NAMES, STUDENT_NAMES, HelpFormatter, OneLineParser

    p = OneLineParser(prog="python -m orchestrator.trial", description=__doc__, formatter_class=HelpFormatter)
    p.add_argument("--task", choices=sorted(BUILTIN_TASKS), help="a built-in task (or --task-file)")
    p.add_argument("--task-file", help="a YAML file declaring your own task (docs/OWN_DATA.md)")
    p.add_argument("--student", required=True, choices=STUDENT_NAMES)
    p.add_argument("--method", required=True, choices=METHOD_NAMES)
    p.add_argument(
        "--teacher", help="fine-tuned teacher folder (python -m orchestrator.finetune_teacher) or hub id"
    )
    p.add_argument(  # the default is a study's (spec.py: teacher_mode), so a trial by hand runs as in a study
        "--teacher-mode",
        default="cached",
        choices=["online", "cached"],
        help="cached (as studies do): one teacher pass into the cache, reused; online: the teacher runs every step",
    )
    p.add_argument(
        "--data", default=str(DEFAULT_DATA), help="'hub' or a folder from python -m tasks.build_local"
    )
    p.add_argument("--seed", type=int, default=0, help="the student's initial weights and data order")
    data_seed = "the data sample (clone's 10%% of the hub) and the tokenizers; a study's is its first seed"
    p.add_argument("--data-seed", type=int, default=0, help=data_seed)
    p.add_argument("--labels", default="all", help=cli_checks.LABELS_HELP)
    p.add_argument("--epochs", type=int, default=5)
    p.add_argument(
        "--steps", type=int, help="exactly this many optimiser steps (epochs: as many as they take)"
    )
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--lr", type=float, default=2e-4)
    p.add_argument("--max-length", type=int, default=512)
    p.add_argument("--max-samples", type=int, help="cap every split (quick runs)")
    p.add_argument("--param", action="append", default=[], metavar="KEY=VALUE", help="method hyperparameter")
    p.add_argument("--device", default="auto")
    p.add_argument("--precision", default="auto", choices=PRECISIONS, help=PRECISION_HELP)
    p.add_argument("--cache-dir", default="runs/cache")
    p.add_argument("--out", help="folder for the best checkpoint, result.json and test predictions")
    p.add_argument("--experiment", help="MLflow experiment when MLFLOW_TRACKING_URI is set (default: trials)")
    return p


def task_argument(p: argparse.ArgumentParser, task: str | None, task_file: str | None) -> str:
    """The task a command runs: a built-in ``--task`` or the one ``--task-file`` declares (exits with one line)."""
    from tasks import TaskDeclarationError, load_task_file

    if bool(task) == bool(task_file):
        p.error("give exactly one of --task (a built-in task) and --task-file (your own)")
    if task_file:
        try:
            return load_task_file(task_file).name
        except TaskDeclarationError as err:
            p.error(str(err))
    return str(task)


def main(argv: list[str] | None = None) -> int:
    from orchestrator.train.cli_checks import guarded

    # a user's mistake is one line, exit 2 (orchestrator/train/cli_checks.py)
    return guarded(lambda: _main(argv))


def _main(argv: list[str] | None) -> int:
    from orchestrator.train.cli_checks import check_inputs, precheck
    from orchestrator.train.cli_tracking import CliRun, experiment_name

    p = _parser()
    args = p.parse_args(argv)
    task = task_argument(p, args.task, args.task_file)
    if below_one(
        epochs=args.epochs, batch_size=args.batch_size, max_length=args.max_length, steps=args.steps
    ):
        return 2
    precheck(args, "trial", lambda: task, DEFAULT_DATA, resolve_teacher)  # values found late otherwise
    params: dict[str, Any] = {}
    for item in args.param:
        key, sep, value = item.partition("=")
        if not sep:
            p.error(f"--param expects KEY=VALUE, got '{item}'")
        params[key] = cli_checks.parse_value(value)
    check_inputs(task, args.data, DEFAULT_DATA, args.max_samples, args.method, args.teacher, params)
    labels = cli_checks.labels_argument(p, args.labels)
    recipe = dict(
        epochs=args.epochs, steps=args.steps, batch_size=args.batch_size, lr=args.lr, device=args.device
    )
    cfg = TrialConfig(
        task=task,
        student=args.student,
        method=args.method,
        teacher=args.teacher,
        seed=args.seed,
        data=args.data,
        data_seed=args.data_seed,
        labels=labels,
        max_length=args.max_length,
        max_samples=args.max_samples,
        method_params=params,
        train=TrainConfig(**recipe, precision=args.precision),
        teacher_mode=args.teacher_mode,
        cache_dir=args.cache_dir,
        out_dir=args.out,
    )
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    from kd_methods import get_method
    from models import get_student_spec

    family = get_method(args.method).family
    teacher_tag = Path(args.teacher).name if args.teacher and family != "none" else "none"
    tags = {"stage": "student", "task": task, "student": args.student, "method": args.method}
    tags.update(teacher=teacher_tag, seed=str(args.seed), method_family=family)
    tags["student_arch"] = get_student_spec(args.student).arch
    run = CliRun(
        experiment_name(args.experiment, "trials"),
        f"{task}-{args.student}-{args.method}-s{args.seed}",
        tags,
        {**vars(args), **{f"method.{k}": v for k, v in params.items()}},
    )

    def show(row: dict[str, float]) -> None:
        vals = "  ".join(f"{k}={v:.4f}" for k, v in row.items() if k != "epoch")
        print(f"epoch {int(row['epoch'])}: {vals}", flush=True)
        run.epoch(row)

    try:
        result = run_trial(cfg, callback=show)
    except BaseException as err:
        run.fail(err)
        raise
    run.finish(result, {"student_params": float(result.params)})
    print(
        f"best epoch {result.best_epoch}; test: " + "  ".join(f"{k}={v:.4f}" for k, v in result.test.items())
    )
    keep = ("train_seconds", "teacher_seconds", "inference_samples_per_s", "params", "steps")
    print(json.dumps({k: v for k, v in asdict(result).items() if k in keep}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
