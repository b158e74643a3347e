"""Where the local data builder (tasks/build_local.py) reads code: C files, the JDK's Java sources, Python
files of this interpreter, found on this machine (``Sources.discover``), and the functions cut out of them
(tree-sitter, tasks/extract.py), file by file in a seeded random order."""

from __future__ import annotations

import glob
import hashlib
import os
import re
import sys
import sysconfig
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from functools import cache
from pathlib import Path

from tasks.extract import Function, extract_functions
from tasks.local_pool import seeded_rng

MAX_FILE_BYTES = 3_000_000
# Caps on files read per language: with them a full default build stays within seconds on a big machine.
MAX_FILES = {"c": 6000, "java": 3000, "python": 20000}
_CPP_PATH = re.compile(
    r"/(?:c\+\+|llvm[^/]*|node|boost|torch|v8|eigen3?|qt\w*|google|absl)/|\+\+|xx\.h$|\.hpp$"
)


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


def decode_source(raw: bytes) -> str:
    r"""Source text as the builder sees it: UTF-8 (bad bytes replaced) with ``\r\n`` and ``\r`` turned into
    ``\n``, which is also what ``open(path, encoding="utf-8", errors="replace")`` reads."""
    return raw.decode("utf-8", errors="replace").replace("\r\n", "\n").replace("\r", "\n")


def read_text(path: Path) -> str | None:
    try:
        if path.stat().st_size > MAX_FILE_BYTES:
            return None
        return decode_source(path.read_bytes())
    except OSError:
        return None


def _shuffled(items: list, seed: int, *parts: object) -> list:
    out = list(items)
    seeded_rng(seed, "files", *parts).shuffle(out)
    return out


def _c_functions(sources: Sources, seed: int) -> Iterator[tuple[int, list[Function]]]:
    for i, path in enumerate(_shuffled(list(sources.c_files), seed, "c")[: MAX_FILES["c"]]):
        text = read_text(path)
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


def python_files(sources: Sources, seed: int) -> list[tuple[Path, Path]]:
    return _shuffled(list(_python_listing(sources.python_roots)), seed, "python")[: MAX_FILES["python"]]


def _python_functions(sources: Sources, seed: int) -> Iterator[tuple[int, list[Function]]]:
    for i, (root, path) in enumerate(python_files(sources, seed)):
        text = read_text(path)
        if text is None:
            yield i, []
            continue
        yield i, extract_functions(text, "python", str(path), str(path.relative_to(root)))


def function_stream(language: str, sources: Sources, seed: int) -> Iterator[tuple[int, list[Function]]]:
    if language == "c":
        return _c_functions(sources, seed)
    if language == "java":
        return _java_functions(sources, seed)
    return _python_functions(sources, seed)
