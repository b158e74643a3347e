"""Reading a task folder's text files: UTF-8 lines (a byte that is not UTF-8 named by file, line and column) and
JSON Lines records, and counting records for plans. ``tasks.base`` re-exports these names."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path


def not_utf8(where: str, line: str) -> str | None:
    """``where: not UTF-8 (byte 0x.. at column N); save the file as UTF-8`` when ``line`` (read with
    ``errors="surrogateescape"``) holds a byte that is not UTF-8; None for a good line."""
    if line.isascii():
        return None
    try:
        line.encode("utf-8")
    except UnicodeEncodeError as exc:  # an undecodable byte b became the lone surrogate U+DC00 + b
        byte = ord(line[exc.start]) - 0xDC00
        return f"{where}: not UTF-8 (byte 0x{byte:02x} at column {exc.start + 1}); save the file as UTF-8"
    return None


def text_lines(path: Path) -> Iterator[tuple[int, str]]:
    """``(line number, text)`` for each line of a UTF-8 text file; ValueError naming the file, the line and the
    column of a byte that is not UTF-8 (a Latin-1 file, say), like a line that is not JSON. A byte-order mark at the
    start (Windows editors write one) is skipped."""
    with path.open(encoding="utf-8-sig", errors="surrogateescape") as f:
        for lineno, line in enumerate(f, start=1):
            problem = not_utf8(f"{path}:{lineno}", line)
            if problem:
                raise ValueError(problem)
            yield lineno, line


def count_records(path: Path) -> int:
    """Non-blank lines of a JSONL file, read as bytes: a count for plans and checks (a bad byte or line is
    ``jsonl_records``' to report). A lone ``\r`` ends a line, as in the text-mode read that loads the records (a
    JSON string cannot hold a raw CR, so one in the file is a line ending: CRLF, or CR alone from old editors)."""
    with path.open("rb") as f:
        return sum(
            sum(1 for part in line.split(b"\r") if part.strip()) if b"\r" in line else bool(line.strip())
            for line in f
        )


def jsonl_records(path: Path, max_samples: int | None = None) -> Iterator[tuple[int, object]]:
    """``(line number, record)`` for each non-blank line of a JSONL file, at most ``max_samples`` of them;
    ValueError naming the file and line for a line that is not UTF-8 or not JSON. Splits and ``unlabelled.jsonl``
    read alike."""
    if max_samples is not None and max_samples <= 0:
        return
    n = 0
    for lineno, line in text_lines(path):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as exc:
            raise ValueError(f"{path}:{lineno}: not valid JSON ({exc.msg} at column {exc.colno})") from None
        yield lineno, record
        n += 1
        if max_samples is not None and n >= max_samples:
            return  # the lines after the first max_samples records are not read
