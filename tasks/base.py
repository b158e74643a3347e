"""The data every task yields (examples with an index, split into train/validation/test) and the Task base class:
loading from the Hugging Face hub or local JSON Lines, record preprocessing, metrics."""

from __future__ import annotations

import abc
import contextlib
import hashlib
import json
import os
import socket
import threading
import urllib.parse
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, ClassVar

import numpy as np

if TYPE_CHECKING:
    import datasets

SPLITS = ("train", "validation", "test")
# A score at most its majority baseline plus this margin is no finding (a constant prediction does as well): the
# analysis flags such runs "degenerate" and the transfer check counts them.
DEGENERATE_MARGIN = 0.005


@dataclass(frozen=True)
class Example:
    """One sample. ``idx`` is its position in its split: the key its teacher signals are stored and looked up by."""

    idx: int
    code: str
    label: int
    code2: str | None = None  # the second function of a clone pair


@dataclass
class TaskData:
    train: list[Example]
    validation: list[Example]
    test: list[Example]
    _fingerprint: str | None = field(default=None, repr=False, compare=False)

    def split(self, name: str) -> list[Example]:
        if name not in SPLITS:
            raise KeyError(f"unknown split '{name}'; valid: {list(SPLITS)}")
        return getattr(self, name)

    def fingerprint(self) -> str:
        """sha256 of the content, so caches keyed by data notice any change."""
        if self._fingerprint is None:
            h = hashlib.sha256()
            for name in SPLITS:
                for ex in self.split(name):
                    h.update(json.dumps([name, ex.idx, ex.code, ex.code2, ex.label]).encode())
            self._fingerprint = h.hexdigest()
        return self._fingerprint


# ---------------------------------------------------------------------------------------------------- tasks
#
# Everything below: how a task reads its data (hub or local JSON Lines), turns records into Examples, and
# scores predictions. Subclasses (tasks/defect.py, clone.py, exception.py) only fill in the class attributes,
# their label parsing and their metrics.

LOCAL_BUILD_HINT = "python -m tasks.build_local --out DIR"
# Where the hub's split names differ from ours (CuBERT's exception set calls validation "dev").
HF_SPLIT_NAMES: dict[str, tuple[str, ...]] = {
    "train": ("train",),
    "validation": ("validation", "dev", "valid"),
    "test": ("test",),
}


class RecordError(ValueError):
    """A record that does not fit the task's schema (missing field, wrong type, unknown label)."""


class HubUnavailableError(RuntimeError):
    """The task's Hugging Face dataset cannot be loaded here (offline without a cached copy, or no network)."""


def normalise_code(code: str) -> str:
    """Whitespace collapsed to single spaces, as CodeXGLUE's preprocessing does."""
    return " ".join(code.split())


def sample_fraction(n: int, fraction: float, seed: int) -> np.ndarray:
    """Sorted indices of a seeded random ``fraction`` of ``range(n)`` (at least one row when ``n > 0``).

    CodeXGLUE trains and validates clone detection on a 10% sample of BigCloneBench; the seed makes the sample
    the same on every machine.
    """
    if not isinstance(n, int | np.integer) or n < 0:
        raise ValueError(f"sample_fraction: n must be a non-negative int, got {n!r}")
    if not 0.0 < fraction <= 1.0:
        raise ValueError(f"sample_fraction: fraction must be in (0, 1], got {fraction!r}")
    if n == 0:
        return np.zeros(0, dtype=np.int64)
    k = max(1, round(n * fraction))
    rng = np.random.default_rng(seed)
    return np.sort(rng.choice(n, size=k, replace=False)).astype(np.int64)


def _env_true(name: str) -> bool:
    return os.environ.get(name, "").strip().upper() in {"1", "ON", "YES", "TRUE"}


def hub_offline_requested() -> bool:
    """HF_HUB_OFFLINE / HF_DATASETS_OFFLINE read now (the libraries read them once, at import)."""
    return (
        _env_true("HF_HUB_OFFLINE") or _env_true("HF_DATASETS_OFFLINE") or _env_true("TRANSFORMERS_OFFLINE")
    )


def hub_reachable(timeout_s: float = 3.0) -> bool:
    """Whether a TCP connection to the hub endpoint (or the HTTPS proxy, when one is set) opens in ``timeout_s``.

    Run in a daemon thread because name resolution ignores socket timeouts and can hang far longer; without
    this check `datasets` retries unreachable hosts for about half a minute before failing.
    """
    endpoint = os.environ.get("HF_ENDPOINT", "https://huggingface.co")
    # Behind a proxy the hub is reached through it, so the proxy is what has to answer.
    proxy = next(
        (
            os.environ[v]
            for v in ("HTTPS_PROXY", "https_proxy", "ALL_PROXY", "all_proxy")
            if os.environ.get(v)
        ),
        None,
    )
    parsed = urllib.parse.urlparse(proxy or endpoint)
    host = parsed.hostname or "huggingface.co"
    port = parsed.port or (80 if parsed.scheme == "http" else 443)
    result: list[bool] = []

    def probe() -> None:
        try:
            with socket.create_connection((host, port), timeout=timeout_s):
                result.append(True)
        except OSError:
            result.append(False)

    thread = threading.Thread(target=probe, daemon=True)
    thread.start()
    thread.join(timeout_s + 1.0)
    return bool(result and result[0])


@contextlib.contextmanager
def _forced_offline(active: bool) -> Iterator[None]:
    """Switch `datasets` and `huggingface_hub` to offline mode for one call.

    Both read HF_HUB_OFFLINE into module constants at import, so setting the variable later (or finding the
    network down) has no effect unless the constants are set too; they are restored afterwards.
    """
    if not active:
        yield
        return
    import datasets.config
    import huggingface_hub.constants

    saved = (datasets.config.HF_HUB_OFFLINE, huggingface_hub.constants.HF_HUB_OFFLINE)
    datasets.config.HF_HUB_OFFLINE = True
    huggingface_hub.constants.HF_HUB_OFFLINE = True
    try:
        yield
    finally:
        datasets.config.HF_HUB_OFFLINE, huggingface_hub.constants.HF_HUB_OFFLINE = saved


def _check_max_samples(max_samples: int | None) -> None:
    if max_samples is not None and (
        not isinstance(max_samples, int) or isinstance(max_samples, bool) or max_samples < 1
    ):
        raise ValueError(f"max_samples must be a positive int or None, got {max_samples!r}")


def _check_scores(
    name: str, logits: np.ndarray, labels: np.ndarray, num_labels: int
) -> tuple[np.ndarray, np.ndarray]:
    logits = np.asarray(logits, dtype=np.float64)
    labels = np.asarray(labels)
    if logits.ndim != 2 or logits.shape[1] != num_labels:
        raise ValueError(
            f"{name}.metrics: logits must have shape [N, {num_labels}], got {list(logits.shape)}"
        )
    if labels.ndim != 1 or labels.shape[0] != logits.shape[0]:
        raise ValueError(
            f"{name}.metrics: labels must have shape [{logits.shape[0]}] to match the logits, got {list(labels.shape)}"
        )
    if labels.shape[0] == 0:
        raise ValueError(f"{name}.metrics: no samples to score")
    if not np.issubdtype(labels.dtype, np.integer) and not np.issubdtype(labels.dtype, np.bool_):
        if not np.all(np.equal(np.mod(labels, 1), 0)):
            raise ValueError(f"{name}.metrics: labels must be class indices, got dtype {labels.dtype}")
    labels = labels.astype(np.int64)
    bad = labels[(labels < 0) | (labels >= num_labels)]
    if bad.size:
        raise ValueError(f"{name}.metrics: label {int(bad[0])} is outside 0..{num_labels - 1}")
    return logits, labels


class Task(abc.ABC):
    """A classification task over code: its data sources, its record schema, its metrics.

    Class attributes (set by each subclass): ``name``, ``language``, ``family`` (which student tokenizer family
    it shares: ``c_java`` or ``python``), ``label_names``, ``hf_id``, ``hf_config``, ``code_field`` (and
    ``code2_field`` for pairs), ``label_field``, ``metric_names``, ``selection_metrics``, ``headline_metric``
    (the one score a run is compared by: defect accuracy, clone F1, exception accuracy).
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
            value = record[f]
            if not isinstance(value, str):
                raise RecordError(f"field '{f}' must be a string of code, got {type(value).__name__}")
            codes.append(normalise_code(value))
        label = self.parse_label(record[self.label_field])
        return codes[0], (codes[1] if len(codes) > 1 else None), label

    def _example(self, idx: int, record: Mapping[str, object]) -> Example:
        code, code2, label = self.preprocess(record)
        return Example(idx=idx, code=code, label=label, code2=code2)

    # ---------------------------------------------------------------------------------------- local files

    def load_jsonl(self, directory: str | Path, max_samples: int | None = None) -> TaskData:
        """Read ``train.jsonl``, ``validation.jsonl`` and ``test.jsonl`` (hub schema) from ``directory``.

        ``max_samples`` keeps the first N records of each split. Errors name the file and line: ValueError for a
        line that is not JSON or a record that does not fit the schema, FileNotFoundError for a missing file,
        ValueError for a split with no records.
        """
        _check_max_samples(max_samples)
        directory = Path(directory)
        splits: dict[str, list[Example]] = {}
        for split in SPLITS:
            path = directory / f"{split}.jsonl"
            if split == "validation" and not path.is_file() and (directory / "valid.jsonl").is_file():
                path = directory / "valid.jsonl"  # CodeXGLUE's name for it
            if not path.is_file():
                raise FileNotFoundError(
                    f"{path}: missing {split} split of task '{self.name}' (a data folder holds train.jsonl, "
                    f"validation.jsonl (or valid.jsonl) and test.jsonl; build one with `{LOCAL_BUILD_HINT}`)"
                )
            examples: list[Example] = []
            with path.open(encoding="utf-8") as f:
                for lineno, line in enumerate(f, start=1):
                    if max_samples is not None and len(examples) >= max_samples:
                        break
                    if not line.strip():
                        continue
                    try:
                        record = json.loads(line)
                    except json.JSONDecodeError as exc:
                        raise ValueError(
                            f"{path}:{lineno}: not valid JSON ({exc.msg} at column {exc.colno})"
                        ) from None
                    try:
                        examples.append(self._example(len(examples), record))
                    except RecordError as exc:
                        raise ValueError(f"{path}:{lineno}: {exc}") from None
            if not examples:
                raise ValueError(f"{path}: the {split} split of task '{self.name}' is empty (no records)")
            splits[split] = examples
        return TaskData(**splits)

    # ---------------------------------------------------------------------------------------- the hub

    def hub_rows(self, split: str, n_rows: int, seed: int) -> np.ndarray | None:
        """Which rows of a hub split to use (None: all). Clone detection overrides this with its 10% sample."""
        return None

    def _unavailable(self, offline: bool, exc: BaseException) -> HubUnavailableError:
        config = f" (config '{self.hf_config}')" if self.hf_config else ""
        why = (
            "offline mode is on (HF_HUB_OFFLINE / HF_DATASETS_OFFLINE)"
            if hub_offline_requested()
            else ("the Hugging Face hub cannot be reached" if offline else "loading it failed")
        )
        cache = os.environ.get("HF_HOME") or os.path.join(os.path.expanduser("~"), ".cache", "huggingface")
        return HubUnavailableError(
            f"task '{self.name}': Hugging Face dataset '{self.hf_id}'{config} is not available: {why} and no "
            f"usable cached copy was found ({type(exc).__name__}: {exc}). To make it available: run once with "
            f"network access so it is cached (cache: HF_HOME={cache}), or set HF_HOME to a cache that already "
            f"has it, or use local JSON Lines instead: `{LOCAL_BUILD_HINT}` and load with source=DIR."
        )

    def load_hub(
        self, seed: int = 0, max_samples: int | None = None, *, cache_dir: str | Path | None = None
    ) -> TaskData:
        """Load the task's Hugging Face dataset with ``datasets.load_dataset`` and map its splits.

        Offline (HF_HUB_OFFLINE or HF_DATASETS_OFFLINE set, or the hub unreachable) only a cached copy is used,
        and without one HubUnavailableError comes at once instead of the library's long retries.
        ``cache_dir`` is passed to ``load_dataset`` (default: the Hugging Face cache).
        """
        _check_max_samples(max_samples)
        import datasets

        offline = hub_offline_requested() or not hub_reachable()
        try:
            with _forced_offline(offline):
                ds = datasets.load_dataset(
                    self.hf_id, self.hf_config, cache_dir=str(cache_dir) if cache_dir is not None else None
                )
        except Exception as exc:  # the library raises many types here (connection, not found, cache misses)
            raise self._unavailable(offline, exc) from exc
        splits: dict[str, list[Example]] = {}
        for split in SPLITS:
            hf_split = next((s for s in HF_SPLIT_NAMES[split] if s in ds), None)
            if hf_split is None:
                raise ValueError(
                    f"task '{self.name}': dataset '{self.hf_id}' has no split for '{split}' (looked for "
                    f"{list(HF_SPLIT_NAMES[split])}; it has {sorted(ds)})"
                )
            part = ds[hf_split]
            rows = self.hub_rows(split, len(part), seed)
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
        columns = part.select_columns(list(self.fields)).to_dict()
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
            record = {f: columns[f][i] for f in self.fields}
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
        """The best ``headline_metric`` any constant prediction reaches on ``labels``: the maximum over classes
        of the score of predicting that class for every sample (accuracy: the majority class's share; binary F1:
        2p / (1 + p) for a positive share p, from predicting the positive class). A model at or below it has
        learnt nothing a constant could not do. NaN for no labels."""
        labels = np.asarray(labels, dtype=np.int64)
        if labels.size == 0:
            return float("nan")
        scores = []
        for c in range(self.num_labels):
            logits = np.zeros((labels.size, self.num_labels), dtype=np.float32)
            logits[:, c] = 1.0
            scores.append(self.metrics(logits, labels)[self.headline_metric])
        return float(max(scores))

    def headline(self, metrics: Mapping[str, float], labels: np.ndarray | Sequence[int]) -> dict[str, float]:
        """``score`` (the headline metric from ``metrics``) and ``majority_baseline`` of ``labels``."""
        return {
            "score": float(metrics[self.headline_metric]),
            "majority_baseline": self.majority_baseline(labels),
        }

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
        # JSON gives bools (the hub's schema) or 0/1; 1.0 from a float column is accepted too.
        if isinstance(value, bool):
            return int(value)
        if isinstance(value, int | float | np.integer | np.floating) and value in (0, 1):
            return int(value)
        raise RecordError(f"unknown label {value!r} in field '{self.label_field}'; valid: false/true or 0/1")

    def metrics(self, logits: np.ndarray, labels: np.ndarray) -> dict[str, float]:
        from sklearn.metrics import accuracy_score, f1_score

        logits, labels = _check_scores(self.name, logits, labels, self.num_labels)
        preds = logits.argmax(axis=1)
        return {
            "accuracy": float(accuracy_score(labels, preds)),
            "f1": float(f1_score(labels, preds, pos_label=1, average="binary", zero_division=0.0)),
        }


class MulticlassTask(Task):
    """Many classes with string labels; scored by accuracy, top-3 accuracy and macro F1.

    Macro F1 averages over the classes present in the labels or the predictions of the scored set (scikit-learn's
    default), so classes absent from both do not count as zeros.
    """

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
        from sklearn.metrics import accuracy_score, f1_score, top_k_accuracy_score

        logits, labels = _check_scores(self.name, logits, labels, self.num_labels)
        preds = logits.argmax(axis=1)
        k = min(3, self.num_labels)
        return {
            "accuracy": float(accuracy_score(labels, preds)),
            "top3_accuracy": float(
                top_k_accuracy_score(labels, logits, k=k, labels=np.arange(self.num_labels))
            ),
            "macro_f1": float(f1_score(labels, preds, average="macro", zero_division=0.0)),
        }
