"""Exception functions cut to the lines around the masked handler: the data variant that the knowledge-transfer
check (``orchestrator/bench/transfer_data.py``) and a study's ``data: data/local-window``
(``orchestrator/design/data_source.py``) read.

Why: at 128 tokens (what a 2-core CPU affords) the masked ``except __HOLE__:`` lies beyond the cut in about half
of the local exception samples (median position 137 student tokens; 47% in view at 128, 94% at 512), so half of
the inputs carry no evidence and neither teacher nor students can learn much. Keeping the function's first line
(its signature) and the ``before`` lines above the handler plus ``after`` lines below it (the ``try`` body and the
handler's own body) puts the hole in view for over 90% of samples at 128 tokens.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

# The transfer check's window (lines above, below the hole), which ``data: data/local-window`` uses too.
CHECK_WINDOW = (6, 2)

HOLE = "__HOLE__"


class DataError(ValueError):
    """The check's data folder is missing or too small; the message says how to build it."""


SPLITS = ("train", "validation", "test")


def window_function(code: str, before: int, after: int) -> str:
    """``code``'s first line, then the lines from ``before`` above the hole's line to ``after`` below it."""
    lines = code.split("\n")
    hole = next((i for i, line in enumerate(lines) if HOLE in line), None)
    if hole is None:
        raise ValueError(f"an exception sample without {HOLE}: {lines[0][:80]!r}")
    lo = max(1, hole - before)
    return "\n".join(lines[:1] + lines[lo : hole + 1 + after])


def hole_window_data(source: str | Path, dest: Path, before: int, after: int) -> Path:
    """A copy of the local data folder ``source`` whose exception functions are cut by ``window_function``."""
    src = Path(source)
    folder = src / "exception"
    if not all((folder / f"{s}.jsonl").exists() for s in SPLITS):
        raise DataError(
            f"the transfer check's hole window needs local exception data in {folder}/{{train,validation,test}}"
            f".jsonl: build it with python -m tasks.build_local --out {src}"
        )
    out = dest / "exception"
    out.mkdir(parents=True, exist_ok=True)
    for split in SPLITS:
        rows = []
        for line in (folder / f"{split}.jsonl").read_text().splitlines():
            if line.strip():
                row = json.loads(line)
                row["function"] = window_function(row["function"], before, after)
                rows.append(json.dumps(row))
        (out / f"{split}.jsonl").write_text("\n".join(rows) + "\n")
    if (src / "manifest.json").exists():
        shutil.copyfile(src / "manifest.json", dest / "manifest.json")
    return dest
