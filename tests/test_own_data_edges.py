"""A user's own data at its awkward edges (an audit with data nobody here had seen): each is one line naming its
place before anything starts, or works as the loader reads it.

Labels written as ``1`` and ``"1"``; a lone surrogate escape in code; a ``--task-file`` that is not UTF-8, repeats
a key or is not YAML; CR-only line endings; a changed ``code_field`` over the same files; a task named like a
built-in tokenizer family; a training split (or its first ``max_samples`` records) of one class; a labelled copy
of a folder with ``valid.jsonl`` and a U+2028 inside a JSON string."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import yaml

LABELS = ["ok", "long_method"]


pytestmark = pytest.mark.usefixtures("forget_declared_tasks")  # tests/conftest.py


def _folder(tmp_path: Path, train: list[dict] | None = None, name: str = "smell") -> Path:
    rows = [
        {"snippet": f"def f{i}(): return {i}", "alt": f"g{i}()", "smell": LABELS[i % 2]} for i in range(6)
    ]
    data = tmp_path / name
    data.mkdir()
    for split in ("train", "validation", "test"):
        lines = train if split == "train" and train is not None else rows
        (data / f"{split}.jsonl").write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in lines))
    return data


def _problem(tmp_path: Path, labels: object = LABELS, max_samples: int | None = None, **task: object) -> str:
    """The StudyError of a study declaring task ``smell`` over ``tmp_path/smell``."""
    from orchestrator.core.errors import StudyError
    from orchestrator.design.study import load_spec
    from orchestrator.design.validate import check_study

    study = {
        "name": "own",
        "tasks": [{"name": "smell", "data": "smell", "code_field": "snippet", "label_field": "smell",
                   "labels": labels, **task}],
        "teachers": [{"name": "t", "source": "random:roberta"}],
        "students": ["roberta-tiny"], "methods": ["ft"], "seeds": [0],
        "storage": str(tmp_path / "storage"),
        **({"max_samples": max_samples} if max_samples else {}),
    }  # fmt: skip
    path = tmp_path / "study.yaml"
    path.write_text(yaml.safe_dump(study))
    with pytest.raises(StudyError) as err:
        check_study(load_spec(path))
    return str(err.value)


def test_labels_written_as_integer_and_text_are_one_line_at_the_line_that_switches(tmp_path: Path) -> None:
    rows = [{"snippet": "x", "smell": v} for v in (0, 1, 2, "1", 0)]
    _folder(tmp_path, rows)
    msg = _problem(tmp_path, labels="infer")
    assert f"{tmp_path / 'smell' / 'train.jsonl'}:4: label '1' is line 2's label 1 written as text" in msg


def test_an_unpaired_surrogate_in_code_is_named_by_file_and_line(tmp_path: Path) -> None:
    """Valid JSON (``"\\ud800"``) no tokenizer can encode: refused before the workers start."""
    rows = [{"snippet": f"s = {i}", "smell": LABELS[i % 2]} for i in range(4)]
    _folder(tmp_path, rows)
    train = tmp_path / "smell" / "train.jsonl"
    lines = train.read_text().splitlines()
    lines[2] = '{"snippet": "s = \'\\ud800\'", "smell": "ok"}'
    train.write_text("\n".join(lines) + "\n")
    msg = _problem(tmp_path)
    assert f"{train}:3: field 'snippet' holds an unpaired surrogate \\ud800 at character 6" in msg


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (b"name: caf\xe9\n", r"task\.yaml:1: not UTF-8 \(byte 0xe9 at column 10\)"),
        (
            b"name: smell\ndata: smell\nname: other\n",
            r"task\.yaml:3: key 'name' appears twice \(first at line 1\)",
        ),
        (b"name: smell\ndata: a: b\n", r"task\.yaml:2: invalid YAML: .*\(column \d+\)$"),
    ],
)
def test_a_task_file_is_read_as_a_study_file_is(tmp_path: Path, text: bytes, expected: str) -> None:
    from tasks.custom import TaskDeclarationError
    from tasks.registry import load_task_file

    path = tmp_path / "task.yaml"
    path.write_bytes(text)
    with pytest.raises(TaskDeclarationError, match=expected):
        load_task_file(path)


def test_cr_only_line_endings_are_counted_as_the_loader_reads_them(tmp_path: Path) -> None:
    from tasks.base import count_records
    from tasks.registry import declare

    data = _folder(tmp_path)
    for split in ("train", "validation", "test"):
        path = data / f"{split}.jsonl"
        path.write_bytes(path.read_bytes().replace(b"\n", b"\r"))
    task = declare(
        {"name": "smell", "data": str(data), "code_field": "snippet", "label_field": "smell"}, None
    )
    loaded = task.load_jsonl()  # type: ignore[attr-defined]
    assert count_records(data / "train.jsonl") == len(loaded.train) == 6
    crlf = tmp_path / "crlf.jsonl"
    crlf.write_bytes(b'{"a": 1}\r\n\r\n{"a": 2}\r\n')
    assert count_records(crlf) == 2


def test_the_data_key_of_a_declared_task_names_the_fields_it_reads(tmp_path: Path) -> None:
    """Same files, another code field: another student tokenizer and prepared data, not the cached ones."""
    from tasks.data_key import data_request_key
    from tasks.registry import declare

    data = _folder(tmp_path)
    keys = []
    for field in ("snippet", "alt"):
        declare({"name": "smell", "data": str(data), "code_field": field, "label_field": "smell"}, None)
        keys.append(data_request_key("smell", "unused"))
    assert keys[0] != keys[1] and '"fields": ["snippet"' in keys[0]


@pytest.mark.parametrize("name", ["python", "c_java"])
def test_a_task_named_like_a_built_in_tokenizer_family_is_refused(tmp_path: Path, name: str) -> None:
    from tasks.custom import TaskDeclarationError
    from tasks.registry import declare

    data = _folder(tmp_path)
    with pytest.raises(TaskDeclarationError, match=f"'{name}' is the tokenizer family of built-in tasks"):
        declare({"name": name, "data": str(data), "code_field": "snippet", "label_field": "smell"}, None)


def test_a_training_split_of_one_class_is_refused(tmp_path: Path) -> None:
    _folder(tmp_path, [{"snippet": f"s{i}", "smell": "ok"} for i in range(5)])
    msg = _problem(tmp_path)  # declared labels: infer would already refuse one label
    assert "train.jsonl: every record has label 'ok'; a classifier needs two classes" in msg


def test_a_sorted_file_whose_first_max_samples_records_hold_one_class_is_refused(tmp_path: Path) -> None:
    rows = [{"snippet": f"s{i}", "smell": "ok" if i < 8 else "long_method"} for i in range(12)]
    _folder(tmp_path, rows)
    msg = _problem(tmp_path, max_samples=8)
    assert "train.jsonl: its first 8 records (max_samples: what a trial reads) have label 'ok'" in msg
    assert "shuffle the file" in msg


def test_a_labelled_copy_keeps_records_whole_and_reads_valid_jsonl(tmp_path: Path) -> None:
    from tasks.labels import write_labelled_folder

    data = _folder(tmp_path, [{"snippet": f"a\u2028b{i}", "smell": "ok"} for i in range(4)])
    (data / "validation.jsonl").rename(data / "valid.jsonl")
    out = write_labelled_folder(data, tmp_path / "copy", np.array([1, 3]))
    records = [
        json.loads(line) for line in (out / "train.jsonl").read_text(encoding="utf-8").split("\n") if line
    ]
    assert [r["snippet"] for r in records] == ["a\u2028b1", "a\u2028b3"]
    assert (out / "valid.jsonl").read_bytes() == (data / "valid.jsonl").read_bytes()
