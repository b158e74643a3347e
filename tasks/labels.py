"""Labels on part of the training split: a seeded labelled subset, the rest unlabelled inputs (semi-supervised KD).

A study (or the knowledge-transfer check) may keep labels on only part of a task's training split:
``{fraction: 0.1}`` or ``{count: 200}`` (``LabelSpec``). The subset is drawn per task with its own seed
(``LabelSpec.seed``, default 0, combined with the task's name), so it is the same for every trial, method and
trial seed of a study: a trial's seed changes the student's initialisation and the batch order, never which
samples carry labels. The draw is a simple random sample unless ``stratify: true``, which keeps each class's
share of the training split (to within one sample per class, by largest remainders).

Unlabelled inputs carry the label ``UNLABELLED`` (-100), PyTorch's ``ignore_index`` convention: a label term
(``kd_methods.kd.label_cross_entropy``) averages over the labelled samples of a batch only, and is a zero that
keeps the graph when a batch has none. Validation and test keep all their labels (the task's metrics refuse -100).

Who trains on what (docs/METHODS.md, "Labels on part of the training split"):

* FT and the teacher's fine-tune: the labelled part only (``subset_split``, ``labelled_data``);
* every KD method: all training inputs (``mask_split``: the same samples in the same order, labels kept on the
  subset and -100 elsewhere), plus any further unlabelled inputs a task names (``unlabelled.jsonl`` next to its
  splits, read by ``load_unlabelled``) appended after them. The teacher cache covers all of them: it is built
  over ``all_inputs`` (sample ``i`` of the KD training split is row ``i`` of the cache's train split).

No torch here: the planner and the command lines import it.
"""

from __future__ import annotations

import dataclasses
import hashlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import numpy as np

from tasks.base import Example, RecordError, Task, TaskData, jsonl_records, text_lines
from tasks.examples import code_field

UNLABELLED = -100  # torch.nn.functional.cross_entropy's default ignore_index
UNLABELLED_FILE = "unlabelled.jsonl"
SPEC_KEYS = ("fraction", "count", "seed", "stratify")


ONE_OF = "give exactly one of 'fraction' (0 < f <= 1) and 'count' (>= 1)"


def value_problem(key: str, value: Any) -> str | None:
    """What is wrong with one ``labels:`` value (``must be ...``), None when it is fine; a study's ``labels:``
    levels (``orchestrator/design/spec.py``) and ``LabelSpec`` read the same rules."""
    if key == "fraction" and value is not None:
        if isinstance(value, bool) or not isinstance(value, int | float) or not 0 < value <= 1:
            return f"must be a number in (0, 1], got {value!r}"
    if key == "count" and value is not None:
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            return f"must be an integer >= 1, got {value!r}"
    if key == "seed" and (isinstance(value, bool) or not isinstance(value, int)):
        return f"must be an integer, got {value!r}"
    if key == "stratify" and not isinstance(value, bool):
        return f"must be true or false, got {value!r}"
    return None


class LabelSpecError(ValueError):
    """A ``labels:`` setting that does not validate; the message names the field and the valid values."""

    user_error = True  # the user's to fix: printed as one ``error:`` line (orchestrator/core/errors.py)


@dataclass(frozen=True)
class LabelSpec:
    """How many training samples keep their label: exactly one of ``fraction`` (0 < f <= 1) and ``count`` (>= 1)."""

    fraction: float | None = None
    count: int | None = None
    seed: int = 0
    stratify: bool = False

    def __post_init__(self) -> None:
        if (self.fraction is None) == (self.count is None):
            raise LabelSpecError(f"labels: {ONE_OF}")
        for key in SPEC_KEYS:
            problem = value_problem(key, getattr(self, key))
            if problem:
                raise LabelSpecError(f"labels: '{key}' {problem}")

    @classmethod
    def parse(cls, raw: Any) -> LabelSpec | None:
        """``None``/``"all"`` (every sample labelled, the default), or a mapping such as ``{fraction: 0.1}``."""
        if raw is None or raw == "all":
            return None
        if not isinstance(raw, Mapping):
            raise LabelSpecError(
                f"labels: expected 'all' or a mapping such as {{fraction: 0.1}}, got {raw!r}"
            )
        unknown = sorted(set(map(str, raw)) - set(SPEC_KEYS))
        if unknown:
            raise LabelSpecError(f"labels: unknown key(s) {unknown}; valid: {list(SPEC_KEYS)}")
        return cls(**dict(raw))

    @classmethod
    def from_text(cls, text: str) -> LabelSpec | None:
        """The inverse of ``label``: ``all``, ``count=500``, ``fraction=0.1`` (``;seed=1;stratified``), as the
        command lines' ``--labels`` take a level by the name its runs are tagged with."""
        if text.strip() == ALL:
            return None
        raw: dict[str, Any] = {}
        for part in filter(None, (p.strip() for p in text.split(";"))):
            key, sep, value = part.partition("=")
            if key == "stratified" and not sep:
                raw["stratify"] = True
            elif key in ("count", "seed") and sep and value.lstrip("-").isdigit():
                raw[key] = int(value)
            elif key == "fraction" and sep:
                try:
                    raw[key] = float(value)
                except ValueError:
                    raise LabelSpecError(
                        f"labels: 'fraction' must be a number in (0, 1], got {value!r}"
                    ) from None
            else:
                raise LabelSpecError(
                    f"labels: cannot read {part!r}; expected all, count=N or fraction=F, then ;seed=S or ;stratified"
                )
        return cls.parse(raw)

    def to_dict(self) -> dict[str, Any]:
        """The mapping ``parse`` reads back (only the keys that are set or differ from their defaults)."""
        out: dict[str, Any] = (
            {"fraction": self.fraction} if self.fraction is not None else {"count": self.count}
        )
        if self.seed:
            out["seed"] = self.seed
        if self.stratify:
            out["stratify"] = True
        return out

    def label(self) -> str:
        """A short text form for tags and tables: ``fraction=0.1``, ``count=200`` (``;seed=1;stratified``)."""
        return ";".join(f"{k}={v}" if k != "stratify" else "stratified" for k, v in self.to_dict().items())

    def size(self, n: int) -> int:
        """How many of ``n`` training samples keep their label (a fraction rounds, and keeps at least one)."""
        if self.count is not None:
            if self.count > n:
                raise LabelSpecError(f"labels: 'count' {self.count} exceeds the {n} training samples")
            return self.count
        assert self.fraction is not None
        return min(n, max(1, round(n * self.fraction)))


def _rng(spec: LabelSpec, task: str) -> np.random.Generator:
    """The task's own generator: a stable hash of (seed, task name), never the trial seed."""
    digest = hashlib.sha256(f"kdstudy-labels:{spec.seed}:{task}".encode()).digest()
    return np.random.default_rng(int.from_bytes(digest[:8], "little"))


def labelled_indices(labels: Sequence[int] | np.ndarray, spec: LabelSpec | None, task: str) -> np.ndarray:
    """Sorted positions of the training samples that keep their label (all of them when ``spec`` is None)."""
    y = np.asarray(labels, dtype=np.int64)
    n = len(y)
    if spec is None:
        return np.arange(n, dtype=np.int64)
    k = spec.size(n)
    rng = _rng(spec, task)
    if not spec.stratify:
        return np.sort(rng.choice(n, size=k, replace=False)).astype(np.int64)
    classes, counts = np.unique(y, return_counts=True)
    quota = counts * k / n
    take = np.floor(quota).astype(np.int64)
    # largest remainders first; ties broken by class order, so the allocation is deterministic
    for c in np.argsort(-(quota - take), kind="stable")[: k - int(take.sum())]:
        take[c] += 1
    chosen = [rng.choice(np.flatnonzero(y == c), size=int(t), replace=False) for c, t in zip(classes, take)]
    return np.sort(np.concatenate(chosen)).astype(np.int64)


Split = TypeVar("Split")  # an EncodedSplit (orchestrator/train/trainer.py): input_ids, labels, pad_id


def subset_split(split: Split, keep: np.ndarray) -> Split:
    """The samples at ``keep`` only (FT and the teacher: the labelled part). Row ``j`` is sample ``keep[j]``,
    so a teacher cache over the whole split is read through ``keep`` (``orchestrator.bench.remap``)."""
    ids = split.input_ids  # type: ignore[attr-defined]
    labels = split.labels  # type: ignore[attr-defined]
    return dataclasses.replace(split, input_ids=[ids[i] for i in keep], labels=[labels[i] for i in keep])  # type: ignore[type-var]


def mask_split(split: Split, keep: np.ndarray) -> Split:
    """The same samples in the same order, labels kept at ``keep`` and ``UNLABELLED`` elsewhere (KD methods)."""
    labels = np.full(len(split.labels), UNLABELLED, dtype=np.int64)  # type: ignore[attr-defined]
    labels[keep] = np.asarray(split.labels, dtype=np.int64)[keep]  # type: ignore[attr-defined]
    return dataclasses.replace(split, labels=labels.tolist())  # type: ignore[type-var]


def labelled_data(data: TaskData, keep: np.ndarray) -> TaskData:
    """``data`` with its training split cut to the labelled samples (validation and test unchanged)."""
    return TaskData([data.train[i] for i in keep], data.validation, data.test)


def all_inputs(data: TaskData, extra: Sequence[Example] = ()) -> TaskData:
    """``data`` with ``extra`` unlabelled inputs appended to its training split (indices continue after it): the
    data a teacher cache for KD on unlabelled inputs is built over."""
    n = len(data.train)
    extra = [dataclasses.replace(ex, idx=n + i, label=UNLABELLED) for i, ex in enumerate(extra)]
    return TaskData(list(data.train) + extra, data.validation, data.test)


def unlabelled_path(folder: str | Path) -> Path | None:
    """``folder/unlabelled.jsonl`` when a task's data folder has one (a declared task's extra inputs)."""
    path = Path(folder) / UNLABELLED_FILE
    return path if path.is_file() else None


def load_unlabelled(task: Task, path: str | Path, max_samples: int | None = None) -> list[Example]:
    """Unlabelled inputs: one JSON object per line with the task's code field(s) (a label field, if present, is
    ignored). Examples carry ``UNLABELLED`` and indices 0..n-1 (``all_inputs`` renumbers them after the training
    split). ValueError naming the file and line for a bad record; an empty file is an error too."""
    path = Path(path)
    fields = [f for f in (task.code_field, task.code2_field) if f is not None]
    out: list[Example] = []
    for lineno, record in jsonl_records(path, max_samples):
        try:
            codes = _codes(record, fields)
        except RecordError as exc:
            raise ValueError(f"{path}:{lineno}: {exc}") from None
        out.append(Example(len(out), codes[0], UNLABELLED, codes[1] if len(codes) > 1 else None))
    if not out:
        raise ValueError(f"{path}: no unlabelled inputs (one JSON object per line with field(s) {fields})")
    return out


def _codes(record: object, fields: list[str]) -> list[str]:
    if not isinstance(record, dict):
        raise RecordError(
            f"a record must be a JSON object with field(s) {fields}, got {type(record).__name__}"
        )
    missing = [f for f in fields if f not in record]
    if missing:
        raise RecordError(
            f"missing field '{missing[0]}' (unlabelled inputs need {fields}; got {sorted(record)})"
        )
    return [code_field(record, f) for f in fields]


def write_labelled_folder(source: str | Path, dest: str | Path, keep: np.ndarray) -> Path:
    """A copy of a task folder (``train.jsonl``, ``validation.jsonl``, ``test.jsonl``) whose training split holds
    only the records at ``keep`` (non-empty lines counted from 0): what a teacher is fine-tuned on."""
    from tasks.custom import split_path

    src, out = Path(source), Path(dest)
    out.mkdir(parents=True, exist_ok=True)
    # read as the loader reads (text_lines): str.splitlines would also cut at a U+2028 inside a JSON string
    rows = [line.rstrip("\r\n") for _, line in text_lines(src / "train.jsonl") if line.strip()]
    wanted = set(int(i) for i in keep)
    if wanted and max(wanted) >= len(rows):
        raise IndexError(f"{src / 'train.jsonl'} has {len(rows)} records; asked for record {max(wanted)}")
    (out / "train.jsonl").write_text("".join(rows[i] + "\n" for i in sorted(wanted)), encoding="utf-8")
    for split in ("validation", "test"):
        path = split_path(src, split)  # validation.jsonl or valid.jsonl
        if path is None:
            raise FileNotFoundError(f"{src} has no {split} file")
        (out / path.name).write_bytes(path.read_bytes())
    return out


# ---------------------------------------------------------------------------------------------------------------
# A study's labels factor (orchestrator/design): one level per LabelSpec, None being every label (today's runs)

ALL = "all"  # the level name of a study without ``labels:`` (every training sample labelled)


def level_name(spec: LabelSpec | None) -> str:
    """A level's short stable name: ``all``, ``count=500``, ``fraction=0.1`` (``;seed=1;stratified``)."""
    return ALL if spec is None else spec.label()


def declared_unlabelled(task: Task) -> Path | None:
    """A declared task's ``unlabelled.jsonl`` (beside its splits), None for a built-in task or without one."""
    folder = getattr(task, "data_dir", None)
    return unlabelled_path(folder) if folder is not None else None


def count_unlabelled(task: Task, max_samples: int | None = None) -> int:
    """How many unlabelled inputs a task's ``unlabelled.jsonl`` adds (non-empty lines, capped like a split)."""
    path = declared_unlabelled(task)
    if path is None:
        return 0
    with path.open(encoding="utf-8") as f:
        n = sum(1 for line in f if line.strip())
    return min(n, max_samples) if max_samples else n


def study_inputs(data: TaskData, task: Task, max_samples: int | None = None) -> TaskData:
    """Every training input of a task: its training split, then its ``unlabelled.jsonl`` inputs (``all_inputs``);
    what a teacher cache is built over and what KD methods train on."""
    path = declared_unlabelled(task)
    return all_inputs(data, load_unlabelled(task, path, max_samples)) if path is not None else data


def labelled_inputs(
    data: TaskData, task: Task, spec: LabelSpec | None, max_samples: int | None = None
) -> tuple[TaskData, np.ndarray | None]:
    """``study_inputs`` and the positions in its training split that keep their label; None (every sample, as
    before) when every label is kept and there are no unlabelled inputs."""
    inputs = study_inputs(data, task, max_samples)
    if spec is None and inputs is data:
        return data, None
    keep = labelled_indices([ex.label for ex in data.train], spec, task.name)
    return inputs, keep


def labelled_only(data: TaskData, spec: LabelSpec | None, task: str) -> TaskData:
    """The training split cut to the labelled part (what FT's teacher is fine-tuned on); ``data`` when all."""
    if spec is None:
        return data
    return labelled_data(data, labelled_indices([ex.label for ex in data.train], spec, task))


Prepared = TypeVar("Prepared")  # a PreparedTrial (orchestrator/train/trial.py): encoded splits and ``keep``


def method_view(prepared: Prepared, labelled: bool) -> Prepared:
    """What one method trains on: ``labelled`` (FT) the labelled part only, otherwise (KD) every input with its
    labels masked outside ``keep``. A prepared trial without ``keep`` (every label, no extra inputs) is returned
    as it is, and so is a view (its ``keep`` is None)."""
    keep = getattr(prepared, "keep", None)
    if keep is None:
        return prepared
    train = prepared.encoded["train"]  # type: ignore[attr-defined]
    split = subset_split(train, keep) if labelled else mask_split(train, keep)
    encoded = {**prepared.encoded, "train": split}  # type: ignore[attr-defined]
    return dataclasses.replace(prepared, encoded=encoded, keep=None)  # type: ignore[type-var]


def regime(labelled: int, unlabelled: int) -> str:
    """A labels regime in words, for plans and figure titles: ``500 labels + 5,376 unlabelled``."""
    return f"{labelled:,} labels" + (f" + {unlabelled:,} unlabelled" if unlabelled else "")
