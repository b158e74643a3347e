"""The offline proxy of py150 + CodeXGLUE's line-level test set, built from Python files on this machine.

A *proxy*: real Python code prepared exactly as CodeXGLUE prepares py150 (``preprocess.code_tokens``), so the
whole pipeline (tokenizer, LM training, KD, generation, scoring) runs offline; its ES/EM are not comparable to
py150's published numbers.

Determinism (same bytes for the same input files, seed and settings, whatever order the disk lists them in):
files are deduplicated by raw bytes, then visited in order of the sha256 of those bytes; each kept file goes to a
split by the sha256 of its *token text* (so copies that differ only in comments or layout are one file, in one
split); each split fills up to its share of the size budget; line-level cuts use a ``random.Random`` seeded from
the seed and the file's token hash. Tokenization is ``strict`` (files with error tokens are left out) and folds
3.12+ f-string tokens back into one string (see ``preprocess``), so one file yields the same tokens on Python
3.11 and 3.12; the *set* of files still differs between interpreters, since each has its own stdlib.
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import sys
from collections.abc import Iterable, Iterator
from dataclasses import asdict, dataclass
from pathlib import Path

from tasks.completion.data import LINE_TEST_FILE, SPLITS, VERSION_FILE, write_version
from tasks.completion.preprocess import BOS, EOL, EOS, PreprocessError, code_tokens

PROXY_VERSION = 1
CUT_RULES = ("anywhere", "line_start")
_SKIP_DIRS = {"__pycache__", ".git", "node_modules"}


@dataclass(frozen=True)
class ProxySettings:
    """``max_mb``: total size of train+validation+test text (MB, 1e6 bytes); ``line_samples``: line-level test
    samples; ``cut``: where a line-level sample is cut (``anywhere`` in a line, gt non-empty, or ``line_start``:
    CodeXGLUE did not publish its rule; its README example cuts at a line start, its Java examples mid-line)."""

    max_mb: float = 4.0
    line_samples: int = 500
    cut: str = "anywhere"
    seed: int = 0
    validation_share: float = 0.05
    test_share: float = 0.10
    max_file_bytes: int = 40_000  # py150 files average ~760 code tokens; keep the proxy's files in that range

    def __post_init__(self) -> None:
        if self.cut not in CUT_RULES:
            raise ValueError(f"completion proxy: unknown cut rule {self.cut!r}; valid: {list(CUT_RULES)}")
        if not self.max_mb > 0 or self.line_samples < 1:
            raise ValueError("completion proxy: max_mb must be > 0 and line_samples >= 1")
        if not (
            0 < self.validation_share < 1
            and 0 < self.test_share < 1
            and self.validation_share + self.test_share < 1
        ):
            raise ValueError(
                "completion proxy: validation_share and test_share must be in (0, 1) and sum below 1"
            )


def _py_files(roots: Iterable[Path]) -> Iterator[Path]:
    for root in roots:
        for dirpath, dirnames, filenames in os.walk(root):
            dirnames[:] = sorted(d for d in dirnames if d not in _SKIP_DIRS)
            for name in sorted(filenames):
                if name.endswith(".py"):
                    yield Path(dirpath) / name


def _unique_sources(roots: Iterable[Path], max_bytes: int) -> list[tuple[str, bytes]]:
    """(sha256 of bytes, bytes) of every distinct .py file under the roots, sorted by that hash."""
    seen: dict[str, bytes] = {}
    for path in _py_files(roots):
        try:
            if path.is_symlink() or path.stat().st_size > max_bytes:
                continue
            raw = path.read_bytes()
        except OSError:
            continue
        seen.setdefault(hashlib.sha256(raw).hexdigest(), raw)
    return sorted(seen.items())


def _split_of(digest: str, s: ProxySettings) -> str:
    u = int(digest[:12], 16) / float(1 << 48)
    if u < s.test_share:
        return "test"
    if u < s.test_share + s.validation_share:
        return "validation"
    return "train"


def select_files(roots: Iterable[Path], s: ProxySettings) -> tuple[dict[str, list[str]], dict[str, int]]:
    """Preprocessed, deduplicated files per split within the size budget; plus counts of what was read."""
    budget = {
        "test": s.max_mb * 1e6 * s.test_share,
        "validation": s.max_mb * 1e6 * s.validation_share,
        "train": s.max_mb * 1e6 * (1 - s.test_share - s.validation_share),
    }
    used = dict.fromkeys(SPLITS, 0)
    out: dict[str, list[str]] = {k: [] for k in SPLITS}
    seen_tokens: set[str] = set()
    info = {"files_unique": 0, "files_failed": 0, "files_duplicate_tokens": 0}
    sources = _unique_sources(roots, s.max_file_bytes)
    info["files_unique"] = len(sources)
    for _, raw in sources:
        if all(used[k] >= budget[k] for k in SPLITS):
            break
        try:
            toks = code_tokens(raw.decode("utf-8"), strict=True)
        except (UnicodeDecodeError, PreprocessError):
            info["files_failed"] += 1
            continue
        text = " ".join([BOS, *toks, EOS])
        digest = hashlib.sha256(text.encode("utf-8")).hexdigest()
        if digest in seen_tokens:
            info["files_duplicate_tokens"] += 1
            continue
        seen_tokens.add(digest)
        split = _split_of(digest, s)
        if used[split] >= budget[split]:
            continue
        out[split].append(text)
        used[split] += len(text) + 1
    return out, info


def _cut_positions(tokens: list[str], rule: str) -> list[int]:
    """Token indices a sample may start its gt at: a code token (not <s>/</s>/<EOL>)."""
    last = len(tokens) - 1  # </s>
    if rule == "line_start":
        return [p for p in range(1, last) if tokens[p] != EOL and tokens[p - 1] in (BOS, EOL)]
    return [p for p in range(1, last) if tokens[p] != EOL]


def line_sample(tokens: list[str], p: int) -> dict[str, str]:
    """Input = every token before ``p`` (from ``<s>``), gt = the rest of that line (up to <EOL> or </s>)."""
    end = p
    while tokens[end] not in (EOL, EOS):
        end += 1
    return {"input": " ".join(tokens[:p]), "gt": " ".join(tokens[p:end])}


def line_samples(test_files: list[str], s: ProxySettings) -> list[dict]:
    """Up to ``s.line_samples`` cuts: one per file per round, files in order, until enough (CodeXGLUE: one cut
    per file from 50k files; a small proxy needs several per file)."""
    per_file = []
    for text in test_files:
        tokens = text.split(" ")
        positions = _cut_positions(tokens, s.cut)
        rng = random.Random(f"{s.seed}:{hashlib.sha256(text.encode('utf-8')).hexdigest()}")
        rng.shuffle(positions)
        per_file.append((tokens, positions))
    out: list[dict] = []
    rounds = max((len(p) for _, p in per_file), default=0)
    for r in range(rounds):
        for tokens, positions in per_file:
            if r < len(positions):
                out.append({"id": len(out), **line_sample(tokens, positions[r])})
                if len(out) >= s.line_samples:
                    return out
    return out


def write_lines(path: Path, lines: Iterable[str]) -> None:
    tmp = path.with_name(path.name + ".tmp")
    with tmp.open("w", encoding="utf-8", newline="\n") as f:
        for line in lines:
            f.write(line + "\n")
    os.replace(tmp, path)


def build_completion_proxy(python_roots: Iterable[Path], out_dir: Path, settings: ProxySettings) -> dict:
    """Write ``out_dir/{train,validation,test}.txt``, ``line_test.json`` and ``version.json``; returns its info.

    Skips the work when ``version.json`` already records the same settings and roots and the files exist.
    """
    out_dir = Path(out_dir)
    roots = [Path(r) for r in python_roots]
    key = {
        "proxy_version": PROXY_VERSION,
        "settings": asdict(settings),
        "python_roots": [str(r) for r in roots],
        "python": f"{sys.version_info.major}.{sys.version_info.minor}",
    }
    marker = out_dir / VERSION_FILE
    files = [out_dir / f"{s}.txt" for s in SPLITS] + [out_dir / LINE_TEST_FILE]
    if marker.is_file() and all(f.is_file() for f in files):
        old = json.loads(marker.read_text(encoding="utf-8"))
        if old.get("build") == key:
            return old
    splits, info = select_files(roots, settings)
    for split in SPLITS:
        if not splits[split]:
            raise RuntimeError(
                f"tasks.build_local: the completion {split} split came out empty (read {info['files_unique']} "
                f"Python files under {[str(r) for r in roots]}); raise --completion-mb or add sources"
            )
    samples = line_samples(splits["test"], settings)
    out_dir.mkdir(parents=True, exist_ok=True)
    for split in SPLITS:
        write_lines(out_dir / f"{split}.txt", splits[split])
    write_lines(out_dir / LINE_TEST_FILE, (json.dumps(r, ensure_ascii=False) for r in samples))
    counts = {s: len(splits[s]) for s in SPLITS} | {"line_test": len(samples)}
    tokens = {s: sum(len(t.split(" ")) - 2 for t in splits[s]) for s in SPLITS}
    write_version(out_dir, "local-proxy", build=key, counts=counts, code_tokens=tokens, **info)
    return json.loads(marker.read_text(encoding="utf-8"))
