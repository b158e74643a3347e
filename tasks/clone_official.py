"""Clone detection from CodeXGLUE's own BigCloneBench files (``Code-Code/Clone-detection-BigCloneBench/dataset``):
``data.jsonl`` (one Java method a line, ``{"func": ..., "idx": "13653451"}``) and ``train.txt``, ``valid.txt``,
``test.txt`` (one pair a line, ``idx1<TAB>idx2<TAB>label``), read by the rules of CodeXGLUE's ``run.py``:

* ids are compared as text (an ``idx`` in ``data.jsonl`` may be a string or an integer);
* a pair naming an id ``data.jsonl`` lacks is skipped; one ``warning:`` line per file says how many;
* training and validation use a seeded 10% sample of their pairs, test every pair: the sampler and the seed (the
  study's data seed) of the hub copy (``CloneTask.hub_rows``), so a local copy of the official files trains on the
  pairs the hub copy gives.

Stricter than ``run.py``, which reads any label other than ``0`` as a clone: a label other than 0/1, a line
that is not three tab-separated fields and an ``idx`` given twice in ``data.jsonl`` stop loading, in one line naming
the file and the line. A folder holding a pre-joined ``train.jsonl`` (``func1``/``func2``/``label``) is read as
before, whole.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import TYPE_CHECKING

from tasks.examples import SPLITS, Example, RecordError, TaskData, check_max_samples, code_field
from tasks.jsonl_io import jsonl_records, text_lines

if TYPE_CHECKING:
    from tasks.base import Task

FUNCS = "data.jsonl"
# the pair files of each split, in order of preference (CodeXGLUE names validation valid.txt)
PAIR_FILES: dict[str, tuple[str, ...]] = {
    "train": ("train.txt",),
    "validation": ("valid.txt", "validation.txt", "dev.txt"),
    "test": ("test.txt",),
}
LAYOUT_HINT = "or CodeXGLUE's official BigCloneBench layout: data.jsonl with train.txt, valid.txt, test.txt"
PAIR_FORM = "idx1<TAB>idx2<TAB>label"
_WARNED: set[tuple[str, int, int]] = (
    set()
)  # (file, size, mtime) whose skipped pairs this process has reported
_SIZES: dict[tuple, dict[str, int]] = {}  # a plan's counts, per file stats


def is_official(folder: Path) -> bool:
    """A clone folder in CodeXGLUE's layout: no ``train.jsonl``, and ``data.jsonl`` or ``train.txt`` there. A
    pre-joined ``train.jsonl`` wins (read as before)."""
    folder = Path(folder)
    return not (folder / "train.jsonl").is_file() and any(
        (folder / n).is_file() for n in (FUNCS, "train.txt")
    )


def official_files(folder: Path) -> dict[str, Path | None]:
    """``{"data": data.jsonl, "train": train.txt, "validation": valid.txt, "test": test.txt}`` (None: not there):
    every file the loader reads, so every file a data key must hash."""
    folder = Path(folder)
    files: dict[str, Path | None] = {"data": folder / FUNCS if (folder / FUNCS).is_file() else None}
    for split, names in PAIR_FILES.items():
        files[split] = next((folder / n for n in names if (folder / n).is_file()), None)
    return files


def missing_files(folder: Path) -> list[str]:
    """The names of the official files ``folder`` lacks (validation: its first name, ``valid.txt``)."""
    return [
        FUNCS if role == "data" else PAIR_FILES[role][0]
        for role, path in official_files(folder).items()
        if path is None
    ]


def read_funcs(path: Path) -> dict[str, str]:
    """``{idx as text: normalised code}`` of ``data.jsonl``; ValueError naming the file and line for a line that is
    not JSON, lacks ``func`` or ``idx``, or repeats an ``idx``."""
    funcs: dict[str, str] = {}
    first: dict[str, int] = {}
    for lineno, record in jsonl_records(path):
        where = f"{path}:{lineno}"
        if not isinstance(record, dict):
            raise ValueError(f'{where}: a line of {FUNCS} is a JSON object {{"func": ..., "idx": ...}}')
        for name in ("func", "idx"):
            if name not in record:
                raise ValueError(
                    f"{where}: missing field '{name}' ({FUNCS} needs func, idx; got {sorted(record)})"
                )
        idx = record["idx"]
        if isinstance(idx, bool) or not isinstance(idx, str | int):
            raise ValueError(f"{where}: field 'idx' must be text or an integer, got {idx!r}")
        key = str(idx)
        if key in first:
            raise ValueError(
                f"{where}: idx '{key}' repeats line {first[key]}; each function's idx appears once"
            )
        try:
            funcs[key] = code_field(record, "func")
        except RecordError as exc:
            raise ValueError(f"{where}: {exc}") from None
        first[key] = lineno
    if not funcs:
        raise ValueError(f"{path}: no functions (an empty file)")
    return funcs


def read_pairs(path: Path, known: dict[str, str] | set[str]) -> tuple[list[tuple[str, str, int]], int]:
    """(the pairs of a split file whose ids are both ``known``, in file order; how many were skipped). ValueError
    naming the file and line for a line that is not three tab-separated fields or a label other than 0/1."""
    pairs: list[tuple[str, str, int]] = []
    skipped = 0
    for lineno, line in text_lines(path):
        text = line.strip()
        if not text:
            continue
        parts = text.split("\t")
        if len(parts) != 3:
            raise ValueError(
                f"{path}:{lineno}: expected {PAIR_FORM}, got {len(parts)} tab-separated field(s): {text[:60]!r}"
            )
        a, b, label = parts
        if label not in ("0", "1"):
            raise ValueError(
                f"{path}:{lineno}: unknown label {label!r}; valid: 0 or 1 (CodeXGLUE's run.py reads any other "
                "value as 1; fix the line instead)"
            )
        if a in known and b in known:
            pairs.append((a, b, int(label)))
        else:
            skipped += 1
    return pairs, skipped


def _warn_skipped(path: Path, skipped: int, total: int) -> None:
    """One line per file and process: CodeXGLUE's run.py drops such pairs without a word."""
    st = path.stat()
    stamp = (str(path.resolve()), st.st_size, st.st_mtime_ns)
    if skipped and stamp not in _WARNED:
        _WARNED.add(stamp)
        print(
            f"warning: {path}: {skipped} of {total} pairs skipped: an idx not in {FUNCS} (as CodeXGLUE's run.py "
            "skips them)",
            file=sys.stderr,
        )


def _read_folder(folder: Path) -> tuple[dict[str, str], dict[str, list[tuple[str, str, int]]]]:
    """The functions and every split's usable pairs; FileNotFoundError for a missing file, ValueError (file, line)
    for a bad line or a split left without pairs."""
    files = official_files(folder)
    lacking = missing_files(folder)
    if lacking:
        raise FileNotFoundError(
            f"{folder}: CodeXGLUE's clone layout lacks {', '.join(lacking)} (it needs {FUNCS} with train.txt, "
            "valid.txt and test.txt; or give train.jsonl, validation.jsonl and test.jsonl with func1, func2, label)"
        )
    funcs = read_funcs(files["data"])  # type: ignore[arg-type]
    splits = {}
    for split in SPLITS:
        path: Path = files[split]  # type: ignore[assignment]
        pairs, skipped = read_pairs(path, funcs)
        if not pairs:
            raise ValueError(
                f"{path}: the {split} split has no pair whose two ids are in {FUNCS} ({skipped} skipped)"
            )
        _warn_skipped(path, skipped, skipped + len(pairs))
        splits[split] = pairs
    return funcs, splits


def load_official(task: Task, folder: Path, data_seed: int = 0, max_samples: int | None = None) -> TaskData:
    """The clone task's splits from the official files: train and validation sampled by ``task.hub_rows`` with the
    study's ``data_seed`` (as the hub copy), then the first ``max_samples`` of each split. ``Example.id`` is the
    pair's ``"idx1<TAB>idx2"``, the key of CodeXGLUE's evaluator."""
    check_max_samples(max_samples)
    funcs, splits = _read_folder(Path(folder))
    out: dict[str, list[Example]] = {}
    for split, pairs in splits.items():
        rows = task.hub_rows(split, len(pairs), data_seed)
        if rows is not None:
            pairs = [pairs[int(i)] for i in rows]
        if max_samples is not None:
            pairs = pairs[:max_samples]
        out[split] = [
            Example(idx=i, code=funcs[a], label=label, code2=funcs[b], id=f"{a}\t{b}")
            for i, (a, b, label) in enumerate(pairs)
        ]
    return TaskData(**out)


def official_problem(folder: Path) -> str | None:
    """The first mistake of an official-layout folder (a missing file, a bad line, a split without usable pairs,
    a training file of one class), in one line naming the file and line; None if it loads."""
    try:
        _, splits = _read_folder(Path(folder))
    except (OSError, ValueError) as err:
        return str(err)
    classes = {label for _, _, label in splits["train"]}
    if len(classes) == 1:
        path = official_files(folder)["train"]
        return (
            f"{path}: every usable pair has label {next(iter(classes))}; a classifier needs two classes to learn "
            "from"
        )
    return None


def official_sizes(task: Task, folder: Path) -> dict[str, int] | None:
    """Pairs per split as the loader will use them (train and validation: the 10% sample's size), counted without
    checking the lines; None when a file is missing or unreadable (the study's check says why)."""
    files = official_files(folder)
    if any(p is None for p in files.values()):
        return None
    stamp = tuple((str(p), p.stat().st_size, p.stat().st_mtime_ns) for p in files.values() if p is not None)
    if stamp not in _SIZES:
        try:
            records = jsonl_records(files["data"])  # type: ignore[arg-type]
            known = {str(r.get("idx")) for _, r in records if isinstance(r, dict)}
            counts = {}
            for split in SPLITS:
                n = sum(
                    1
                    for _, line in text_lines(files[split])  # type: ignore[arg-type]
                    if len(parts := line.strip().split("\t")) == 3 and parts[0] in known and parts[1] in known
                )
                rows = task.hub_rows(split, n, 0)  # the sample's size does not depend on the seed
                counts[split] = n if rows is None else len(rows)
        except (OSError, ValueError):
            return None
        _SIZES[stamp] = counts
    return dict(_SIZES[stamp])
