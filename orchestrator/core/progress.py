"""The stage in progress, for a first run that informs (issue 24): a teacher fine-tune or a cache build runs for
minutes in a Ray worker whose output the driver does not show, while ``--status`` counts only trials.

Each such unit writes a small JSON file ``<storage>/<study>/progress/<unit>.json`` as it goes (the stage, the
unit, epochs done of how many, the last loss and validation score, seconds elapsed), replaced atomically and
marked finished when the unit ends (the driver clears the folder after the teacher stages). The driver prints each new state as one line while it waits (``wait_logging``), and
``--status`` shows the files of a study whose driver is alive (sweep/status.py).
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

SAFE = re.compile(r"[^A-Za-z0-9._-]+")
# What the driver printed of each progress folder, across its waits: the teacher stage's finished fine-tune is still
# in the folder while the driver waits for the cache build, and is not printed a second time.
_PRINTED: dict[str, dict[tuple[str, str], tuple[int, int, bool]]] = {}


def progress_dir(storage: str | Path, study: str) -> Path:
    return Path(storage).resolve() / study / "progress"


@dataclass
class StageProgress:
    """One unit's progress file; ``update`` after each epoch (or chunk), ``close`` when it ends."""

    folder: Path
    stage: str  # "teacher fine-tune", "cache build"
    unit: str  # "exception/minilm"
    total: int  # epochs (or chunks) planned
    unit_word: str = "epochs"
    start: float = field(default_factory=time.time)
    last: dict[str, Any] = field(default_factory=dict)

    @property
    def path(self) -> Path:
        return Path(self.folder) / f"{SAFE.sub('_', self.stage)}-{SAFE.sub('_', self.unit)}.json"

    def update(self, done: int, **values: float) -> dict[str, Any]:
        state = {
            "stage": self.stage,
            "unit": self.unit,
            "done": done,
            "total": self.total,
            "unit_word": self.unit_word,
            "elapsed_s": round(time.time() - self.start, 1),
            "updated": time.time(),
            **{k: float(v) for k, v in values.items()},
        }
        self.last = state
        Path(self.folder).mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_suffix(f".tmp{os.getpid()}")
        tmp.write_text(json.dumps(state))
        os.replace(tmp, self.path)  # a reader never sees half a file
        return state

    def epoch_callback(self, selection: str | None = None) -> Callable[[dict[str, float]], None]:
        """A trainer callback (rows of ``epoch``, ``train_loss``, ``val_*``) that records each epoch."""

        def on_epoch(row: dict[str, float]) -> None:
            vals = {k: v for k, v in row.items() if k.startswith("val_")}
            key = f"val_{selection}" if selection and f"val_{selection}" in vals else next(iter(vals), None)
            extra = {"val_score": vals[key]} if key else {}
            self.update(int(row["epoch"]), loss=row.get("train_loss", float("nan")), **extra)

        return on_epoch

    def close(self) -> None:
        """Mark the unit finished (kept, so a driver polling every few seconds still prints how it ended; the
        driver clears the folder when the stage is over and ``--status`` leaves finished units out)."""
        last = self.last or {"done": 0}
        values = {k: v for k, v in last.items() if k in ("loss", "val_score")}
        self.update(int(last["done"]), **values)
        self.last["finished"] = True
        tmp = self.path.with_suffix(f".tmp{os.getpid()}")
        tmp.write_text(json.dumps(self.last))
        os.replace(tmp, self.path)


def read_stages(folder: str | Path) -> list[dict[str, Any]]:
    """The progress files in ``folder`` (oldest first); unreadable ones are skipped (being replaced)."""
    out = []
    for path in sorted(Path(folder).glob("*.json")) if Path(folder).is_dir() else []:
        with contextlib.suppress(OSError, ValueError):
            out.append(json.loads(path.read_text()))
    return sorted(out, key=lambda s: s.get("updated", 0))


def stage_line(state: dict[str, Any]) -> str:
    """``teacher fine-tune exception/minilm: 3/8 epochs, loss 0.412, val 0.731, 95 s``."""
    total = state.get("total", 0)
    parts = [f"{state.get('done', 0)}/{total} {state.get('unit_word', 'epochs')}" if total else "starting"]
    if "loss" in state:
        parts.append(f"loss {state['loss']:.4g}")
    if "val_score" in state:
        parts.append(f"val {state['val_score']:.4g}")
    parts.append(f"{'finished after ' if state.get('finished') else ''}{state.get('elapsed_s', 0):.0f} s")
    return f"{state.get('stage', '?')} {state.get('unit', '?')}: " + ", ".join(parts)


def clear(folder: str | Path) -> None:
    """Forget the states a killed driver's units left (a new driver starts with none in progress)."""
    _PRINTED.pop(str(Path(folder).resolve()), None)
    for path in Path(folder).glob("*.json*") if Path(folder).is_dir() else []:
        with contextlib.suppress(FileNotFoundError):
            path.unlink()


def wait_logging(ref: Any, folder: str | Path, say: Callable[[str], None], every: float = 5.0) -> Any:
    """``ray.get(ref)``, printing each unit's new state in ``folder`` as one line while waiting."""
    import ray

    seen = _PRINTED.setdefault(str(Path(folder).resolve()), {})
    while True:
        ready, _ = ray.wait([ref], timeout=every)
        for s in read_stages(folder):
            mark = (s.get("done", 0), s.get("total", 0), bool(s.get("finished")))
            if seen.get((s.get("stage", ""), s.get("unit", ""))) != mark:
                seen[(s.get("stage", ""), s.get("unit", ""))] = mark
                say(stage_line(s))
        if ready:
            return ray.get(ref)
