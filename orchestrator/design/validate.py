"""Checks a study must pass before anything starts (no server, no Ray, no file written).

``load_spec`` checks each value on its own (types, known names); these checks look at the study as a whole and at
the machine: duplicate entries (a study that could never complete), a name usable as a folder name, method
parameter types and ranges, and that the data, teacher and storage paths are what they claim to be. Every problem
is a ``StudyError`` whose message names the place; ``check_study`` reports them all at once.
"""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path
from typing import Any

from orchestrator.core.errors import StudyError
from orchestrator.design.names import folder_name_problem
from orchestrator.design.spec import StudySpec
from orchestrator.train.cli_checks import NON_NEGATIVE, POSITIVE, param_value_problem, space_problems  # noqa: F401
from tasks.data_check import declared_data_problems, first_problem
from tasks.labels import level_name
from tasks.registry import family_members, get_task, is_custom

# A study's name becomes a folder (<storage>/<name>), an MLflow experiment and a Ray results folder.
# Method parameters: their types and ranges (POSITIVE, NON_NEGATIVE) are checked as the trial command checks its
# --param values (orchestrator/train/cli_checks.py param_value_problem).


def check_study(spec: Any, planning: bool = False) -> None:
    """Raise one ``StudyError`` listing every problem of ``spec`` (either kind) found before anything starts.
    ``planning`` (``--plan``): a completion data folder not prepared yet is no error, as hub assets not fetched yet
    are not: the plan prices py150's size and lists what is missing (``sweep/report.plan_command``)."""
    if spec.kind == "completion":
        problems = [
            *name_problems(spec.name),
            *storage_problems(spec.storage),
            *([] if planning else completion_data_problems(spec)),
            *completion_param_problems(spec),
            *lm_teacher_problems(spec),
            *student_init_problems(spec),
        ]
        if problems:
            raise StudyError("; ".join(problems))
        return
    problems = [
        *duplicates(spec),
        *name_problems(spec.name),
        *method_param_problems(spec),
        *(space_problems(spec.tuning.space, spec.methods) if spec.tuning else []),
        *storage_problems(spec.storage),
        *data_problems(spec),
        *declared_data_problems(spec.custom_tasks, spec.tasks, spec.max_samples),  # tasks/data_check.py
        *label_problems(spec),
        *teacher_problems(spec),
    ]
    if problems:
        raise StudyError("; ".join(problems))


def duplicates(spec: StudySpec) -> list[str]:
    lists: dict[str, list[Any]] = {
        "tasks": spec.tasks,
        "students": spec.students,
        "methods": spec.methods,
        "seeds": spec.seeds,
        "teachers": [t.name for t in spec.teachers],
        "labels": [level_name(lv.label_spec()) for lv in spec.labels or []],
    }
    out = []
    for field, values in lists.items():
        twice = sorted(str(v) for v, n in Counter(values).items() if n > 1)
        if twice:
            out.append(f"{field}: duplicate entries {twice} (each may appear once)")
    return out


def label_problems(spec: StudySpec) -> list[str]:
    """A ``count`` level asks for no more labelled samples than a task's training split holds."""
    from orchestrator.design.sizes import split_sizes

    out = []
    for i, level in enumerate(spec.labels or []):
        for task in spec.tasks if level.count is not None else []:
            n = split_sizes(spec, task)["train"]
            if level.count > n:
                out.append(
                    f"labels.{i}.count: {level.count} exceeds the {n} training samples of task '{task}'"
                )
    return out


def name_problems(name: str) -> list[str]:
    problem = folder_name_problem(name)
    return [f"name: {problem}"] if problem else []


def _param_problem(method: str, key: str, value: Any, default: Any) -> str | None:
    return param_value_problem(f"method_params.{method}.{key}", key, value, default)


def method_param_problems(spec: StudySpec) -> list[str]:
    from kd_methods import get_method

    out = []
    for method in sorted(set(spec.methods) | set(spec.method_params)):
        defaults = get_method(method).defaults
        for key, value in spec.params_for(method).items():
            if key in defaults:
                problem = _param_problem(method, key, value, defaults[key])
                if problem:
                    out.append(problem)
    return out


def storage_problems(storage: str) -> list[str]:
    path = Path(storage).expanduser()
    for p in (path, *path.parents):
        if p.exists():
            if not p.is_dir():
                return [f"storage: {p} is a file, not a folder"]
            return _unwritable(p)
    return []


def _unwritable(folder: Path) -> list[str]:
    """The storage's nearest existing folder must take new files: a read-only file system (or a folder this user
    may not write) is one line here, not an OSError from the study's lock file later. Nothing is written."""
    import os

    if os.statvfs(folder).f_flag & os.ST_RDONLY:
        return [f"storage: {folder} is on a read-only file system; pass a writable --storage"]
    if not os.access(folder, os.W_OK | os.X_OK):
        return [f"storage: {folder} is not writable by this user; pass a writable --storage"]
    return []


def data_problems(spec: StudySpec) -> list[str]:
    """The data folder holds the three splits of every built-in task the study reads from it, and their lines
    load (``tasks/data_check.py``: a bad label is one line here, not a traceback after Ray starts). That is the
    study's built-in tasks and, when it trains students, the built-in members of its tasks' tokenizer families:
    a family's student tokenizer is trained on every task of the family (``orchestrator/train/trial.py``
    ``family_tokenizer``). The default folder is built on first use."""
    from orchestrator.design.data_source import will_build
    from orchestrator.train.trial import DEFAULT_DATA

    families = _families_read(spec)
    needed = sorted({t for t in spec.tasks if not is_custom(t)} | {m for ms in families.values() for m in ms})
    if spec.data == "hub" or not needed or will_build(spec):  # the default under the storage: built first
        return []
    root = Path(spec.data).expanduser()
    if not root.exists():
        if root.resolve() == DEFAULT_DATA.resolve():
            return []  # built from real code on first use (resolve_data)
        why, alt = _family_reasons(spec, families, needed)
        build = (
            f"build {'it' if why else 'one'} with `python -m tasks.build_local --out {root}` or use data: hub"
        )
        # a study's data: is relative to the current folder (a declared task's to its YAML): say where it looked
        shown = root if root.is_absolute() else f"{root} ({root.resolve()}: relative to the current folder)"
        if why:
            return [f"data: folder {shown} does not exist, and {why}; {build}{alt}"]
        return [f"data: folder {shown} does not exist ({build})"]
    if not root.is_dir():
        return [f"data: {root} is a file, not a folder"]
    missing = {  # validation: validation.jsonl, valid.jsonl or dev.jsonl; clone: or CodeXGLUE's official files
        task: [f"{task}/{name}" for name in names]
        for task in needed
        if (names := get_task(task).missing_files(root / task))
    }
    out = []
    if missing:
        lacks = ", ".join(f for files in missing.values() for f in files)
        lacks += "".join(f" ({t}: {h})" for t in missing if (h := get_task(t).layout_hint(root / t)))
        why, alt = _family_reasons(spec, families, list(missing))
        if why:
            absent = " ".join(t for t in missing if t not in spec.tasks)
            lacks += (
                f": {why}; add that data (`python -m tasks.build_local --tasks {absent} --out {root}` builds "
                f"the local real-code proxy) or use data: hub{alt}"
            )
        out.append(f"data: {root} lacks {lacks}")
    for task in needed:
        problem = None if task in missing else first_problem(get_task(task), root / task, spec.max_samples)
        if problem:
            out.append(f"data: task '{task}': {problem}")
    return out


def _families_read(spec: StudySpec) -> dict[str, list[str]]:
    """``{family: its built-in members}`` for the student tokenizers the study trains (every student of every
    task needs its task family's tokenizer; none without students)."""
    if not spec.students:
        return {}
    families = sorted({get_task(t).family for t in spec.tasks})
    out = {f: [m for m in family_members(f) if not is_custom(m)] for f in families}
    return {f: ms for f, ms in out.items() if ms}


def _family_reasons(spec: StudySpec, families: dict[str, list[str]], absent: list[str]) -> tuple[str, str]:
    """Why the study reads built-in tasks it does not name (of ``absent``) from its data folder, and the other
    way out for a declared task sharing their family: ``("", "")`` when it names them all."""
    shared = [
        f for f, members in families.items() if any(m in absent and m not in spec.tasks for m in members)
    ]
    why = "; ".join(
        f"the {f} student tokenizer is trained on every task of its family ({', '.join(family_members(f))})"
        for f in shared
    )
    declared = [t for t in spec.tasks if is_custom(t) and get_task(t).family in shared]
    return why, f", or give task '{declared[0]}' a tokenizer_family of its own" if declared else ""


def completion_data_problems(spec: Any) -> list[str]:
    """The completion data folder holds what a trial reads (train and validation text, ``line_test.json``; the
    default one under the storage is built on first use). The advice fits the folder: the proxy builder for the
    default proxy folder, else the exact ``prepare-py150`` command with ``--line-test``."""
    from orchestrator.design.data_source import DEFAULT_DATA, storage_data, will_build
    from tasks.completion.data import content_problems, missing_files, py150_advice

    root = Path(spec.data).expanduser()
    if will_build(spec):
        return []
    if root.exists() and not root.is_dir():
        return [f"data: {root} is a file, not a folder (train.txt, dev.txt, line_test.json)"]
    missing = missing_files(root)
    if not missing:
        return [f"data: {p}" for p in content_problems(root)]
    lacks = f"data: {root} lacks {', '.join(missing)}"
    if (
        not root.exists()
    ):  # relative to the current folder, as a classification study's data: say where it looked
        shown = root if root.is_absolute() else f"{root} ({root.resolve()}: relative to the current folder)"
        lacks = f"data: folder {shown} does not exist (a study reads {', '.join(missing)} there)"
    if root.resolve() in (storage_data(spec), Path(DEFAULT_DATA["completion"]).resolve()):
        return [
            f"{lacks}; build the proxy with `python -m tasks.build_local --tasks completion --out {root.parent}` "
            "(docs/COMPLETION_TASK.md)"
        ]
    return [f"{lacks}; {py150_advice(root, missing)} (docs/COMPLETION_TASK.md)"]


def completion_param_problems(spec: Any) -> list[str]:
    """The distil hyperparameters a completion study sets: typed and in range, as a classification study's."""
    from kd_methods import get_method

    defaults = get_method("distil").defaults
    params = spec.method_params.get("distil") or {}
    found = (_param_problem("distil", k, v, defaults[k]) for k, v in params.items() if k in defaults)
    return [p for p in found if p]


def student_init_problems(spec: Any) -> list[str]:
    """``pretrained:<hub id>`` is refused: a student loads a folder whose vocabulary is the teacher's as the study
    uses it (CodeXGLUE's tokens added), which no hub GPT-2 has; a folder must exist and hold a causal LM."""
    from models.lm_teacher import causal_lm_problem

    out = []
    for init in spec.student_init:
        source = init.split(":", 1)[1].strip() if init.startswith("pretrained:") else ""
        if source and Path(source).expanduser().exists():
            out += [
                f"student_init '{init}': {p}" for p in [causal_lm_problem(Path(source).expanduser())] if p
            ]
        elif source and (_looks_like_path(source) or source.count("/") > 1):
            out.append(f"student_init '{init}': folder {Path(source).expanduser()} does not exist")
        elif source and source.count("/") == 1:
            out.append(
                f"student_init '{init}': a hub id cannot initialise a student (its vocabulary lacks CodeXGLUE's "
                "tokens); give a folder holding a GPT-2 of the teacher's width and vocabulary "
                "(docs/COMPLETION_STUDY.md)"
            )
    return out


def lm_teacher_problems(spec: Any) -> list[str]:
    """A completion teacher is random:gpt2, an alias, a hub id (not checkable offline, so accepted) or a folder
    holding a causal LM (a classification teacher's folder is refused here, not after Ray starts). An alias
    (``codegpt``) is neither a path nor an existing folder, so it passes as a hub id does."""
    from models.lm_teacher import causal_lm_problem

    out, gen = [], spec.generation
    for i, t in enumerate(spec.teachers):
        where, src = f"teachers.{i} ('{t.name}')", t.source
        positions = t.positions if t.random else None
        if not t.random and (path := Path(src).expanduser()).exists():
            problem = causal_lm_problem(path)
            out += [f"{where}: {problem}"] if problem else []
            positions = (
                None if problem else json.loads((path / "config.json").read_text()).get("n_positions", 1024)
            )
        elif not t.random and (_looks_like_path(src) or src.count("/") > 1):
            out.append(f"{where}: teacher folder {path} does not exist")
        # line completion's context, new tokens included, must fit the positions (tasks/completion/generate.py)
        length = gen.max_length or positions
        if positions and length and (length > positions or length - gen.max_new_tokens < 1):
            out.append(
                f"{where}: generation.max_length {length} with max_new_tokens {gen.max_new_tokens} does not fit its "
                f"{positions} positions (max_length <= positions, and > max_new_tokens)"
            )
    return out


def _looks_like_path(source: str) -> bool:
    return source.startswith(("/", "./", "../", "~")) or source in (".", "..") or "\\" in source


def teacher_problems(spec: StudySpec) -> list[str]:
    """A teacher is an alias, random:<arch>, an existing folder, or an ``org/name`` hub id (not checkable
    offline, so accepted). Anything else is a typo or a missing folder."""
    from orchestrator.train.trial import TEACHER_ALIASES

    aliases = sorted([*TEACHER_ALIASES, "minilm"])
    out = []
    for i, t in enumerate(spec.teachers):
        where, src = f"teachers.{i} ('{t.name}')", t.source
        if src.startswith("random:") or src in TEACHER_ALIASES:
            continue
        if src == "minilm":
            from models.offline import minilm_path

            try:
                minilm_path()
            except Exception as err:  # noqa: BLE001 - the package is missing or broken: say so
                out.append(f"{where}: {err}")
            continue
        path = Path(src).expanduser()
        if path.exists():
            if not (path / "config.json").is_file():
                out.append(f"{where}: folder {path} holds no config.json (not a saved model)")
        elif _looks_like_path(src):
            out.append(f"{where}: teacher folder {path} does not exist")
        elif src.count("/") != 1:
            out.append(
                f"{where}: unknown teacher source '{src}': not a folder, not a hub id (org/name); "
                f"aliases: {aliases}, or random:roberta / random:bert"
            )
    return out
