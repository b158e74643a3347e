"""A user's own classification task, declared in YAML instead of code (docs/OWN_DATA.md).

A declaration names the task, its data folder (``train.jsonl``, ``validation.jsonl`` (or ``valid.jsonl``,
``dev.jsonl``), ``test.jsonl``), the field holding the code (and a second one for pairs), the label field and the
labels (a list, or ``infer`` from the training split), the headline metric and the selection score, and the
tokenizer family.
``tasks.declare(mapping, base_dir)`` validates it and registers a ``CustomTask`` under its name, so
``get_task(name)`` finds it like a built-in task.

Worker processes (Ray tasks and trials) learn a study's declarations from their own arguments, not from the
environment: each typed trial carries them (``declared_tasks``, registered by the trial wrapper) and so do the
teacher stages' Ray tasks.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, ValidationError, field_validator, model_validator

from tasks.base import SPLITS, RecordError, Task, TaskData, count_records, jsonl_records
from tasks.examples import SPLIT_FILES, split_path  # the one list of split file names (re-exported here)

BUILTIN_NAMES = ("clone", "defect", "exception")  # tasks/registry.py checks it matches its registry
BUILTIN_FAMILIES = (
    "c_java",
    "python",
)  # the built-in tasks' tokenizer families (tasks/registry.py checks them)
METRICS = ("accuracy", "f1", "macro_f1", "top3_accuracy")
NAME_RE = re.compile(r"^[a-z][a-z0-9_-]{0,39}$")
LABELS_FORM = "a list of class names or 'infer'"
YAML_BOOLEANS = (
    'YAML reads unquoted no/yes/on/off/true/false as booleans; quote them (e.g. labels: ["no", "yes"]), '
    "or write [0, 1] for JSON true/false labels in the data"
)
INFERRED_HINT = "(labels inferred from train.jsonl; declare `labels:` to include it)"
JSON_TYPES = {dict: "object", list: "array", str: "string", int: "number", float: "number", bool: "boolean"}


class TaskDeclarationError(ValueError):
    """A task declaration that does not validate; the message names the task and the field."""


class TaskDeclaration(BaseModel):
    """The YAML mapping that declares a task (every key documented in docs/OWN_DATA.md)."""

    model_config = ConfigDict(extra="forbid")

    name: str
    data: str  # a folder with train.jsonl, validation.jsonl (or valid.jsonl, dev.jsonl), test.jsonl
    code_field: str = "code"
    code2_field: str | None = None  # set for pairs of snippets (e.g. clone-style tasks)
    label_field: str = "label"
    labels: list[str | int] | Literal["infer"] = "infer"
    headline: Literal["accuracy", "f1", "macro_f1"] = "accuracy"
    selection: list[Literal["accuracy", "f1", "macro_f1", "top3_accuracy"]] | None = None
    tokenizer_family: str | None = (
        None  # None: a tokenizer of its own (trained on this task's training split)
    )
    language: str = "code"
    description: str = ""

    @field_validator("name")
    @classmethod
    def _name(cls, v: str) -> str:
        if not NAME_RE.match(v):
            raise ValueError(
                f"'{v}' must be lower-case letters, digits, '-' or '_' (at most 40, a letter first)"
            )
        if v in BUILTIN_NAMES:
            raise ValueError(
                f"'{v}' is a built-in task; choose another name (built-in: {list(BUILTIN_NAMES)})"
            )
        if v in BUILTIN_FAMILIES:  # a task's tokenizer family defaults to its name: it would join theirs
            raise ValueError(
                f"'{v}' is the tokenizer family of built-in tasks; choose another name (set "
                f"tokenizer_family: {v} to share their tokenizer)"
            )
        return v

    @field_validator("tokenizer_family")
    @classmethod
    def _family(cls, v: str | None) -> str | None:
        """A folder name under the tokenizer cache (``<cache>/<family>-<vocab>-<hash>``): named like a task."""
        if v is not None and not NAME_RE.match(v):
            raise ValueError(
                f"'{v}' must be lower-case letters, digits, '-' or '_' (at most 40, a letter first), "
                "like a task name (e.g. python, c_java, or a declared task's name)"
            )
        return v

    @field_validator("labels", mode="before")
    @classmethod
    def _labels_form(cls, v: Any) -> Any:
        """One plain message for a scalar other than ``infer``, YAML booleans and labels of other types (before
        pydantic turns True into 1 or lists every member of the union)."""
        if isinstance(v, str) and v == "infer":
            return v
        if not isinstance(v, list):
            raise ValueError(f"{LABELS_FORM}, got {v!r}")
        if any(isinstance(x, bool) for x in v):
            raise ValueError(f"got booleans {v}: {YAML_BOOLEANS}")
        other = [x for x in v if not isinstance(x, str | int)]
        if other:
            raise ValueError(f"{LABELS_FORM}; a class name is text or an integer, got {other[0]!r}")
        return v

    @field_validator("labels")
    @classmethod
    def _labels(cls, v: Any) -> Any:
        if isinstance(v, list):
            if len(v) < 2:
                raise ValueError(f"at least two labels are needed, got {v}")
            if len(set(map(str, v))) != len(v):
                raise ValueError(f"labels must be distinct, got {v}")
        return v

    @model_validator(mode="after")
    def _fields(self) -> TaskDeclaration:
        if self.code2_field is not None and self.code2_field == self.code_field:
            raise ValueError("code2_field must differ from code_field")
        if self.label_field in (self.code_field, self.code2_field):
            raise ValueError("label_field must differ from the code field(s)")
        return self


def _label_key(value: object) -> str | int:
    """A record's label as the declaration compares it: bools as 0/1, whole floats as ints, text as text."""
    if isinstance(value, bool):
        return int(value)
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, int | str):
        return value
    raise RecordError(f"a label must be text or an integer, got {type(value).__name__} {value!r}")


def infer_labels(train_file: Path, label_field: str) -> list[str | int]:
    """The sorted distinct label values of the training split (integers before text). A label written both as an
    integer and as text (``1`` and ``"1"``) is refused at the line that switches: the two would be one class name."""
    seen: set[str | int] = set()
    first: dict[
        str, tuple[str | int, int]
    ] = {}  # a label's text -> (the value, the line it was first seen on)
    try:
        for lineno, record in jsonl_records(train_file):
            if not isinstance(record, dict):
                kind = JSON_TYPES.get(type(record), "null")
                raise TaskDeclarationError(
                    f"{train_file}:{lineno}: line {lineno} is not a JSON object (it is a JSON {kind}); "
                    f'each line holds one record, e.g. {{"{label_field}": ...}}'
                )
            if label_field not in record:
                raise TaskDeclarationError(
                    f"field 'label_field': {train_file}:{lineno} has no field '{label_field}'"
                )
            try:
                label = _label_key(record[label_field])
            except RecordError as exc:
                raise TaskDeclarationError(f"{train_file}:{lineno}: {exc}") from None
            value, line = first.setdefault(str(label), (label, lineno))
            if value != label:
                raise TaskDeclarationError(
                    f"{train_file}:{lineno}: label {label!r} is line {line}'s label {value!r} written as "
                    f"{'text' if isinstance(label, str) else 'an integer'}; write every label the same way"
                )
            seen.add(label)
    except TaskDeclarationError:
        raise
    except ValueError as err:  # a line that is not UTF-8 or not JSON (jsonl_records: file, line, column)
        raise TaskDeclarationError(str(err)) from None
    return sorted(seen, key=lambda v: (isinstance(v, str), v))


class CustomTask(Task):
    """A classification task built from a declaration; scored by accuracy and macro F1 (plus F1 of the second
    label for two labels, and top-3 accuracy for more than three)."""

    hf_id = ""

    def __init__(self, decl: TaskDeclaration, labels: list[str | int]) -> None:
        self.declaration = decl
        self.name = decl.name  # type: ignore[misc]  # instance values for the base class's class attributes
        self.language = decl.language  # type: ignore[misc]
        self.family = decl.tokenizer_family or decl.name  # type: ignore[misc]
        self.label_values = [_label_key(v) for v in labels]
        self.labels_inferred = decl.labels == "infer"  # then an unknown label's error says so
        self.label_names = tuple(str(v) for v in labels)  # type: ignore[misc]
        self.code_field = decl.code_field  # type: ignore[misc]
        self.code2_field = decl.code2_field  # type: ignore[misc]
        self.label_field = decl.label_field  # type: ignore[misc]
        metrics = ["accuracy", "macro_f1"]
        if len(labels) == 2:
            metrics.append("f1")
        if len(labels) > 3:
            metrics.append("top3_accuracy")
        self.metric_names = tuple(metrics)  # type: ignore[misc]
        if decl.headline not in metrics:
            raise TaskDeclarationError(
                f"task '{decl.name}': field 'headline': '{decl.headline}' is not computed for {len(labels)} labels; "
                f"valid: {metrics}"
            )
        default_selection = ["accuracy", "f1" if len(labels) == 2 else "macro_f1"]
        selection = decl.selection or default_selection
        bad = [m for m in selection if m not in metrics]
        if bad:
            raise TaskDeclarationError(
                f"task '{decl.name}': field 'selection': {bad} not computed for {len(labels)} labels; "
                f"valid: {metrics}"
            )
        self.selection_metrics = tuple(selection)  # type: ignore[misc]
        self.headline_metric = decl.headline  # type: ignore[misc]
        self.data_dir = Path(decl.data)

    def parse_label(self, value: object) -> int:
        try:
            key = _label_key(value)
        except RecordError:
            key = None  # reported below with the valid labels
        # a label list of text also accepts the same text for an integer-looking label, and vice versa
        for i, v in enumerate(self.label_values):
            if key == v or (key is not None and str(key) == str(v)):
                return i
        hint = f" {INFERRED_HINT}" if self.labels_inferred else ""
        raise RecordError(
            f"unknown label {value!r} in field '{self.label_field}'; valid: {list(self.label_values)}{hint}"
        )

    def metrics(self, logits: np.ndarray, labels: np.ndarray) -> dict[str, float]:
        from sklearn.metrics import accuracy_score, f1_score, top_k_accuracy_score

        from tasks.scoring import check_scores

        logits, labels = check_scores(self.name, logits, labels, self.num_labels)
        preds = logits.argmax(axis=1)
        out = {
            "accuracy": float(accuracy_score(labels, preds)),
            "macro_f1": float(f1_score(labels, preds, average="macro", zero_division=0.0)),
        }
        if "f1" in self.metric_names:
            out["f1"] = float(f1_score(labels, preds, pos_label=1, average="binary", zero_division=0.0))
        if "top3_accuracy" in self.metric_names:
            out["top3_accuracy"] = float(
                top_k_accuracy_score(labels, logits, k=3, labels=np.arange(self.num_labels))
            )
        return out

    def load_jsonl(
        self, directory: str | Path | None = None, max_samples: int | None = None, data_seed: int = 0
    ) -> TaskData:
        """This task's own data folder (``directory`` and ``data_seed`` are ignored: a declared task names its data
        and reads it whole)."""
        return super().load_jsonl(self.data_dir, max_samples=max_samples)

    def load_hub(self, data_seed: int = 0, max_samples: int | None = None, **_: Any) -> TaskData:
        return self.load_jsonl(max_samples=max_samples)

    def split_sizes(self) -> dict[str, int]:
        """Records per split, by counting non-empty lines (the plan's cost estimate)."""
        out = {}
        for split in SPLITS:
            path = split_path(self.data_dir, split)
            out[split] = count_records(path) if path is not None else 0
        return out


def _one_line(name: str, err: ValidationError) -> str:
    parts = []
    for e in err.errors():
        where = ".".join(str(p) for p in e["loc"]) or "(top level)"
        msg = "unknown key" if e["type"] == "extra_forbidden" else e["msg"].removeprefix("Value error, ")
        parts.append(f"field '{where}': {msg}")
    return f"task '{name}': " + "; ".join(parts)


def validate(raw: Mapping[str, Any], base_dir: str | Path | None = None) -> tuple[TaskDeclaration, list]:
    """A checked declaration (data folder made absolute against ``base_dir``) and its label list.

    TaskDeclarationError (one line naming the task and the field) for anything wrong, including a data folder
    without the three splits."""
    if not isinstance(raw, Mapping):
        raise TaskDeclarationError(f"a task declaration is a mapping (name, data, ...), got {raw!r}")
    name = str(raw.get("name", "?"))
    try:
        decl = TaskDeclaration.model_validate(dict(raw))
    except ValidationError as err:
        raise TaskDeclarationError(_one_line(name, err)) from None
    folder = Path(decl.data).expanduser()
    if not folder.is_absolute():
        folder = Path(base_dir or ".") / folder
    folder = folder.resolve()
    if folder.exists() and not folder.is_dir():
        raise TaskDeclarationError(
            f"task '{name}': field 'data': {folder} is a file, not a folder (a folder holding train.jsonl, "
            "validation.jsonl and test.jsonl)"
        )
    if not folder.is_dir():
        raise TaskDeclarationError(f"task '{name}': field 'data': folder {folder} does not exist")
    missing = [" or ".join(SPLIT_FILES[s]) for s in SPLITS if split_path(folder, s) is None]
    if missing:
        raise TaskDeclarationError(f"task '{name}': field 'data': {folder} has no {', no '.join(missing)}")
    decl = decl.model_copy(update={"data": str(folder)})
    if decl.labels == "infer":
        try:
            labels = infer_labels(split_path(folder, "train"), decl.label_field)  # type: ignore[arg-type]
        except TaskDeclarationError as err:
            raise TaskDeclarationError(f"task '{name}': {err}") from None
        if len(labels) < 2:
            raise TaskDeclarationError(
                f"task '{name}': field 'labels': infer found {len(labels)} label value(s) in the training split "
                f"({labels}); a classification task needs at least two"
            )
    else:
        labels = list(decl.labels)
    return decl, labels
