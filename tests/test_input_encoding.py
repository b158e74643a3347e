"""Input a user gets wrong in ways the file's text decides: data files and study YAMLs that are not UTF-8, a folder
given as the study, a key written twice in the study YAML, YAML booleans as labels, a line that is JSON but not an
object, ``data:`` naming a file, a label missing from the labels inferred from train, and ``labels:`` as some other
scalar. Each is one ``error:`` line naming the place, exit status 2, no traceback, before anything starts."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parent.parent
LABELS = ["ok", "long_method", "many_params"]
LATIN1 = '{"snippet": "x = \'caf\xe9\'", "smell": "ok"}\n'.encode("latin-1")  # byte 0xe9 at column 22


pytestmark = pytest.mark.usefixtures("forget_declared_tasks")  # tests/conftest.py


def _rows(n: int = 6) -> list[str]:
    return [json.dumps({"snippet": f"def f{i}():\n    return {i}", "smell": LABELS[i % 3]}) for i in range(n)]


def _study(tmp_path: Path, raw: dict[str, bytes] | None = None, **task: object) -> Path:
    """A study YAML declaring task 'smell' over good files, except the splits whose bytes ``raw`` gives."""
    data = tmp_path / "smell"
    data.mkdir(exist_ok=True)
    for split in ("train", "validation", "test"):
        body = (raw or {}).get(split, "".join(line + "\n" for line in _rows()).encode())
        (data / f"{split}.jsonl").write_bytes(body)
    decl = {
        "name": "smell",
        "data": "smell",
        "code_field": "snippet",
        "label_field": "smell",
        "labels": LABELS,
    }
    study = {
        "name": "own",
        "tasks": [{**decl, **task}],
        "teachers": [{"name": "t", "source": "random:roberta"}],
        "students": ["roberta-tiny"],
        "methods": ["ft"],
        "seeds": [0],
        "storage": str(tmp_path / "storage"),
    }
    path = tmp_path / "study.yaml"
    path.write_text(yaml.safe_dump(study, sort_keys=False))
    return path


def _problem(study: Path) -> str:
    """The one line the study's validation (as ``--plan`` and a run do it) answers ``study`` with."""
    from orchestrator.core.errors import StudyError, one_line
    from orchestrator.design.study import load_spec
    from orchestrator.design.validate import check_study

    with pytest.raises(StudyError) as err:
        check_study(load_spec(study))
    return one_line(str(err.value))


def _cli(tmp_path: Path, *args: str) -> str:
    """The single ``error:`` line of ``python -m ARGS`` run as a user runs it (exit 2, nothing else on stderr)."""
    env = {**os.environ, "PYTHONPATH": str(ROOT), "KDSTUDY_STATE_DIR": str(tmp_path / "state")}
    env["HF_HUB_OFFLINE"] = "1"
    env.pop("MLFLOW_TRACKING_URI", None)
    proc = subprocess.run(
        [sys.executable, "-m", *args], capture_output=True, text=True, cwd=tmp_path, env=env, timeout=120
    )
    lines = proc.stderr.strip().splitlines()
    assert proc.returncode == 2, proc.stderr[-3000:]
    assert len(lines) == 1 and lines[0].startswith("error: "), proc.stderr[-3000:]
    return lines[0]


def _plan(tmp_path: Path, study: Path | str) -> str:
    return _cli(tmp_path, "orchestrator.study", str(study), "--plan", "--storage", str(tmp_path / "st"))


# ------------------------------------------------------------------------------------------- data not in UTF-8


def test_latin1_train_file_with_explicit_labels_through_plan(tmp_path: Path) -> None:
    train = _rows()[:1] + [LATIN1.decode("latin-1")] + _rows()[1:]
    body = "".join(line.rstrip("\n") + "\n" for line in train).encode("latin-1")
    line = _plan(tmp_path, _study(tmp_path, raw={"train": body}))
    where = tmp_path / "smell" / "train.jsonl"
    assert f"task 'smell': {where}:2: not UTF-8 (byte 0xe9 at column 22); save the file as UTF-8" in line


def test_latin1_train_file_with_inferred_labels_names_the_data_file(tmp_path: Path) -> None:
    body = ("\n".join(_rows()) + "\n").encode() + LATIN1
    msg = _problem(_study(tmp_path, raw={"train": body}, labels="infer"))
    assert f"{tmp_path / 'smell' / 'train.jsonl'}:7: not UTF-8 (byte 0xe9 at column 22)" in msg
    assert "study.yaml:1:" not in msg and "codec" not in msg


def test_latin1_byte_in_test_file(tmp_path: Path) -> None:
    body = ("\n".join(_rows()) + "\n").encode() + LATIN1
    msg = _problem(_study(tmp_path, raw={"test": body}))
    assert f"task 'smell': {tmp_path / 'smell' / 'test.jsonl'}:7: not UTF-8 (byte 0xe9" in msg


def test_loading_a_latin1_file_names_its_line(tmp_path: Path) -> None:
    from tasks import declare

    _study(tmp_path, raw={"validation": LATIN1})
    task = declare(
        {"name": "smell", "data": "smell", "code_field": "snippet", "label_field": "smell", "labels": LABELS},
        tmp_path,
    )
    with pytest.raises(ValueError, match=r"validation\.jsonl:1: not UTF-8 \(byte 0xe9 at column 22\)"):
        task.load_jsonl()


def test_a_byte_order_mark_is_skipped(tmp_path: Path) -> None:
    from orchestrator.design.study import load_spec
    from orchestrator.design.validate import check_study

    body = b"\xef\xbb\xbf" + ("\n".join(_rows()) + "\n").encode()
    check_study(load_spec(_study(tmp_path, raw={"train": body}, labels="infer")))


def test_trial_task_file_on_latin1_data(tmp_path: Path) -> None:
    _study(tmp_path, raw={"train": LATIN1})
    decl = {
        "name": "smell",
        "data": "smell",
        "code_field": "snippet",
        "label_field": "smell",
        "labels": LABELS,
    }
    (tmp_path / "task.yaml").write_text(yaml.safe_dump(decl))
    args = ["--task-file", "task.yaml", "--student", "bigru-tiny", "--method", "ft", "--epochs", "1"]
    line = _cli(tmp_path, "orchestrator.trial", *args, "--max-samples", "4", "--out", str(tmp_path / "o"))
    assert "train.jsonl:1: not UTF-8 (byte 0xe9 at column 22)" in line


# ------------------------------------------------------------------------------------------- the study file


def test_study_yaml_in_latin1(tmp_path: Path) -> None:
    path = tmp_path / "study.yaml"
    path.write_bytes("name: caf\xe9\ntasks: [exception]\n".encode("latin-1"))
    line = _plan(tmp_path, path)
    assert line == f"error: {path}:1: not UTF-8 (byte 0xe9 at column 10); save the file as UTF-8"


def test_a_folder_given_as_the_study(tmp_path: Path) -> None:
    folder = tmp_path / "studies"
    folder.mkdir()
    assert _plan(tmp_path, folder) == f"error: {folder} is a folder, not a study YAML file"


def test_a_key_written_twice(tmp_path: Path) -> None:
    path = _study(tmp_path)
    path.write_text(path.read_text() + "students: [bigru-tiny]\n")
    first = path.read_text().splitlines().index("students:") + 1
    last = len(path.read_text().splitlines())
    assert _plan(tmp_path, path) == (
        f"error: {path}:{last}: key 'students' appears twice (first at line {first})"
    )


def test_a_key_written_twice_inside_a_task_and_merge_keys_still_load(tmp_path: Path) -> None:
    from orchestrator.core.errors import StudyError
    from orchestrator.core.yaml_file import read_yaml

    path = tmp_path / "s.yaml"
    path.write_text("name: s\ntasks:\n  - name: a\n    data: d\n    name: b\n")
    with pytest.raises(StudyError, match=r"s\.yaml:5: key 'name' appears twice \(first at line 3\)"):
        read_yaml(path)
    path.write_text("base: &b {lr: 1, epochs: 2}\nstudent_train: {<<: *b, lr: 3}\n")
    assert read_yaml(path)[1]["student_train"] == {"lr": 3, "epochs": 2}


def test_every_profile_still_loads() -> None:
    from orchestrator.core.yaml_file import read_yaml
    from orchestrator.design.study import PROFILES_DIR

    profiles = sorted(PROFILES_DIR.glob("*.yaml"))
    assert profiles
    for path in profiles:
        assert isinstance(read_yaml(path)[1], dict)


def test_a_yaml_syntax_error_names_its_line(tmp_path: Path) -> None:
    from orchestrator.core.errors import StudyError
    from orchestrator.core.yaml_file import read_yaml

    path = tmp_path / "s.yaml"
    path.write_text("name: s\ntasks:\n  - a\n   b: 1\n")
    with pytest.raises(StudyError, match=r"s\.yaml:4: invalid YAML: .*\(column \d+\)$"):
        read_yaml(path)


# ------------------------------------------------------------------------------------------- declarations


def test_unquoted_yes_no_labels(tmp_path: Path) -> None:
    path = _study(tmp_path)
    path.write_text(path.read_text().replace("- ok\n", "- no\n").replace("- long_method\n", "- yes\n"))
    msg = _problem(path)
    assert "task 'smell': field 'labels': got booleans" in msg
    assert "YAML reads unquoted no/yes/on/off/true/false as booleans; quote them" in msg
    assert 'labels: ["no", "yes"]' in msg


def test_quoted_yes_no_labels_load() -> None:
    from tasks.custom import TaskDeclaration

    assert TaskDeclaration.model_validate({"name": "yn", "data": "d", "labels": ["no", "yes"]}).labels == [
        "no",
        "yes",
    ]


@pytest.mark.parametrize("line", ["[1, 2]", '"just text"', "7"])
def test_a_json_line_that_is_not_an_object(tmp_path: Path, line: str) -> None:
    body = (_rows()[0] + "\n" + line + "\n").encode()
    msg = _problem(_study(tmp_path, raw={"train": body}, labels="infer"))
    assert f"{tmp_path / 'smell' / 'train.jsonl'}:2: line 2 is not a JSON object" in msg
    assert "has no field" not in msg


def test_data_naming_a_file(tmp_path: Path) -> None:
    _study(tmp_path)
    msg = _problem(_study(tmp_path, data="smell/train.jsonl"))
    assert f"field 'data': {tmp_path / 'smell' / 'train.jsonl'} is a file, not a folder" in msg
    assert "does not exist" not in msg


def test_a_label_missing_from_the_inferred_labels(tmp_path: Path) -> None:
    test = _rows()[:2] + [json.dumps({"snippet": "x = 1", "smell": "returns_none"})]
    body = "".join(line + "\n" for line in test).encode()
    msg = _problem(_study(tmp_path, raw={"test": body}, labels="infer"))
    assert "test.jsonl:3: unknown label 'returns_none' in field 'smell'" in msg
    assert msg.endswith("(labels inferred from train.jsonl; declare `labels:` to include it)")
    explicit = _problem(_study(tmp_path, raw={"test": body}))  # a declared list: no such hint
    assert "unknown label 'returns_none'" in explicit and "inferred" not in explicit


@pytest.mark.parametrize("labels", ["email", 3, {"a": 1}])
def test_labels_as_another_scalar(tmp_path: Path, labels: object) -> None:
    msg = _problem(_study(tmp_path, labels=labels))
    assert f"task 'smell': field 'labels': a list of class names or 'infer', got {labels!r}" in msg
    assert "literal" not in msg and "union" not in msg


def test_a_declaration_no_tasks_entry_names_is_refused(tmp_path: Path) -> None:
    """A ``custom_tasks:`` entry that ``tasks:`` does not name was declared and silently never run."""
    from orchestrator.core.errors import StudyError
    from orchestrator.design.study import load_spec

    path = _study(tmp_path)
    study = yaml.safe_load(path.read_text())
    study["custom_tasks"] = [{**study["tasks"][0], "name": "other"}]
    path.write_text(yaml.safe_dump(study, sort_keys=False))
    with pytest.raises(StudyError, match=r"custom_tasks.0: task 'other' is declared but not named in tasks"):
        load_spec(path)
    study["tasks"].append("other")  # named: the round-trip form a validated study dumps
    path.write_text(yaml.safe_dump(study, sort_keys=False))
    assert load_spec(path).tasks == ["smell", "other"]
