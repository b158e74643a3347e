"""Where the completion data come from, which version they are, and how to read them.

Two published versions of CodeXGLUE's py150 line-level test set exist and are not interchangeable (see
docs/COMPLETION_TASK.md): every run records the one it used as ``codexglue_version``.

* ``codexglue-2021``: the official set since CodeXGLUE commit f035d42 (2021-07-30): literal placeholders
  (``<STR_LIT>``, ``<NUM_LIT:1>``), 10,000 samples, CodeGPT baseline EM 42.18 / ES 71.23. Training text is py150
  prepared with the current preprocess.py (``python -m tasks.completion prepare-py150``).
* ``codexglue-2020``: the set the Hugging Face loaders serve (generated from the madlag/CodeXGLUE fork, 2020-12):
  short literals kept raw, docstrings dropped, no placeholders; CodeGPT baseline EM 39.11 / ES 69.69.
* ``local-proxy``: ``python -m tasks.build_local --tasks completion``: the 2021 preprocessing run on Python files of
  this machine. A pipeline test, not a substitute for py150's numbers.
* ``own``: a line-level set that ``python -m tasks.completion make-line-test`` cut from a data folder's own
  ``test.txt`` (a corpus of the user's, or py150's text with a set of our cuts): not CodeXGLUE's set.

On-disk layout of a data folder (the proxy writes exactly this; a py150 preparation too):
``train.txt``, ``validation.txt`` (CodeXGLUE's name ``dev.txt`` is accepted), ``test.txt``: one preprocessed file
per line, ``<s> tok tok <EOL> ... </s>``; ``line_test.json``: JSON lines ``{"id", "input", "gt"}`` as CodeXGLUE's
line-level ``test.json``; optional ``version.json``: ``{"codexglue_version": ...}``.
"""

from __future__ import annotations

import hashlib
import json
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

SPLITS = ("train", "validation", "test")
_SPLIT_ALIASES = {"valid": "validation", "dev": "validation"}
# File names tried per split, first match wins (ours, then CodeXGLUE's token_completion names).
_SPLIT_FILES = {"train": ("train.txt",), "validation": ("validation.txt", "dev.txt"), "test": ("test.txt",)}
LINE_TEST_FILE = "line_test.json"
# (hub id, config): codexglue-2020, loaded at ``main`` (no revision=). The revision VERSIONS records below is the
# loading-script commit, which datasets >= 4 cannot load; the parquet conversion's full commit sha could not be
# verified offline (only its short form d480ae0 is known), so none is pinned here rather than a guessed one
# (docs/HUB.md says how to pin it).
HUB_LINE_TEST = ("google/code_x_glue_cc_code_completion_line", "python")
VERSION_FILE = "version.json"

_CXG_RAW = "https://raw.githubusercontent.com/microsoft/CodeXGLUE"
# The snapshot read (2024-04-23); the line set and literals last changed in f035d42 (2021-07-30).
_CXG_COMMIT = "ac74a62802a0dd159b3258c78a2df8ad36cdf2b9"
# git blob id of that test.json (sha1 of "blob <size>\0" + content): check a download against it.
LINE_TEST_2021_BLOB = "ac761644f764862b7bab340147d74eda3808240e"
_MADLAG_RAW = "https://raw.githubusercontent.com/madlag/CodeXGLUE"


@dataclass(frozen=True)
class DataVersion:
    """One pinned version of the completion data: what to download and what baseline it goes with."""

    name: str
    line_test_url: str
    token_source: str
    baseline_em: float | None
    baseline_es: float | None
    note: str


VERSIONS: dict[str, DataVersion] = {
    "codexglue-2021": DataVersion(
        name="codexglue-2021",
        line_test_url=f"{_CXG_RAW}/{_CXG_COMMIT}/Code-Code/CodeCompletion-line/dataset/py150/line_completion/test.json",
        token_source="http://files.srl.inf.ethz.ch/data/py150_files.tar.gz (then `python -m tasks.completion "
        "prepare-py150 --py150 DIR --out DIR`)",
        baseline_em=42.18,
        baseline_es=71.23,
        note="official line-level set since CodeXGLUE f035d42 (2021-07-30); literal placeholders",
    ),
    "codexglue-2020": DataVersion(
        name="codexglue-2020",
        line_test_url="hf://datasets/google/code_x_glue_cc_code_completion_line (config python, split train, "
        f"revision ad313167d66ed51838695e9b552f2131e2507390; from {_MADLAG_RAW}/main/Code-Code/"
        "CodeCompletion-line/dataset/py150/line_completion)",
        token_source="hf://datasets/google/code_x_glue_cc_code_completion_token (config python)",
        baseline_em=39.11,
        baseline_es=69.69,
        note="2020 preprocessing (raw short literals, docstrings dropped); what the HF loaders serve",
    ),
    "local-proxy": DataVersion(
        name="local-proxy",
        line_test_url="",
        token_source="python -m tasks.build_local --tasks completion --out data/local",
        baseline_em=None,
        baseline_es=None,
        note="2021 preprocessing on this machine's Python files; a proxy, not py150",
    ),
    "own": DataVersion(
        name="own",
        line_test_url="",
        token_source="a corpus of your own in this layout (python -m tasks.completion make-line-test cuts its set)",
        baseline_em=None,
        baseline_es=None,
        note="a line-level set cut here from a corpus's test.txt; ES/EM not comparable with CodeXGLUE's figures",
    ),
}
LITERALS_URL = f"{_CXG_RAW}/{_CXG_COMMIT}/Code-Code/CodeCompletion-token/dataset/py150/literals.json"
DEFAULT_VERSION = "codexglue-2021"


class CompletionDataError(FileNotFoundError):
    """Completion data missing or malformed; the message is one line naming the file and what to do."""

    user_error = True  # the user's to fix: printed as one ``error:`` line (orchestrator/core/errors.py)


def canonical_split(split: str) -> str:
    name = _SPLIT_ALIASES.get(split, split)
    if name not in SPLITS:
        raise ValueError(f"unknown completion split {split!r}; valid: {[*SPLITS, 'valid']}")
    return name


PY150_URL = VERSIONS["codexglue-2021"].token_source.split(" ")[0]


def prepare_command(out: Path | str) -> str:
    """The command that prepares py150 into ``out`` with the line-level test set a study scores on."""
    return f"python -m tasks.completion prepare-py150 --py150 DIR --out {out} --line-test test.json"


def missing_files(data_dir: Path | str) -> list[str]:
    """What a study's completion data folder lacks of what a trial reads: the train and validation text and
    ``line_test.json`` (``[]`` when complete)."""
    folder = Path(data_dir)
    out = [" or ".join(_SPLIT_FILES[s]) for s in ("train", "validation") if not _split_file(folder, s)]
    return out + ([] if (folder / LINE_TEST_FILE).is_file() else [LINE_TEST_FILE])


def py150_advice(data_dir: Path | str, missing: list[str]) -> str:
    """How to fill ``data_dir`` with py150 (CodeXGLUE's 2021 version) when it lacks ``missing``, in one line."""
    test_json = VERSIONS["codexglue-2021"].line_test_url
    if missing == [LINE_TEST_FILE]:
        return (
            f"save CodeXGLUE's line-level test.json ({test_json}) there as {LINE_TEST_FILE} (what prepare-py150's "
            f"--line-test does), or rerun `{prepare_command(data_dir)}`"
        )
    return f"prepare py150 with `{prepare_command(data_dir)}` (DIR: {PY150_URL} extracted; test.json: {test_json})"


def _missing(what: Path) -> CompletionDataError:
    return CompletionDataError(
        f"{what}: missing; build the offline proxy with `python -m tasks.build_local --tasks completion --out "
        f"data/local`, or {py150_advice(what.parent, [what.name])}"
    )


def _split_file(data_dir: Path, split: str) -> Path | None:
    return next((data_dir / f for f in _SPLIT_FILES[split] if (data_dir / f).is_file()), None)


def text_lines(path: Path) -> Iterator[tuple[int, str]]:
    """``(line number, text)`` of a UTF-8 data file, read as the classification tasks' files are
    (``tasks.base.text_lines``: a byte-order mark skipped); CompletionDataError naming the file, line and column of
    a byte that is not UTF-8."""
    from tasks.base import text_lines as lines

    try:
        yield from lines(path)
    except ValueError as err:
        raise CompletionDataError(str(err)) from None


def load_split(data_dir: Path, split: str, limit: int | None = None) -> list[str]:
    """The preprocessed files of one split: each ``"<s> tok tok <EOL> ... </s>"``, in file order (blank lines and
    the spaces around a line skipped; ``limit``: the first that many). CompletionDataError for an empty split."""
    out: list[str] = []
    for text in split_files(data_dir, split):
        out.append(text)
        if limit is not None and len(out) >= limit:
            break
    return out


def split_files(data_dir: Path | str, split: str) -> Iterator[str]:
    """``load_split``'s files one at a time (nothing kept: a check of a whole split reads it in constant memory)."""
    name = canonical_split(split)
    data_dir = Path(data_dir)
    path = _split_file(data_dir, name)
    if path is None:
        raise _missing(data_dir / _SPLIT_FILES[name][0])
    empty = True
    for n, line in text_lines(path):
        text = line.strip()
        if not text:
            continue
        if not (text.startswith("<s>") and text.endswith("</s>")):
            raise CompletionDataError(
                f"{path}:{n}: not a preprocessed file (must start '<s>' and end '</s>')"
            )
        empty = False
        yield text
    if empty:
        raise CompletionDataError(f"{path}: no files in it (every line is blank); a {name} split needs some")


def content_problems(data_dir: Path | str) -> list[str]:
    """What a trial would trip on in a complete data folder, found before anything starts: every file of the
    train and validation splits (UTF-8, the format; an empty split), every line sample, ``version.json``. A whole
    split is one pass that keeps nothing (``--plan`` already hashes the training text), and a bad line deep in it
    would otherwise fail every trial after the start."""
    out = []
    checks = [
        lambda: deque(split_files(data_dir, "train"), maxlen=0),
        lambda: deque(split_files(data_dir, "validation"), maxlen=0),
    ]
    for check in (*checks, lambda: load_line_test(data_dir), lambda: codexglue_version(data_dir)):
        try:
            check()
        except CompletionDataError as err:
            out.append(str(err))
    return out or [p for p in [preprocessing_mismatch(data_dir)] if p]


SNIFF_SAMPLES = (
    100  # fewer line samples than this may hold no literal at all: too few to tell the versions apart
)


def _has_placeholders(text: str) -> bool:
    return "<STR_LIT" in text or "<NUM_LIT" in text


def preprocessing_mismatch(data_dir: Path | str) -> str | None:
    """The training text and the line set preprocessed differently (one with the 2021 preprocessing's literal
    placeholders, the other with the 2020 one's raw literals): a model trained on one loses ES/EM on the other
    without a word (docs/COMPLETION_TASK.md, "Data versions"), and the runs would be tagged with the line set's."""
    data_dir = Path(data_dir)
    train, line = _split_file(data_dir, "train"), data_dir / LINE_TEST_FILE
    if train is None or not line.is_file():
        return None
    samples = load_line_test(line)
    with train.open(encoding="utf-8", errors="replace") as f:  # a look for placeholders only
        head = f.read(2_000_000)
    if len(samples) < SNIFF_SAMPLES or head.count("\n") < SNIFF_SAMPLES:
        return None
    in_train, in_test = _has_placeholders(head), any(_has_placeholders(s["input"] + s["gt"]) for s in samples)
    if in_train == in_test:
        return None
    with_, without = (train, line) if in_train else (line, train)
    return (
        f"{with_.name} has the 2021 preprocessing's literal placeholders (<STR_LIT>, <NUM_LIT>) and {without.name} "
        f"has none (the 2020 preprocessing's raw literals): a model trained on one is scored wrongly on the other; "
        f"put the training text and line set of one version in {data_dir}"
    )


def load_hub_line_test() -> list[dict]:
    """The line-level py150 test set as the Hugging Face hub serves it (``HUB_LINE_TEST``: CodeXGLUE's 2020
    version, 10,000 samples in its one split ``train``), through ``datasets.load_dataset`` like the classification
    tasks' hub data (offline: the cached copy, tasks/hub_access.py)."""
    from tasks.hub_access import load_hub_dataset

    hf_id, config = HUB_LINE_TEST
    part = load_hub_dataset("completion", hf_id, config)["train"]
    missing = [c for c in ("input", "gt") if c not in part.column_names]
    if missing:
        raise CompletionDataError(f"dataset '{hf_id}' (config {config}) lacks field(s) {missing}")
    return [dict(row) for row in part]


def load_line_test(path: Path | str) -> list[dict]:
    """CodeXGLUE line-level samples: ``[{"input": "<s> ...", "gt": "...", ...}]`` (other fields, e.g. id, kept).

    ``path`` is a test.json / line_test.json file, a data folder holding ``line_test.json``, or ``"hub"``
    (``load_hub_line_test``: the 2020 version, ``codexglue-2020``).
    """
    if str(path) == "hub":
        return load_hub_line_test()
    path = Path(path)
    if path.is_dir():
        path = path / LINE_TEST_FILE
    if not path.is_file():
        raise _missing(path)
    from tasks.base import jsonl_records

    out = []
    try:
        for n, rec in jsonl_records(path):
            if not isinstance(rec, dict) or not all(isinstance(rec.get(k), str) for k in ("input", "gt")):
                raise CompletionDataError(f"{path}:{n}: needs string fields 'input' and 'gt'")
            out.append(rec)
    except ValueError as err:  # a line that is not UTF-8 or not JSON: file, line, column
        raise CompletionDataError(str(err)) from None
    if not out:
        raise CompletionDataError(f"{path}: no line samples in it; a completion study scores on them")
    return out


def codexglue_version(data_dir: Path | str) -> str:
    """The data version a run records: ``version.json`` when the folder has one, else read off the text.

    Without a marker the test split (or line_test.json) is sniffed: placeholders (``<STR_LIT``/``<NUM_LIT``) mean
    the 2021 preprocessing, their absence the 2020 one.
    """
    if str(data_dir) == "hub":
        return "codexglue-2020"  # the hub's line set (load_hub_line_test)
    data_dir = Path(data_dir)
    marker = data_dir / VERSION_FILE
    if marker.is_file():
        try:
            name = json.loads(marker.read_text(encoding="utf-8"))["codexglue_version"]
        except (json.JSONDecodeError, KeyError, TypeError):
            raise CompletionDataError(f"{marker}: needs a JSON object with 'codexglue_version'") from None
        if name not in VERSIONS:
            raise CompletionDataError(
                f"{marker}: unknown codexglue_version {name!r}; valid: {sorted(VERSIONS)}"
            )
        return name
    for fname in (LINE_TEST_FILE, "test.json", "test.txt"):
        path = data_dir / fname
        if path.is_file():
            with path.open(encoding="utf-8", errors="replace") as f:  # a look for placeholders only
                head = f.read(2_000_000)
            return "codexglue-2021" if ("<STR_LIT" in head or "<NUM_LIT" in head) else "codexglue-2020"
    raise _missing(data_dir / LINE_TEST_FILE)


def scoring_digest(data_dir: Path | str) -> str:
    """sha256 of what scores a trial besides its training text: the validation split's file, ``line_test.json`` and
    ``version.json`` (each by name and content; "absent" for one not there). In the trial key, so replacing the
    line set or the validation text reruns the trials instead of reporting scores of the set before."""
    data_dir = Path(data_dir)
    digest = hashlib.sha256()
    for path in (_split_file(data_dir, "validation"), data_dir / LINE_TEST_FILE, data_dir / VERSION_FILE):
        digest.update(path.name.encode() + b"\0" if path else b"no validation\0")
        if path is None or not path.is_file():
            digest.update(b"absent\0")
            continue
        with path.open("rb") as f:
            for block in iter(lambda: f.read(1 << 22), b""):
                digest.update(block)
    return digest.hexdigest()[:16]


def write_version(data_dir: Path, name: str, **extra: object) -> None:
    if name not in VERSIONS:
        raise ValueError(f"unknown codexglue_version {name!r}; valid: {sorted(VERSIONS)}")
    payload = {"codexglue_version": name, **extra}
    (Path(data_dir) / VERSION_FILE).write_text(json.dumps(payload, indent=2, sort_keys=True) + "\n", "utf-8")
