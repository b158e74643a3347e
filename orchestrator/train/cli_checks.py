"""User mistakes on ``python -m orchestrator.trial`` and ``python -m orchestrator.finetune_teacher``: one line
``error: ...`` on stderr and exit status 2, as the study command does (orchestrator/core/errors.py), never a
traceback. Programming errors keep theirs.

Most mistakes are found before any model is built (``check_inputs``: the data folder and its files, a KD method
without a teacher, a method hyperparameter the method does not have); the few that only show while running (a
teacher folder or hub model that is not there, the hub unreachable offline, a file that vanished) are recognised by
their types in ``guarded``.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from orchestrator.core.device import device_problem
from orchestrator.core.errors import USER_ERROR, StudyError, one_line, user_error_of


class InputError(StudyError):
    """A command-line value that cannot work; the message names the option."""


def data_problem(task: str, data: str, default: Path) -> str | None:
    """Why ``--data`` cannot serve ``task`` (None if it can): a folder that is not there, or the first mistake in
    the task's files (tasks/data_check.py). ``hub`` and the default folder (built on first use) are accepted."""
    from tasks import get_task, is_custom
    from tasks.data_check import first_problem

    if is_custom(task):  # a declared task reads its own folder, whatever --data says
        return first_problem(get_task(task))
    if data == "hub":
        return None
    root = Path(data).expanduser()
    if not root.exists():
        if root.resolve() == default.resolve():
            return None  # built from real code on first use (orchestrator/train/trial.py: resolve_data)
        return (
            f"--data: folder {root} does not exist; build it with `python -m tasks.build_local --out {root}` "
            "or pass --data hub"
        )
    if not root.is_dir():
        return f"--data: {root} is a file, not a folder"
    return first_problem(get_task(task), root / task)


def method_problem(method: str, teacher: str | None, params: dict[str, Any]) -> str | None:
    from kd_methods import get_method

    m = get_method(method)
    if m.family != "none" and not teacher:
        return f"--method {method} needs a teacher: pass --teacher (a folder from python -m orchestrator.finetune_teacher)"
    if m.family == "none" and teacher:
        # not refused: a loop over methods may pass one --teacher to all; but the run must not read as distilled
        print(
            f"warning: --method {method} trains on the labels alone; --teacher {teacher} is not used",
            file=sys.stderr,
        )
    return param_problem(method, params)


def param_problem(method: str, params: dict[str, Any], flag: str = "--param") -> str | None:
    """The first ``--param`` a method does not have, or whose value a study would refuse (type and range)."""
    from kd_methods import get_method

    defaults = get_method(method).defaults
    unknown = sorted(set(params) - set(defaults))
    if unknown:
        return f"{flag}: unknown hyperparameter(s) {unknown} for method '{method}'; valid: {sorted(defaults)}"
    found = (
        param_value_problem(f"{flag} {k} (method '{method}')", k, v, defaults[k]) for k, v in params.items()
    )
    return next((p for p in found if p), None)


# Method parameters by name: what a value must be (a study's method_params, orchestrator/design/validate.py, and
# --param here). Numbers are checked against their range; NaN is left to the trial (the loss guard fails it and
# a study goes on), every other bad value is refused before anything starts.
POSITIVE = {"temperature", "window", "chunk"}
NON_NEGATIVE = {"alpha", "beta", "gamma", "label_weight", "alpha_ce", "alpha_clm", "alpha_cos"}


def param_value_problem(where: str, key: str, value: Any, default: Any) -> str | None:
    """Why ``value`` cannot be method parameter ``key`` (whose default is ``default``), named ``where``."""
    import math

    if isinstance(default, bool):
        return None if isinstance(value, bool) else f"{where}: must be true or false, got {value!r}"
    kind = "an integer" if isinstance(default, int) else "a number"
    if isinstance(value, bool) or not isinstance(value, int if isinstance(default, int) else (int, float)):
        return f"{where}: must be {kind}, got {value!r}"
    if math.isnan(value):
        return None
    if math.isinf(value):
        return f"{where}: must be finite, got {value!r}"
    if key in POSITIVE and value <= 0:
        return f"{where}: must be > 0, got {value!r}"
    if key in NON_NEGATIVE and value < 0:
        return f"{where}: must be >= 0, got {value!r}"
    return None


def space_problems(space: dict[str, dict[str, Any]], methods: list[str]) -> list[str]:
    """A study's ``tuning.space`` overrides checked as ``method_params`` are (each choice value and range bound
    that a trial could draw), plus the train settings a search may set (``lr`` > 0, ``batch_size`` a whole
    number >= 1), and a space for a method the study does not run (a typo otherwise tunes nothing)."""
    from kd_methods import get_method

    out = []
    for method, params in space.items():
        where = f"tuning.space.{method}"
        if method not in methods:
            out.append(f"{where}: the study does not run method '{method}'; its methods: {list(methods)}")
            continue
        defaults = {"lr": 1e-3, "batch_size": 32, **get_method(method).defaults}
        for key, rng in params.items():
            draws = rng.values if rng.type == "choice" else [rng.low, rng.high]
            if rng.type != "choice" and isinstance(defaults[key], int):  # bool is an int too
                out.append(f"{where}.{key}: {rng.type} draws fractions; give a choice of whole numbers")
                continue
            found = (param_value_problem(f"{where}.{key}", key, v, defaults[key]) for v in draws)
            problem = next((p for p in found if p), None)
            if problem is None and key in ("lr", "batch_size") and any(v <= 0 for v in draws):
                problem = f"{where}.{key}: must be > 0, got {min(draws)!r}"
            if problem:
                out.append(problem)
    return out


def check_inputs(
    task: str,
    data: str,
    default_data: Path,
    max_samples: int | None,
    method: str | None = None,
    teacher: str | None = None,
    params: dict[str, Any] | None = None,
) -> None:
    """InputError for the first mistake in the command's inputs (before anything is built or loaded)."""
    if max_samples is not None and max_samples < 1:
        raise InputError(f"--max-samples must be >= 1, got {max_samples}")
    problem = data_problem(task, data, default_data)
    if problem is None and method is not None:
        problem = method_problem(method, teacher, params or {})
    if problem:
        raise InputError(problem)


def _user_error(err: BaseException) -> bool:
    """Mistakes that show only while running: the ones marked ``user_error`` (a missing model or hub dataset, bad
    completion data, --labels vs the data's size: core/errors.py) and a vanished file."""
    return user_error_of(err) is not None or isinstance(err, (FileNotFoundError, NotADirectoryError))


def guarded(command: Callable[[], int]) -> int:
    """``command()``, with a user's mistake as one ``error:`` line and exit status 2."""
    try:
        return command()
    except Exception as err:
        if not _user_error(err):
            raise
        text = f"{err.filename}: {err.strerror}" if isinstance(err, OSError) and err.filename else str(err)
        print(f"error: {one_line(text)}", file=sys.stderr)
        return USER_ERROR


LABELS_HELP = (
    "labels on part of the training split, by the name its runs are tagged with: all (default), count=N or "
    "fraction=F (;seed=S ;stratified); FT and a teacher train on that part, KD methods on every input"
)


def labels_argument(p: argparse.ArgumentParser, text: str) -> dict[str, Any] | None:
    """``--labels`` as the ``LabelSpec`` mapping a trial config carries (exits with one line when unreadable)."""
    from tasks.labels import LabelSpec, LabelSpecError

    try:
        spec = LabelSpec.from_text(text)
    except LabelSpecError as err:
        p.error(f"--labels: {err}")
    return None if spec is None else spec.to_dict()


def parse_value(text: str) -> Any:
    """A ``--param`` value: JSON when it reads as JSON (numbers, true/false), else the text itself."""
    import json

    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return text


# -- the values a study checks in its YAML (orchestrator/design/spec.py), checked here before anything is built --

MIN_LENGTH = 8  # a study's max_length minimum: room for the special tokens and some code
WEIGHT_FILES = (
    "model.safetensors",
    "pytorch_model.bin",
    "model.safetensors.index.json",
    "pytorch_model.bin.index.json",
)
TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "vocab.json", "vocab.txt")


def precheck(
    args: argparse.Namespace,
    command: str,
    task: Callable[[], str],
    default_data: Path,
    resolve: Callable[[str], str],
) -> None:
    """InputError for the first value of ``python -m orchestrator.trial`` (``command="trial"``) or
    ``orchestrator.finetune_teacher`` that cannot work and that the command itself finds only after loading
    models (or, for ``--out``, after the whole fine-tune): --lr, --max-length, --device, --teacher, --labels
    against the training split's size, and --out. The command then runs its own checks as before. ``task``: the
    task the command runs; ``resolve``: a teacher name to what loads (orchestrator/train/trial.py, which imports
    this module)."""
    problem = value_problem(args.lr, args.max_length, args.device)
    if problem is None and (command == "finetune" or getattr(args, "out", None)):
        problem = out_problem(args.out, replaces=command == "finetune")
    if problem is None and args.teacher and (command == "finetune" or _needs_teacher(args.method)):
        problem = teacher_problem(resolve(args.teacher))
    if problem is None and args.labels and args.labels != "all":
        name = task()
        if data_problem(name, args.data, default_data) is None:  # else the command says what is wrong with it
            problem = labels_problem(name, args.data, args.labels, args.max_samples)
    if problem:
        raise InputError(problem)


def _needs_teacher(method: str) -> bool:
    from kd_methods import get_method

    return get_method(method).family != "none"


def value_problem(lr: float | None, max_length: int | None, device: str) -> str | None:
    import math

    if lr is not None and not (math.isfinite(lr) and lr > 0):
        return f"--lr must be a finite number > 0, got {lr}"
    if max_length is not None and max_length < MIN_LENGTH:
        return f"--max-length must be >= {MIN_LENGTH} (room for the special tokens and some code), got {max_length}"
    return device_problem(device)


def teacher_problem(source: str, flag: str = "--teacher", must_exist: bool = False) -> str | None:
    """What keeps a local teacher folder (``source``: an alias already resolved) from loading: not a folder, no
    readable config.json, no weights, no tokenizer, a corrupt teacher.json; with ``must_exist``, a path (``/``,
    ``.``, ``~``, a/b/c) that is not there. random:<arch> and hub ids are left to the loader (one line when a
    model is not there)."""
    import json

    folder = Path(source).expanduser()
    path_like = source.startswith(("/", ".", "~")) or source.count("/") > 1
    if must_exist and path_like and not folder.exists():
        return f"{flag}: teacher folder {folder} does not exist"
    if source.startswith("random:") or not folder.exists():
        return None
    where = f"{flag} {folder}"
    if not folder.is_dir():
        return f"{where}: a file, not a model folder"
    what = "a folder from python -m orchestrator.finetune_teacher, an alias or a hub id"
    if not (folder / "config.json").is_file():
        return f"{where}: holds no config.json, so it is not a saved model ({what})"
    for name in ("config.json", "teacher.json"):
        if not (folder / name).is_file():
            continue
        try:
            info = json.loads((folder / name).read_text())
        except (OSError, UnicodeDecodeError, ValueError) as err:
            return f"{where}: {name} is not readable JSON ({one_line(str(err))})"
        if not isinstance(info, dict):
            return f"{where}: {name} is not a JSON object"
    if not any((folder / n).is_file() for n in WEIGHT_FILES):
        return f"{where}: holds no weights ({' or '.join(WEIGHT_FILES[:2])})"
    if not any((folder / n).is_file() for n in TOKENIZER_FILES):
        return f"{where}: holds no tokenizer ({' or '.join(TOKENIZER_FILES[:2])})"
    if (folder / "teacher.json").is_file():
        from models.teacher import INPUT_FORMS

        form = json.loads((folder / "teacher.json").read_text()).get("input_form", "auto")
        if form not in INPUT_FORMS:
            return f"{where}: teacher.json: unknown input_form {form!r}; valid: {list(INPUT_FORMS)}"
    return None


def labels_problem(task: str, data: str, text: str, max_samples: int | None) -> str | None:
    """A ``count=N`` larger than the task's training split (counted from its file, capped by --max-samples)."""
    from tasks import get_task, is_custom
    from tasks.base import count_records
    from tasks.custom import split_path
    from tasks.labels import LabelSpec, LabelSpecError

    try:
        spec = LabelSpec.from_text(text)
    except LabelSpecError:
        return None  # the command's own --labels check words it
    if spec is None or spec.count is None or data == "hub":
        return None
    if is_custom(task):
        n = get_task(task).split_sizes()["train"]  # type: ignore[attr-defined]
    elif sizes := get_task(task).local_sizes(Path(data).expanduser() / task):
        n = sizes["train"]  # official clone files: the sampled pairs the loader uses
    else:
        file = split_path(Path(data).expanduser() / task, "train")
        if file is None:
            return None
        n = count_records(file)
    n = min(n, max_samples) if max_samples else n
    if spec.count > n:
        return f"--labels: 'count' {spec.count} exceeds the {n} training samples of task '{task}'"
    return None


def out_problem(out: str, replaces: bool = True) -> str | None:
    """``--out``: a folder whose nearest existing parent is a writable folder. A fine-tune (``replaces``) publishes
    its teacher as the whole folder, so an existing one must be empty or a saved model (an earlier teacher it
    replaces): a folder of other files (``--out runs``, ``--out .``) would be deleted with them."""
    import os

    from orchestrator.core.paths import teacher_complete

    path = Path(out).expanduser()
    what = "the fine-tuned teacher" if replaces else "the trial's checkpoint and results"
    if path.exists() and not path.is_dir():
        return f"--out {path}: a file; give a folder for {what}"
    if replaces and path.is_dir() and any(path.iterdir()) and not teacher_complete(path):
        names = sorted(p.name for p in path.iterdir())
        shown = ", ".join(names[:3]) + (", ..." if len(names) > 3 else "")
        return (
            f"--out {path}: a folder holding other files ({shown}); the fine-tuned teacher replaces the whole "
            "folder: give a new or empty folder (or a teacher folder to replace)"
        )
    for parent in path.absolute().parents:
        if parent.exists():
            if not parent.is_dir():
                return f"--out {path}: {parent} is a file, not a folder"
            if not os.access(parent, os.W_OK | os.X_OK):
                return f"--out {path}: {parent} is not writable"
            return None
    return None
