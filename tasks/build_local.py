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

import argparse
import ast
import glob
import hashlib
import json
import math
import os
import random
import re
import sys
import sysconfig
import warnings
import zipfile
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path

from tasks.base import SPLITS
from tasks.completion.proxy import ProxySettings, build_completion_proxy
from tasks.exception import EXCEPTION_LABELS
from tasks.extract import Function, extract_functions, parse_python, python_function_source, source_lines
from tasks.transform import abstract_signature, declared_names, inject_bug, rename_and_relayout
from tasks.transform_python import inject_python_bug, python_rename_and_relayout

BUILDER_VERSION = 2  # 2: functions, bugs and clones from tree-sitter syntax trees
DEFAULT_SIZES: dict[str, int] = {"train": 2000, "validation": 300, "test": 300}
ALL_TASKS = ("defect", "clone", "exception")
# Built only when asked for (`--tasks completion`): a different layout (token text, see tasks/completion/proxy.py).
EXTRA_TASKS = ("completion",)
HOLE = "__HOLE__"
MAX_FILE_BYTES = 3_000_000
# Caps on files read per language: with them a full default build stays within seconds on a big machine.
MAX_FILES = {"c": 6000, "java": 3000, "python": 20000}
# At most this many samples from one function (each masks a different handler): more would be near-copies.
MAX_HOLES_PER_FUNCTION = 3
_CPP_PATH = re.compile(
    r"/(?:c\+\+|llvm[^/]*|node|boost|torch|v8|eigen3?|qt\w*|google|absl)/|\+\+|xx\.h$|\.hpp$"
)
_HANDLER_HINT = re.compile(r"except\s+[\w.]*(?:" + "|".join(EXCEPTION_LABELS) + r")\b")


@dataclass(frozen=True)
class Sources:
    """Where the builder reads code from. ``discover()`` looks on this machine; tests pass their own."""

    c_files: tuple[Path, ...] = ()
    java_zips: tuple[Path, ...] = ()
    python_roots: tuple[Path, ...] = ()

    @classmethod
    def discover(cls) -> Sources:
        return _discover_sources()

    def describe(self) -> dict[str, object]:
        """What the manifest records: enough to notice that the machine's sources changed."""
        c_hash = hashlib.sha256("\n".join(map(str, self.c_files)).encode()).hexdigest()[:16]
        return {
            "c_files": len(self.c_files),
            "c_files_sha256": c_hash,
            "java_zips": [str(p) for p in self.java_zips],
            "python_roots": [str(p) for p in self.python_roots],
        }


@cache
def _discover_sources() -> Sources:
    # Cached: walking site-packages takes about a second and the answer does not change within a run.
    paths = sysconfig.get_paths()
    header_roots = [paths["include"], "/usr/include", "/usr/local/include"]
    # C files (not headers) also under the interpreter, site-packages and the usual source and example folders.
    c_roots = [
        sys.base_prefix,
        paths["purelib"],
        paths["platlib"],
        "/usr/src",
        "/usr/local/src",
        "/usr/share/doc",
    ]
    c_files: set[Path] = set()
    for root in header_roots:
        c_files.update(_walk(root, (".c", ".h")))
    for root in c_roots:
        c_files.update(_walk(root, (".c",)))
    c_list = tuple(sorted(p for p in c_files if not _CPP_PATH.search(str(p))))

    candidates = glob.glob("/usr/lib/jvm/*/lib/src.zip") + glob.glob("/usr/lib/jvm/*/src.zip")
    java_home = os.environ.get("JAVA_HOME")
    if java_home:
        candidates += [os.path.join(java_home, "lib", "src.zip"), os.path.join(java_home, "src.zip")]
    zips: set[Path] = set()
    for c in candidates:
        p = Path(c).resolve()
        if p.is_file() and zipfile.is_zipfile(p):
            zips.add(p)

    py_roots: list[Path] = []
    for root in (paths["stdlib"], paths["purelib"], paths["platlib"]):
        p = Path(root).resolve()
        if p.is_dir() and p not in py_roots:
            py_roots.append(p)
    return Sources(c_list, tuple(sorted(zips)), tuple(py_roots))


def _walk(root: str | Path, suffixes: tuple[str, ...]) -> Iterator[Path]:
    # Only the root is resolved: resolving every file costs a stat per path component (seconds on site-packages).
    root = Path(root).resolve()
    if not root.is_dir():
        return
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames.sort()
        for name in filenames:
            if name.endswith(suffixes):
                yield Path(dirpath, name)


# ------------------------------------------------------------------------------------------------ pooling


def _normalise(code: str) -> str:
    return " ".join(code.split())


def _unit(text: str) -> float:
    """A stable number in [0, 1) from text (Python's ``hash`` is salted per process)."""
    return int.from_bytes(hashlib.sha256(text.encode()).digest()[:8], "big") / 2**64


def _split_of(key: str, sizes: dict[str, int]) -> str:
    total = sum(sizes.values())
    u = _unit("split:" + key) * total
    edge = 0
    for split in SPLITS:
        edge += sizes[split]
        if u < edge:
            return split
    return SPLITS[-1]


def _rng(seed: int, *parts: object) -> random.Random:
    # String seeds are hashed with SHA-512 by `random`, so they are stable across processes.
    return random.Random(":".join([str(seed), *map(str, parts)]))


@dataclass
class _Pool:
    """Candidates per split, deduplicated by a signature, filled until every split has ``needed`` of them."""

    needed: dict[str, int]
    items: dict[str, list] = field(default_factory=lambda: {s: [] for s in SPLITS})
    seen: set[str] = field(default_factory=set)
    files_read: int = 0

    def add(self, split: str, signature: str, item: object) -> None:
        if signature in self.seen:
            return
        self.seen.add(signature)
        self.items[split].append(item)

    def full(self) -> bool:
        # Files are read in a seeded random order, so the first functions found are already a random sample.
        return all(len(self.items[s]) >= self.needed[s] for s in SPLITS)

    def draw(self, split: str, seed: int, task: str) -> list:
        """``needed`` items (or all there are), drawn at random, in a stable order."""
        items = sorted(self.items[split], key=lambda it: it[0])
        n = min(self.needed[split], len(items))
        return _rng(seed, task, split, "draw").sample(items, n)


def decode_source(raw: bytes) -> str:
    r"""Source text as the builder sees it: UTF-8 (bad bytes replaced) with ``\r\n`` and ``\r`` turned into
    ``\n``, which is also what ``open(path, encoding="utf-8", errors="replace")`` reads."""
    return raw.decode("utf-8", errors="replace").replace("\r\n", "\n").replace("\r", "\n")


def _read_text(path: Path) -> str | None:
    try:
        if path.stat().st_size > MAX_FILE_BYTES:
            return None
        return decode_source(path.read_bytes())
    except OSError:
        return None


def _shuffled(items: list, seed: int, *parts: object) -> list:
    out = list(items)
    _rng(seed, "files", *parts).shuffle(out)
    return out


def _c_functions(sources: Sources, seed: int) -> Iterator[tuple[int, list[Function]]]:
    for i, path in enumerate(_shuffled(list(sources.c_files), seed, "c")[: MAX_FILES["c"]]):
        text = _read_text(path)
        if text is None or not re.search(r"\)\s*\{", text):
            yield i, []
            continue
        yield i, extract_functions(text, "c", str(path), path.name)


def _java_functions(sources: Sources, seed: int) -> Iterator[tuple[int, list[Function]]]:
    members: list[tuple[Path, str]] = []
    for zpath in sources.java_zips:
        with zipfile.ZipFile(zpath) as z:
            members += [(zpath, n) for n in z.namelist() if n.endswith(".java")]
    members = _shuffled(sorted(members), seed, "java")[: MAX_FILES["java"]]
    # Opened once per zip: reading the central directory of the JDK's src.zip again for every member was
    # most of the clone build time.
    open_zips: dict[Path, zipfile.ZipFile] = {}
    try:
        for i, (zpath, name) in enumerate(members):
            if zpath not in open_zips:
                open_zips[zpath] = zipfile.ZipFile(zpath)
            z = open_zips[zpath]
            info = z.getinfo(name)
            if info.file_size > MAX_FILE_BYTES:
                yield i, []
                continue
            text = decode_source(z.read(info))
            # The module folder (java.base/...) is dropped from the key so one class in two JDKs shares a split.
            key_prefix = re.sub(r"^[\w.]+/(?=(?:java|javax|jdk|sun|com|org)/)", "", name)
            yield i, extract_functions(text, "java", f"{zpath}!{name}", key_prefix)
    finally:
        for z in open_zips.values():
            z.close()


@cache
def _python_listing(roots: tuple[Path, ...]) -> tuple[tuple[Path, Path], ...]:
    # Cached like source discovery: listing site-packages is the slow part of a small build.
    files: set[tuple[Path, Path]] = set()
    for root in roots:
        for path in _walk(root, (".py",)):
            files.add((root, path))
    return tuple(sorted(files))


def _python_files(sources: Sources, seed: int) -> list[tuple[Path, Path]]:
    return _shuffled(list(_python_listing(sources.python_roots)), seed, "python")[: MAX_FILES["python"]]


def _python_functions(sources: Sources, seed: int) -> Iterator[tuple[int, list[Function]]]:
    for i, (root, path) in enumerate(_python_files(sources, seed)):
        text = _read_text(path)
        if text is None:
            yield i, []
            continue
        yield i, extract_functions(text, "python", str(path), str(path.relative_to(root)))


def _fill(
    pool: _Pool, functions: Iterator[tuple[int, list[Function]]], accept: Callable[[Function], str | None]
) -> None:
    """Feed functions into the pool (``accept`` gives a dedup signature or None to reject) until it is full."""
    for i, found in functions:
        pool.files_read = i + 1
        for fn in found:
            signature = accept(fn)
            if signature is not None:
                pool.add(_split_of(fn.key, pool.needed), signature, (fn.key + "\0" + fn.text, fn))
        if pool.full():
            break


# ------------------------------------------------------------------------------------------------- tasks


def _needed_functions(sizes: dict[str, int]) -> dict[str, int]:
    # Defect and clone make two samples from every function (one per class).
    return {s: math.ceil(sizes[s] / 2) for s in SPLITS}


def _code_languages(task: str, sources: Sources) -> list[str]:
    if task == "defect":
        order = ["c"] if sources.c_files else []
    else:
        order = (["java"] if sources.java_zips else []) + (["c"] if sources.c_files else [])
    return order + ["python"]


def _function_stream(language: str, sources: Sources, seed: int) -> Iterator[tuple[int, list[Function]]]:
    if language == "c":
        return _c_functions(sources, seed)
    if language == "java":
        return _java_functions(sources, seed)
    return _python_functions(sources, seed)


_LANGUAGE_NAMES = {"c": "C", "java": "Java", "python": "Python"}


def _pool_for(
    task: str,
    sizes: dict[str, int],
    sources: Sources,
    seed: int,
    accept_for: Callable[[str], Callable[[Function], str | None]],
) -> tuple[_Pool, str]:
    """Fill a pool from the first language that yields any function; warn when falling back to Python."""
    languages = _code_languages(task, sources)
    for language in languages:
        pool = _Pool(_needed_functions(sizes))
        _fill(pool, _function_stream(language, sources, seed), accept_for(language))
        if any(pool.items[s] for s in SPLITS):
            if language != languages[0] or language == "python":
                wanted = "C" if task == "defect" else "Java"
                print(
                    f"warning: tasks.build_local: no {wanted} sources found on this machine; the {task} data are "
                    f"built from {_LANGUAGE_NAMES[language]} functions instead",
                    file=sys.stderr,
                )
            return pool, language
    raise RuntimeError(
        f"tasks.build_local: no usable function found for task '{task}' in {sources.describe()}"
    )


def _build_defect(sizes: dict[str, int], sources: Sources, seed: int) -> tuple[dict[str, list[dict]], dict]:
    def accept_for(language: str) -> Callable[[Function], str | None]:
        def accept(fn: Function) -> str | None:
            if language == "python":
                ok = inject_python_bug(fn.text, _rng(seed, "probe", fn.key)) is not None
            else:
                ok = inject_bug(fn.text, language, _rng(seed, "probe", fn.key)) is not None
            return _normalise(fn.text) if ok else None

        return accept

    pool, language = _pool_for("defect", sizes, sources, seed, accept_for)
    out: dict[str, list[dict]] = {}
    for split in SPLITS:
        samples: list[dict] = []
        for _, fn in pool.draw(split, seed, "defect"):
            rng = _rng(seed, "defect", fn.key, _normalise(fn.text))
            if language == "python":
                clean, buggy, kind = inject_python_bug(fn.text, rng)
            else:
                buggy, kind = inject_bug(fn.text, language, rng)
                clean = fn.text
            where = f"{fn.path}:{fn.line}"
            samples.append({"func": clean, "target": False, "project": where, "mutation": "none"})
            samples.append({"func": buggy, "target": True, "project": where, "mutation": kind})
        _rng(seed, "defect", split, "order").shuffle(samples)
        samples = samples[: sizes[split]]
        out[split] = [{"id": i, **s} for i, s in enumerate(samples)]
    return out, {"language": language, "files_read": pool.files_read}


def _abstract_signature(fn: Function, language: str) -> str:
    """The function with every non-keyword identifier replaced: equal for functions that are clones of each other."""
    if language == "python":
        tree = parse_python(fn.text)
        if tree is None:
            return _normalise(fn.text)
        for node in ast.walk(tree):
            if isinstance(node, ast.Name):
                node.id = "ID"
            elif isinstance(node, ast.arg):
                node.arg = "ID"
            elif isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                node.name = "ID"
        return ast.unparse(tree)
    return abstract_signature(fn.text, language)


def _clone_copy(fn: Function, language: str, rng: random.Random) -> str | None:
    if language == "python":
        return python_rename_and_relayout(fn.text, rng)
    return rename_and_relayout(fn.text, language, rng)


def _build_clone(sizes: dict[str, int], sources: Sources, seed: int) -> tuple[dict[str, list[dict]], dict]:
    def accept_for(language: str) -> Callable[[Function], str | None]:
        def accept(fn: Function) -> str | None:
            # A function with no parameter or local to rename would make a positive pair whose two sides are
            # the same text once whitespace is normalised: a give-away, so such functions are left out.
            if language == "python":
                if python_rename_and_relayout(fn.text, random.Random(0)) is None:
                    return None
            elif not declared_names(fn.text, language):
                return None
            return _abstract_signature(fn, language)

        return accept

    pool, language = _pool_for("clone", sizes, sources, seed, accept_for)
    out: dict[str, list[dict]] = {}
    for split in SPLITS:
        chosen = [fn for _, fn in pool.draw(split, seed, "clone")]
        # Negatives pair a function with a neighbour in length order, so length alone does not give the class.
        chosen.sort(key=lambda f: (len(_normalise(f.text)), f.key, f.text))
        samples: list[dict] = []
        for j, fn in enumerate(chosen):
            rng = _rng(seed, "clone", fn.key, _normalise(fn.text))
            copy = _clone_copy(fn, language, rng)
            if copy is None:
                continue
            pos = {"id1": j, "id2": j, "func1": fn.text, "func2": copy, "label": True}
            samples.append({**pos, "source1": f"{fn.path}:{fn.line}", "source2": f"{fn.path}:{fn.line}"})
            offsets = [d for d in (1, 2, 3, -1, -2, -3) if 0 <= j + d < len(chosen)]
            rng.shuffle(offsets)
            for d in offsets:
                other = chosen[j + d]
                other_copy = _clone_copy(other, language, rng)
                if other_copy is None or _normalise(other.text) == _normalise(fn.text):
                    continue
                neg = {"id1": j, "id2": j + d, "func1": fn.text, "func2": other_copy, "label": False}
                samples.append(
                    {**neg, "source1": f"{fn.path}:{fn.line}", "source2": f"{other.path}:{other.line}"}
                )
                break
        _rng(seed, "clone", split, "order").shuffle(samples)
        samples = samples[: sizes[split]]
        out[split] = [{"id": i, **s} for i, s in enumerate(samples)]
    return out, {"language": language, "files_read": pool.files_read}


def exception_type_name(node: ast.expr | None) -> str | None:
    """``ValueError`` for ``except ValueError``/``except errors.ValueError``; None for tuples and the like."""
    if isinstance(node, ast.Name):
        return node.id
    if isinstance(node, ast.Attribute):
        return node.attr
    return None


_DEF_LINE = re.compile(r"[ \t]*(?:async[ \t]+)?def[ \t]+(\w+)")
_CLASS_LINE = re.compile(r"[ \t]*class[ \t]+(\w+)")


def _indent(line: str) -> int:
    return len(line) - len(line.lstrip(" \t"))


def _is_filler(line: str) -> bool:
    """Blank, comment, or a closing bracket line (black's `):`): none of them ends or opens a block."""
    s = line.strip()
    return not s or s[0] in "#)]}"


def _outer_def(lines: list[str], i: int) -> tuple[int, str] | None:
    """(line index, qualname) of the function holding line ``i`` when it is a module-level function or a method
    of a module-level class (what ``outer_functions`` yields), found by indentation alone."""
    cur = _indent(lines[i])
    outer: int | None = None
    names: list[str] = []
    valid = False
    for j in range(i - 1, -1, -1):
        line = lines[j]
        if _is_filler(line) or _indent(line) >= cur:
            continue
        cur = _indent(line)
        d = _DEF_LINE.match(line)
        c = _CLASS_LINE.match(line)
        if d:
            outer, names, valid = j, [d.group(1)], True
        elif c and outer is not None:
            names.insert(0, c.group(1))
        else:
            valid = False
        if cur == 0:
            break
    if outer is None or not valid or cur != 0:
        return None
    return outer, ".".join(names)


def _def_block(lines: list[str], start: int) -> list[str]:
    """The lines from a ``def`` to the next line indented no deeper, with the ``def``'s indentation removed."""
    indent = lines[start][: _indent(lines[start])]
    end = start + 1
    while end < len(lines) and (_is_filler(lines[end]) or _indent(lines[end]) > len(indent)):
        end += 1
    return [line[len(indent) :] if line.startswith(indent) else line for line in lines[start:end]]


def mask_handlers(text: str, key_prefix: str, rng_for: Callable[[str], random.Random]) -> list[dict]:
    """CuBERT exception samples from one Python file's text.

    For every module-level function or method (3 to 80 lines) with ``except T`` handlers, ``T`` one of the 20
    types, up to ``MAX_HOLES_PER_FUNCTION`` of those handlers (drawn with ``rng_for(key)``) each give one sample
    in which that handler's type, and only it, is replaced by ``__HOLE__``. Returns dicts with ``key`` (file key
    and qualname), ``function``, ``label`` and ``line`` (the function's first line in the file).

    Only the functions around a textual ``except T`` are parsed, not the whole file: parsing whole files was
    most of the build time. A function the indentation scan cuts wrongly fails to parse and is skipped.
    """
    lines = source_lines(text)
    starts: dict[int, str] = {}
    line_no, pos = 0, 0
    for m in _HANDLER_HINT.finditer(text):
        line_no += text.count("\n", pos, m.start())
        pos = m.start()
        found = _outer_def(lines, line_no)
        if found is not None:
            starts[found[0]] = found[1]
    samples: list[dict] = []
    for start in sorted(starts):
        block = _def_block(lines, start)
        tree = parse_python("".join(block))
        if (
            tree is None
            or not tree.body
            or not isinstance(tree.body[0], ast.FunctionDef | ast.AsyncFunctionDef)
        ):
            continue
        fn = tree.body[0]
        if not (3 <= fn.end_lineno - fn.lineno + 1 <= 80):
            continue
        handlers = [
            h
            for h in ast.walk(fn)
            if isinstance(h, ast.ExceptHandler)
            and exception_type_name(h.type) in EXCEPTION_LABELS
            and h.type.lineno == h.type.end_lineno
            # On the function's last line the edit would shift the end column the function is cut at.
            and h.type.lineno != fn.end_lineno
        ]
        key = f"{key_prefix}:{starts[start]}"
        rng = rng_for(key)
        for handler in rng.sample(handlers, min(len(handlers), MAX_HOLES_PER_FUNCTION)):
            t = handler.type
            line = block[t.lineno - 1]
            raw = line.encode()
            # AST columns count UTF-8 bytes; the text is indexed by characters.
            c0 = len(raw[: t.col_offset].decode(errors="replace"))
            c1 = len(raw[: t.end_col_offset].decode(errors="replace"))
            masked = list(block)
            masked[t.lineno - 1] = line[:c0] + HOLE + line[c1:]
            function = python_function_source(masked, fn)
            if function.count(HOLE) != 1 or parse_python(function) is None:
                continue
            samples.append(
                {"key": key, "function": function, "label": exception_type_name(t), "line": start + 1}
            )
    return samples


def _build_exception(
    sizes: dict[str, int], sources: Sources, seed: int
) -> tuple[dict[str, list[dict]], dict]:
    pool = _Pool(dict(sizes))
    for i, (root, path) in enumerate(_python_files(sources, seed)):
        pool.files_read = i + 1
        text = _read_text(path)
        if text is None:
            continue
        rel = str(path.relative_to(root))
        for s in mask_handlers(text, rel, lambda key: _rng(seed, "exception", key)):
            sample = {"function": s["function"], "label": s["label"], "info": f"{path}:{s['line']}"}
            pool.add(_split_of(s["key"], sizes), _normalise(s["function"]), (s["key"], sample))
        if pool.full():
            break
    out: dict[str, list[dict]] = {}
    for split in SPLITS:
        samples = [sample for _, sample in pool.draw(split, seed, "exception")]
        _rng(seed, "exception", split, "order").shuffle(samples)
        out[split] = samples
    return out, {"language": "python", "files_read": pool.files_read}


_BUILDERS = {"defect": _build_defect, "clone": _build_clone, "exception": _build_exception}
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
    parser = argparse.ArgumentParser(
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
    sizes = {s: getattr(args, s) for s in SPLITS}
    try:
        proxy = ProxySettings(max_mb=args.completion_mb, line_samples=args.completion_lines, seed=args.seed)
        paths = build_local(args.out, sizes, args.tasks, seed=args.seed, completion=proxy)
    except (ValueError, RuntimeError) as exc:
        parser.exit(2, f"error: {exc}\n")
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
