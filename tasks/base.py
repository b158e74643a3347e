"""The Task base class: a classification task's data sources (local JSON Lines, the Hugging Face hub), record
preprocessing and metrics; ``BinaryTask`` and ``MulticlassTask`` fill in the scoring.

The records and the splits live in tasks/examples.py, hub access in tasks/hub_access.py and the metric code in
tasks/scoring.py; this module re-exports their public names, so ``tasks.base.Example`` and the rest keep working.
"""

from __future__ import annotations

import abc
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, ClassVar

import numpy as np

from tasks.examples import (
    DEGENERATE_MARGIN,
    SPLITS,
    Example,
    RecordError,
    TaskData,
    check_max_samples,
    code_field,
    normalise_code,
    record_id,
    sample_fraction,
    split_path,
)
from tasks.hub_access import (
    HF_SPLIT_NAMES,
    LOCAL_BUILD_HINT,
    HubUnavailableError,
    hub_offline_requested,
    hub_reachable,
    hub_split,
    load_hub_dataset,
)
from tasks.jsonl_io import count_records, jsonl_records, not_utf8, text_lines
from tasks.scoring import binary_metrics, check_scores, multiclass_metrics

if TYPE_CHECKING:
    import datasets

__all__ = [
    "DEGENERATE_MARGIN",
    "HF_SPLIT_NAMES",
    "LOCAL_BUILD_HINT",
    "SPLITS",
    "BinaryTask",
    "Example",
    "HubUnavailableError",
    "MulticlassTask",
    "RecordError",
    "Task",
    "TaskData",
    "count_records",
    "hub_offline_requested",
    "hub_reachable",
    "jsonl_records",
    "normalise_code",
    "not_utf8",
    "sample_fraction",
    "text_lines",
]

TEXT_LABELS = {"0": 0, "1": 1, "false": 0, "true": 1}  # a binary label written as text
# The old private names, for code that imported them from here.
_check_scores = check_scores
_check_max_samples = check_max_samples


class Task(abc.ABC):
    """A classification task over code: its data sources, its record schema, its metrics.

    Class attributes (set by each subclass): ``name``, ``language``, ``family`` (which student tokenizer family
    it shares: ``c_java`` or ``python``), ``label_names``, ``hf_id``, ``hf_config``, ``code_field`` (and
    ``code2_field`` for pairs), ``label_field``, ``metric_names``, ``selection_metrics``, ``headline_metric``
    (the one score a run is compared by: defect accuracy, clone F1, exception accuracy), ``id_fields`` (the
    record fields holding the dataset's own id, carried as ``Example.id`` into the test predictions).
    """

    name: ClassVar[str]
    language: ClassVar[str]
    family: ClassVar[str]
    label_names: ClassVar[tuple[str, ...]]
    hf_id: ClassVar[str]
    hf_config: ClassVar[str | None] = None
    code_field: ClassVar[str]
    code2_field: ClassVar[str | None] = None
    label_field: ClassVar[str]
    metric_names: ClassVar[tuple[str, ...]]
    selection_metrics: ClassVar[tuple[str, str]]
    headline_metric: ClassVar[str] = "accuracy"
    id_fields: ClassVar[tuple[str, ...]] = ()

    @property
    def paired(self) -> bool:
        """True when a sample is a pair of functions (clone detection)."""
        return self.code2_field is not None

    @property
    def num_labels(self) -> int:
        return len(self.label_names)

    @property
    def fields(self) -> tuple[str, ...]:
        return tuple(f for f in (self.code_field, self.code2_field, self.label_field) if f is not None)

    def __repr__(self) -> str:
        return f"{type(self).__name__}(name={self.name!r}, hf_id={self.hf_id!r})"

    # ---------------------------------------------------------------------------------------- records

    @abc.abstractmethod
    def parse_label(self, value: object) -> int:
        """The class index of a record's label value; RecordError naming the valid values otherwise."""

    def preprocess(self, record: Mapping[str, object]) -> tuple[str, str | None, int]:
        """(code, code2, label) from one record in the hub schema; code whitespace-normalised.

        Raises RecordError for a missing field, a code field that is not text, or an unknown label.
        """
        if not isinstance(record, Mapping):
            raise RecordError(
                f"a record must be a JSON object with fields {list(self.fields)}, got {type(record).__name__}"
            )
        for f in self.fields:
            if f not in record:
                raise RecordError(
                    f"missing field '{f}' (this task needs {list(self.fields)}; got {sorted(record)})"
                )
        codes: list[str] = []
        for f in (self.code_field, self.code2_field):
            if f is None:
                continue
            codes.append(code_field(record, f))  # type: ignore[arg-type]
        label = self.parse_label(record[self.label_field])
        return codes[0], (codes[1] if len(codes) > 1 else None), label

    def _example(self, idx: int, record: Mapping[str, object]) -> Example:
        code, code2, label = self.preprocess(record)
        return Example(idx=idx, code=code, label=label, code2=code2, id=record_id(record, self.id_fields))

    # ---------------------------------------------------------------------------------------- local files

    def official_layout(self, folder: str | Path) -> bool:
        """Whether ``folder`` holds the dataset's official files instead of JSON Lines splits (clone detection:
        CodeXGLUE's ``data.jsonl`` + ``*.txt``, sampled with the study's data seed; tasks/clone_official.py)."""
        return False

    def data_files(self, folder: str | Path) -> dict[str, Path | None]:
        """Every file of a local task folder the loader reads, by role (``train``, ``validation``, ``test``; None:
        not there): what a data key hashes. The official clone layout adds ``data``."""
        return {s: split_path(Path(folder), s) for s in SPLITS}

    def missing_files(self, folder: str | Path) -> list[str]:
        """The names of the files ``folder`` lacks (``train.jsonl``, ...); empty when it has every one."""
        return [f"{role}.jsonl" for role, path in self.data_files(folder).items() if path is None]

    def layout_hint(self, folder: str | Path) -> str:
        """Another layout ``folder`` may have, said when its files are missing ("": none)."""
        return ""

    def local_sizes(self, folder: str | Path) -> dict[str, int] | None:
        """Samples per split of an official-layout folder as the loader uses them; None: count the JSON Lines."""
        return None

    def official_problem(self, folder: str | Path) -> str | None:
        """The first mistake of an official-layout folder, in one line (file, line); None if it loads."""
        return None

    def load_jsonl(
        self, directory: str | Path, max_samples: int | None = None, data_seed: int = 0
    ) -> TaskData:
        """Read ``train.jsonl``, ``validation.jsonl`` and ``test.jsonl`` (hub schema) from ``directory``.

        Validation may be ``valid.jsonl`` or ``dev.jsonl`` (``tasks.examples.SPLIT_FILES``). ``max_samples`` keeps
        the first N records of each split; ``data_seed`` samples an official layout only (clone's 10%). Errors name
        the file and line: ValueError for a line that is not JSON or a record that does not fit the schema,
        FileNotFoundError for a missing file, ValueError for a split with no records.
        """
        check_max_samples(max_samples)
        directory = Path(directory)
        splits: dict[str, list[Example]] = {}
        for split in SPLITS:
            path = split_path(directory, split)
            if path is None:
                hint = f"; {h}" if (h := self.layout_hint(directory)) else ""
                raise FileNotFoundError(
                    f"{directory / f'{split}.jsonl'}: missing {split} split of task '{self.name}' (a data folder "
                    f"holds train.jsonl, validation.jsonl (or valid.jsonl, dev.jsonl) and test.jsonl{hint}; build "
                    f"one with `{LOCAL_BUILD_HINT}`)"
                )
            splits[split] = self._read_jsonl(path, split, max_samples)
        return TaskData(**splits)

    def _read_jsonl(self, path: Path, split: str, max_samples: int | None) -> list[Example]:
        examples: list[Example] = []
        for lineno, record in jsonl_records(path, max_samples):
            try:
                examples.append(self._example(len(examples), record))
            except RecordError as exc:
                raise ValueError(f"{path}:{lineno}: {exc}") from None
        if not examples:
            raise ValueError(f"{path}: the {split} split of task '{self.name}' is empty (no records)")
        return examples

    # ---------------------------------------------------------------------------------------- the hub

    def hub_rows(self, split: str, n_rows: int, data_seed: int) -> np.ndarray | None:
        """Which rows of a hub split to use (None: all). Clone detection overrides this with its 10% sample,
        drawn with the study's ``data_seed`` (never a trial's seed: every trial must see the same rows)."""
        return None

    def load_hub(
        self, data_seed: int = 0, max_samples: int | None = None, *, cache_dir: str | Path | None = None
    ) -> TaskData:
        """Load the task's Hugging Face dataset with ``datasets.load_dataset`` and map its splits.

        ``data_seed`` picks the rows of a sampled split (clone detection's 10%): one per study, so the data do not
        change with a trial's seed. Offline (HF_HUB_OFFLINE or HF_DATASETS_OFFLINE set, or the hub unreachable)
        only a cached copy is used, and without one HubUnavailableError comes at once instead of the library's
        long retries. ``cache_dir`` is passed to ``load_dataset`` (default: the Hugging Face cache).
        """
        check_max_samples(max_samples)
        ds = load_hub_dataset(self.name, self.hf_id, self.hf_config, cache_dir)
        splits: dict[str, list[Example]] = {}
        for split in SPLITS:
            hf_split = hub_split(ds, split, self.name, self.hf_id)
            part = ds[hf_split]
            rows = self.hub_rows(split, len(part), data_seed)
            if rows is not None:
                part = part.select(rows)
            if max_samples is not None and len(part) > max_samples:
                part = part.select(range(max_samples))
            splits[split] = self.examples_from_dataset(part, hf_split)
        return TaskData(**splits)

    def examples_from_dataset(self, part: datasets.Dataset, hf_split: str) -> list[Example]:
        """Examples from one split of a loaded ``datasets.Dataset`` (ClassLabel columns mapped by name)."""
        missing = [f for f in self.fields if f not in part.column_names]
        if missing:
            raise ValueError(
                f"task '{self.name}': dataset '{self.hf_id}' split '{hf_split}' lacks field(s) {missing} "
                f"(it has {part.column_names})"
            )
        ids = [f for f in self.id_fields if f in part.column_names]
        ids = ids if len(ids) == len(self.id_fields) else []  # an id needs all its fields (clone: id1, id2)
        columns = part.select_columns([*self.fields, *ids]).to_dict()
        # A ClassLabel column holds integers indexing its own names; when those names are this task's label
        # names (in whatever order), map through them. Otherwise (e.g. 0/1) the integers are the classes.
        feature = part.features[self.label_field]
        names = getattr(feature, "names", None)
        if names is not None and set(names) <= set(self.label_names):
            columns[self.label_field] = [
                names[v] if isinstance(v, int) and 0 <= v < len(names) else v
                for v in columns[self.label_field]
            ]
        examples: list[Example] = []
        for i in range(len(part)):
            record = {f: columns[f][i] for f in (*self.fields, *ids)}
            try:
                examples.append(self._example(i, record))
            except RecordError as exc:
                raise ValueError(f"dataset '{self.hf_id}' split '{hf_split}' row {i}: {exc}") from None
        return examples

    # ---------------------------------------------------------------------------------------- scoring

    @abc.abstractmethod
    def metrics(self, logits: np.ndarray, labels: np.ndarray) -> dict[str, float]:
        """Scores of logits [N, num_labels] against labels [N], each in [0, 1]."""

    def majority_baseline(self, labels: np.ndarray | Sequence[int]) -> float:
        """The best ``headline_metric`` a prediction that ignores its input reaches on ``labels``: the higher of
        the best constant (predicting one class for every sample: accuracy, the majority class's share; binary
        F1, 2p / (1 + p) for a positive share p) and chance (the expected score of the labels shuffled, i.e.
        guessing with their own class shares; exactly, as each class is predicted as often as it occurs:
        accuracy sum(p_c^2), F1 p, macro-F1 1 / K over the K classes present). Chance only wins for macro-F1,
        where a constant scores its one class's F1 over K classes. A model at or below it has learnt nothing an
        input-blind guess could not do. NaN for no labels."""
        labels = np.asarray(labels, dtype=np.int64)
        if labels.size == 0:
            return float("nan")
        constant = 0.0
        for c in range(self.num_labels):
            logits = np.zeros((labels.size, self.num_labels), dtype=np.float32)
            logits[:, c] = 1.0
            constant = max(constant, float(self.metrics(logits, labels)[self.headline_metric]))
        shares = np.bincount(labels, minlength=self.num_labels) / labels.size
        chance = {
            "accuracy": float(np.sum(shares**2)),
            "f1": float(shares[1]) if shares.size > 1 else 0.0,
            "macro_f1": 1.0 / int(np.count_nonzero(shares)),
        }.get(self.headline_metric, 0.0)
        return max(constant, chance)

    def headline(self, metrics: Mapping[str, float], labels: np.ndarray | Sequence[int]) -> dict[str, float]:
        """``score`` (the headline metric from ``metrics``) and ``majority_baseline`` of ``labels``."""
        return {
            "score": float(metrics[self.headline_metric]),
            "majority_baseline": self.majority_baseline(labels),
        }

    def selection_baseline(self, labels: np.ndarray | Sequence[int]) -> float:
        """The best ``selection_score`` a prediction that ignores its input reaches on ``labels``: the higher of
        every constant class and the classes ranked by their share for every input (accuracy of the commonest,
        top-3 of the three commonest). A tuning search whose best configuration scores at most this on
        validation found nothing a constant could not do (``sweep/tuning.py``). NaN for no labels."""
        labels = np.asarray(labels, dtype=np.int64)
        if labels.size == 0:
            return float("nan")
        shares = np.bincount(labels, minlength=self.num_labels) / labels.size
        ranked = shares - 1e-6 * np.arange(self.num_labels)  # ties to the lower class, as argmax breaks them
        rows = [*np.eye(self.num_labels), ranked]
        return max(
            self.selection_score(self.metrics(np.tile(row, (labels.size, 1)).astype(np.float32), labels))
            for row in rows
        )

    def selection_score(self, metrics: Mapping[str, float]) -> float:
        """The number model selection maximises: the sum of the two ``selection_metrics``."""
        missing = [k for k in self.selection_metrics if k not in metrics]
        if missing:
            raise KeyError(
                f"task '{self.name}': selection_score needs {list(self.selection_metrics)}; missing {missing} "
                f"(got {sorted(metrics)})"
            )
        return float(sum(float(metrics[k]) for k in self.selection_metrics))


class BinaryTask(Task):
    """Two classes, label 1 the positive one; scored by accuracy and F1 of class 1."""

    metric_names = ("accuracy", "f1")
    selection_metrics = ("accuracy", "f1")

    def parse_label(self, value: object) -> int:
        # JSON gives bools (the hub's schema) or 0/1; 1.0 from a float column is accepted too, and so is text
        # "0"/"1"/"false"/"true" (any case) from CSV conversions, as a declared task reads it.
        if isinstance(value, bool):
            return int(value)
        if isinstance(value, int | float | np.integer | np.floating) and value in (0, 1):
            return int(value)
        if isinstance(value, str) and value.strip().lower() in TEXT_LABELS:
            return TEXT_LABELS[value.strip().lower()]
        raise RecordError(f"unknown label {value!r} in field '{self.label_field}'; valid: false/true or 0/1")

    def metrics(self, logits: np.ndarray, labels: np.ndarray) -> dict[str, float]:
        return binary_metrics(*check_scores(self.name, logits, labels, self.num_labels))


class MulticlassTask(Task):
    """Many classes with string labels; scored by accuracy, top-3 accuracy and macro F1 (tasks/scoring.py)."""

    metric_names = ("accuracy", "top3_accuracy", "macro_f1")
    selection_metrics = ("accuracy", "top3_accuracy")

    def parse_label(self, value: object) -> int:
        if isinstance(value, str) and value in self.label_names:
            return self.label_names.index(value)
        if (
            isinstance(value, int | np.integer)
            and not isinstance(value, bool)
            and 0 <= value < self.num_labels
        ):
            return int(value)
        raise RecordError(
            f"unknown label {value!r} in field '{self.label_field}'; valid: {list(self.label_names)}"
        )

    def metrics(self, logits: np.ndarray, labels: np.ndarray) -> dict[str, float]:
        logits, labels = check_scores(self.name, logits, labels, self.num_labels)
        return multiclass_metrics(logits, labels, self.num_labels)
