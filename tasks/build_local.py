"""Build small local versions of the three tasks from real source code already on this machine.

``python -m tasks.build_local --out DIR [--train N --validation N --test N] [--tasks ...] [--seed S]`` writes
``DIR/<task>/{train,validation,test}.jsonl`` in the Hugging Face schemas, so ``load_task_data(task, DIR)`` reads
them exactly as it would the hub data. It needs no network, runs in seconds and, for one machine and one set of
settings, writes the same bytes every time (file lists are sorted, every random choice is seeded).

What the data are, and how honest each one is:

* **exception** is built the way CuBERT built its ETH Py150 exception set, only from other code: Python
  functions from this interpreter's standard library and site-packages that contain ``try: ... except T:``
  with ``T`` one of the 20 CuBERT exception types (``T`` may be dotted, e.g. ``urllib.error.HTTPError``). One
  handler per function has its type replaced by ``__HOLE__``; the label is the type's name. Fields: ``function``,
  ``label``, ``info`` (``file:line`` of the function). Several types (``DoesNotExist``, ``ObjectDoesNotExist``,
  ``ValidationError``, ``HTTPError``) are rare or absent outside Django-style code; the label set stays all 20.
* **defect** is a *proxy* for CodeXGLUE/Devign (which are real vulnerability-fixing commits in FFmpeg and QEMU):
  C functions found in ``.c`` and ``.h`` files here (the Python headers, ``/usr/include``, C files under the
  interpreter's prefix and site-packages; C++ headers left out). Each chosen function appears twice in its split:
  untouched (``target`` false) and with one injected bug (``target`` true): a comparison made off by one
  (``<``/``<=``), a guard ``if (...) return/goto ...;`` removed (NULL and bounds checks), ``free``/``Py_DECREF``/
  ``close`` dropped, ``+``/``-`` swapped, an index shifted (``a[i]`` to ``a[i + 1]``), ``&&``/``||`` swapped or
  ``==``/``!=`` flipped. Classes are balanced and a function cannot be told apart by identity, only by the bug.
  Fields: ``id``, ``func``, ``target``, ``project`` (``file:line``), ``mutation`` (the bug kind, or ``none``).
* **clone** is a *proxy* for BigCloneBench: Java methods from the JDK's ``lib/src.zip``. A positive pair is a
  method and a copy of it with parameters and locals renamed, comments dropped and the layout changed (type-2
  clones); a negative pair is the same method and a different one of similar length, transformed the same way,
  so ``func2`` always looks rewritten and only its content tells the classes apart. Methods whose text is the
  same up to identifier names are kept once, so no negative pair is secretly a clone. Fields: ``id``, ``id1``,
  ``id2``, ``func1``, ``func2``, ``label``, ``source1``, ``source2``. Without a JDK, C functions are used.
* Without any C (or Java) source on the machine, defect and clone fall back to Python functions (with a
  warning); the bugs and renamings are then made on the AST and printed with ``ast.unparse``.

Functions are cut out of their files with tree-sitter (``tasks.extract``): only those the C, Java or Python grammar
reads without a parse error are kept, so code behind unknown macros, C++ in C headers and Python 2 files drop
out. The bug sites and the names a clone renames (parameters and locals the grammar declares) are syntax-tree
nodes (``tasks.transform``); the Python fallback edits on ``ast`` (``tasks.transform_python``).

Every function lands in exactly one split, chosen by a hash of its file name and function name, so copies of a
function in several places (the same header in several Python versions) never straddle splits. Functions have
3 to 80 lines. ``manifest.json`` in DIR records the settings and the counts; a rebuild with the same settings
does nothing.
"""

from __future__ import annotations

import json
import os
import warnings
from collections import Counter
from pathlib import Path

from tasks.cli_errors import OneLineArgumentParser, fail
from tasks.completion.proxy import ProxySettings, build_completion_proxy
from tasks.examples import SPLITS
from tasks.local_defect_clone import build_clone, build_defect
from tasks.local_exception import (
    HOLE,
    MAX_HOLES_PER_FUNCTION,
    build_exception,
    exception_type_name,
    mask_handlers,
)
from tasks.local_sources import MAX_FILE_BYTES, MAX_FILES, Sources, decode_source

__all__ = [
    "ALL_TASKS",
    "BUILDER_VERSION",
    "DEFAULT_SIZES",
    "EXTRA_TASKS",
    "HOLE",
    "MAX_FILES",
    "MAX_FILE_BYTES",
    "MAX_HOLES_PER_FUNCTION",
    "Sources",
    "build_local",
    "decode_source",
    "exception_type_name",
    "main",
    "mask_handlers",
]

BUILDER_VERSION = 2  # 2: functions, bugs and clones from tree-sitter syntax trees
DEFAULT_SIZES: dict[str, int] = {"train": 2000, "validation": 300, "test": 300}
ALL_TASKS = ("defect", "clone", "exception")
# Built only when asked for (`--tasks completion`): a different layout (token text, see tasks/completion/proxy.py).
EXTRA_TASKS = ("completion",)

_BUILDERS = {"defect": build_defect, "clone": build_clone, "exception": build_exception}
_LABEL_FIELD = {"defect": "target", "clone": "label", "exception": "label"}


# ------------------------------------------------------------------------------------------------ writing


def _check_sizes(sizes: dict[str, int] | None) -> dict[str, int]:
    merged = dict(DEFAULT_SIZES)
    for name, n in (sizes or {}).items():
        if name not in SPLITS:
            raise ValueError(f"tasks.build_local: unknown split '{name}' in sizes; valid: {list(SPLITS)}")
        if not isinstance(n, int) or isinstance(n, bool) or n < 1:
            raise ValueError(f"tasks.build_local: sizes['{name}'] must be a positive int, got {n!r}")
        merged[name] = n
    return merged


def _check_tasks(tasks: list[str] | tuple[str, ...] | None) -> list[str]:
    chosen = list(ALL_TASKS) if tasks is None else list(dict.fromkeys(tasks))
    for t in chosen:
        if t not in ALL_TASKS + EXTRA_TASKS:
            raise ValueError(f"tasks.build_local: unknown task '{t}'; valid: {list(ALL_TASKS + EXTRA_TASKS)}")
    return chosen


def _write_jsonl(path: Path, records: list[dict]) -> None:
    tmp = path.with_suffix(".jsonl.tmp")
    with tmp.open("w", encoding="utf-8", newline="\n") as f:
        for rec in records:
            f.write(json.dumps(rec, ensure_ascii=False) + "\n")
    os.replace(tmp, path)


def _read_manifest(out: Path) -> dict:
    path = out / "manifest.json"
    if not path.is_file():
        return {"builder_version": BUILDER_VERSION, "tasks": {}}
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError):
        return {"builder_version": BUILDER_VERSION, "tasks": {}}
    if not isinstance(manifest, dict) or not isinstance(manifest.get("tasks"), dict):
        return {"builder_version": BUILDER_VERSION, "tasks": {}}
    return manifest


def build_local(
    out: str | Path,
    sizes: dict[str, int] | None = None,
    tasks: list[str] | tuple[str, ...] | None = None,
    *,
    seed: int = 0,
    sources: Sources | None = None,
    completion: ProxySettings | None = None,
) -> dict[str, Path]:
    """Write ``out/<task>/{train,validation,test}.jsonl`` for each task; returns ``{task: out/<task>}``.

    ``sizes`` overrides the per-split sample counts (default train 2000, validation 300, test 300; fewer when the
    machine has fewer functions). A task whose files exist and whose manifest entry has the same settings is not
    rebuilt.
    """
    out = Path(out)
    sizes = _check_sizes(sizes)
    chosen = _check_tasks(tasks)
    sources = Sources.discover() if sources is None else sources
    out.mkdir(parents=True, exist_ok=True)
    manifest = _read_manifest(out)
    result: dict[str, Path] = {}
    if "completion" in chosen:
        chosen.remove("completion")
        proxy = completion or ProxySettings(seed=seed)
        build_completion_proxy(sources.python_roots, out / "completion", proxy)
        result["completion"] = out / "completion"
    for task in chosen:
        task_dir = out / task
        settings = {
            "builder_version": BUILDER_VERSION,
            "sizes": sizes,
            "seed": seed,
            "sources": sources.describe(),
        }
        entry = manifest["tasks"].get(task)
        if (
            entry is not None
            and entry.get("settings") == settings
            and all((task_dir / f"{s}.jsonl").is_file() for s in SPLITS)
        ):
            result[task] = task_dir
            continue
        records, info = _BUILDERS[task](sizes, sources, seed)
        for split in SPLITS:
            if not records[split]:
                raise RuntimeError(
                    f"tasks.build_local: the {task} {split} split came out empty (read {info['files_read']} "
                    f"{info['language']} files from {sources.describe()}); this machine has too little source code"
                )
        task_dir.mkdir(parents=True, exist_ok=True)
        for split in SPLITS:
            _write_jsonl(task_dir / f"{split}.jsonl", records[split])
        label_field = _LABEL_FIELD[task]
        manifest["tasks"][task] = {
            "settings": settings,
            "language": info["language"],
            "files_read": info["files_read"],
            "counts": {s: len(records[s]) for s in SPLITS},
            "labels": {
                s: dict(sorted(Counter(str(r[label_field]) for r in records[s]).items())) for s in SPLITS
            },
        }
        for split in SPLITS:
            if len(records[split]) < sizes[split]:
                warnings.warn(
                    f"tasks.build_local: {task} {split} has {len(records[split])} samples, fewer than the "
                    f"{sizes[split]} asked for: that is all the usable source on this machine",
                    stacklevel=2,
                )
        manifest["builder_version"] = BUILDER_VERSION
        tmp = out / "manifest.json.tmp"
        tmp.write_text(json.dumps(manifest, indent=2, sort_keys=True) + "\n", encoding="utf-8")
        os.replace(tmp, out / "manifest.json")
        result[task] = task_dir
    return result


def main(argv: list[str] | None = None) -> int:
    parser = OneLineArgumentParser(
        prog="python -m tasks.build_local",
        description="Build local JSON Lines versions of the defect, clone and exception tasks from source code on "
        "this machine (defect and clone are proxies; see the module docstring).",
    )
    parser.add_argument("--out", required=True, type=Path, help="output folder; gets <task>/{split}.jsonl")
    for split in SPLITS:
        parser.add_argument(
            f"--{split}", type=int, default=DEFAULT_SIZES[split], help=f"{split} samples per task"
        )
    parser.add_argument("--tasks", nargs="+", choices=ALL_TASKS + EXTRA_TASKS, default=list(ALL_TASKS))
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--completion-mb", type=float, default=4.0, help="completion: MB of token text (all splits)"
    )
    parser.add_argument(
        "--completion-lines", type=int, default=500, help="completion: line-level test samples"
    )
    args = parser.parse_args(argv)
    if "completion" in args.tasks and not args.completion_mb > 0:  # named by flag, not ProxySettings' field
        parser.error(f"--completion-mb must be above 0, got {args.completion_mb}")
    if "completion" in args.tasks and args.completion_lines < 1:
        parser.error(f"--completion-lines must be at least 1, got {args.completion_lines}")
    sizes = {s: getattr(args, s) for s in SPLITS}
    try:
        proxy = ProxySettings(max_mb=args.completion_mb, line_samples=args.completion_lines, seed=args.seed)
        paths = build_local(args.out, sizes, args.tasks, seed=args.seed, completion=proxy)
    except (ValueError, RuntimeError, OSError) as exc:  # OSError: an --out that cannot be written
        fail(exc)
    manifest = _read_manifest(args.out)
    for task, path in paths.items():
        if task == "completion":
            info = json.loads((path / "version.json").read_text(encoding="utf-8"))
            print(f"completion: {path} (python token text, a proxy of py150; {info['counts']})")
            continue
        entry = manifest["tasks"][task]
        counts = ", ".join(f"{s} {entry['counts'][s]}" for s in SPLITS)
        print(f"{task}: {path} ({entry['language']}; {counts})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
