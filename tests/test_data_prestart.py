"""A user's own copy of a built-in task's data is checked before anything starts, and identified by what the loaders
read (docs/OWN_DATA.md):

* ``valid.jsonl`` (CodeXGLUE's name for the validation split) is part of the data key: edited validation labels mean
  new keys, never stale trials or teachers (``orchestrator/design/identity.py``);
* a student tokenizer is trained on every task of its family, so a ``defect`` study (or a declared task with
  ``tokenizer_family: python``) needs the family's other tasks in its data folder: one ``error:`` line, not a
  FileNotFoundError after MLflow and Ray start (``orchestrator/design/validate.py``);
* the lines of those files load (an unknown label is one ``error:`` line naming the file and line), for ``--plan``
  and for a run.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parent.parent
SPLITS = {"train": 8, "validation": 4, "test": 4}


pytestmark = pytest.mark.usefixtures("forget_declared_tasks")  # tests/conftest.py


def _record(task: str, i: int) -> dict:
    if task == "defect":
        return {"func": f"int f{i}(int a) {{ return a + {i}; }}", "target": i % 2}
    if task == "clone":
        return {
            "func1": f"int a{i}(int x) {{ return x; }}",
            "func2": f"int b{i}(int y) {{ return y; }}",
            "label": i % 2,
        }
    body = f"def f{i}(x):\n    try:\n        return x[{i}]\n    except __HOLE__:\n        return None"
    return {"function": body, "label": ["KeyError", "IndexError"][i % 2]}


def _write(path: Path, records: list[dict]) -> None:
    path.write_text("".join(json.dumps(r) + "\n" for r in records))


def _data(root: Path, tasks: list[str], validation: str = "validation.jsonl") -> Path:
    """``root/<task>/{train, <validation>, test}.jsonl`` in the built-in tasks' schema."""
    for task in tasks:
        (root / task).mkdir(parents=True)
        for split, n in SPLITS.items():
            name = validation if split == "validation" else f"{split}.jsonl"
            _write(root / task / name, [_record(task, i) for i in range(n)])
    return root


def _study(tmp_path: Path, data: Path | str, tasks: list) -> Path:
    study = {
        "name": "prestart",
        "data": str(data),
        "max_samples": 16,
        "tasks": tasks,
        "teachers": [{"name": "t", "source": "random:roberta", "layers": 2, "hidden": 64}],
        "students": ["roberta-tiny"],
        "methods": ["ft"],
        "seeds": [0],
        "storage": str(tmp_path / "storage"),
    }
    path = tmp_path / "study.yaml"
    path.write_text(yaml.safe_dump(study, sort_keys=False))
    return path


def _spec(tmp_path: Path, data: Path | str, tasks: list):
    from orchestrator.design.study import load_spec

    return load_spec(_study(tmp_path, data, tasks))


def _refused(tmp_path: Path, path: Path) -> str:
    """``--plan`` and a run both answer one ``error:`` line with exit 2, and start nothing; that line."""
    env = {**os.environ, "PYTHONPATH": str(ROOT), "KDSTUDY_STATE_DIR": str(tmp_path / "state")}
    env.pop("MLFLOW_TRACKING_URI", None)
    seen = []
    for extra in (["--plan"], []):
        proc = subprocess.run(
            [sys.executable, "-m", "orchestrator.study", str(path), *extra],
            capture_output=True,
            text=True,
            cwd=tmp_path,
            env=env,
            timeout=120,
        )
        lines = proc.stderr.strip().splitlines()
        assert proc.returncode == 2, proc.stderr[-3000:]
        assert len(lines) == 1 and lines[0].startswith("error: "), proc.stderr[-3000:]
        assert not (tmp_path / "storage" / "mlflow").exists() and not (tmp_path / "storage" / "ray").exists()
        seen.append(lines[0])
    assert seen[0] == seen[1]
    return seen[0]


# ---------------------------------------------------------------------------------------------------------------
# D6: valid.jsonl is in the data key


def test_valid_jsonl_is_part_of_the_data_key(tmp_path: Path) -> None:
    from orchestrator.design.identity import data_content, data_key

    root = _data(tmp_path / "own", ["exception"], validation="valid.jsonl")
    spec = _spec(tmp_path, root, ["exception"])
    valid = root / "exception" / "valid.jsonl"
    assert (
        data_content(str(root), ["exception"])["exception/validation"]
        == hashlib.sha256(valid.read_bytes()).hexdigest()
    )
    before = data_key(spec)
    records = [json.loads(line) for line in valid.read_text().splitlines()]
    _write(valid, [{**r, "label": "ValueError"} for r in records])  # every validation label edited
    assert data_key(spec) != before


def test_a_validation_jsonl_folder_hashes_what_it_always_did(tmp_path: Path) -> None:
    """Existing keys stay: with validation.jsonl (beside a stray valid.jsonl too) that file is the one hashed."""
    from orchestrator.design.identity import data_content

    root = _data(tmp_path / "own", ["exception"])
    folder = root / "exception"
    _write(folder / "valid.jsonl", [_record("exception", 99)])
    content = data_content(str(root), ["exception"])
    for split in ("train", "validation", "test"):
        expected = hashlib.sha256((folder / f"{split}.jsonl").read_bytes()).hexdigest()
        assert content[f"exception/{split}"] == expected


# ---------------------------------------------------------------------------------------------------------------
# D4: a family's student tokenizer reads every task of the family


def test_a_defect_study_without_clone_data_is_refused_before_anything_starts(tmp_path: Path) -> None:
    root = _data(tmp_path / "own", ["defect"], validation="valid.jsonl")
    line = _refused(tmp_path, _study(tmp_path, root, ["defect"]))
    assert line.startswith(
        f"error: data: {root} lacks clone/train.jsonl, clone/validation.jsonl, clone/test.jsonl"
    )
    assert "the c_java student tokenizer is trained on every task of its family (clone, defect)" in line
    assert "--tasks clone" in line


def test_a_declared_task_sharing_the_python_tokenizer_needs_exception_data(tmp_path: Path) -> None:
    from orchestrator.core.errors import StudyError
    from orchestrator.design.validate import check_study, data_problems

    own = tmp_path / "pkg"
    own.mkdir()
    for split, n in SPLITS.items():
        _write(
            own / f"{split}.jsonl", [{"code": f"import m{i}", "label": ["a", "b"][i % 2]} for i in range(n)]
        )
    declared = {"name": "pkg", "data": str(own), "tokenizer_family": "python"}
    root = _data(tmp_path / "own", ["defect"])  # exists, but holds no exception data
    with pytest.raises(StudyError) as err:
        check_study(_spec(tmp_path, root, [declared]))
    msg = str(err.value)
    assert f"data: {root} lacks exception/train.jsonl" in msg
    assert "the python student tokenizer is trained on every task of its family (exception, pkg)" in msg
    assert "or give task 'pkg' a tokenizer_family of its own" in msg
    missing = tmp_path / "nowhere"
    msg = " ".join(data_problems(_spec(tmp_path, missing, [declared])))
    assert f"folder {missing} does not exist, and the python student tokenizer" in msg
    # with the family's data there, or a tokenizer of its own, nothing is missing
    assert data_problems(_spec(tmp_path, _data(tmp_path / "full", ["exception"]), [declared])) == []
    assert data_problems(_spec(tmp_path, missing, [{**declared, "tokenizer_family": "pkg"}])) == []


def test_a_defect_study_with_its_family_present_passes(tmp_path: Path) -> None:
    from orchestrator.design.validate import data_problems

    root = _data(tmp_path / "own", ["defect", "clone"], validation="valid.jsonl")
    assert data_problems(_spec(tmp_path, root, ["defect"])) == []


# ---------------------------------------------------------------------------------------------------------------
# D5: the lines of a built-in task's own copy are read through before the start


def test_an_unknown_label_in_a_builtin_tasks_copy_is_one_line_before_anything_starts(tmp_path: Path) -> None:
    root = _data(tmp_path / "own", ["exception"], validation="valid.jsonl")
    train = root / "exception" / "train.jsonl"
    records = [json.loads(line) for line in train.read_text().splitlines()]
    records[5]["label"] = "FooError"
    _write(train, records)
    line = _refused(tmp_path, _study(tmp_path, root, ["exception"]))
    assert line.startswith(
        f"error: data: task 'exception': {train}:6: unknown label 'FooError' in field 'label'"
    )
    assert "valid: ['ValueError', 'KeyError'" in line


def test_a_family_siblings_bad_line_is_reported_too(tmp_path: Path) -> None:
    """The defect study reads clone's training split for its tokenizer: a broken clone line stops it as well."""
    from orchestrator.design.validate import data_problems

    root = _data(tmp_path / "own", ["defect", "clone"])
    (root / "clone" / "test.jsonl").write_text('{"func1": "int a() {}", "label": 1}\n')
    problems = data_problems(_spec(tmp_path, root, ["defect"]))
    assert len(problems) == 1
    assert problems[0].startswith(
        f"data: task 'clone': {root / 'clone' / 'test.jsonl'}:1: missing field 'func2'"
    )


def test_a_relative_data_folder_that_is_missing_names_where_it_looked(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A study's ``data:`` is relative to the current folder, a declared task's to its YAML: the line says which
    folder it looked in (an audit put the data beside the YAML and ran from elsewhere)."""
    from orchestrator.design.validate import data_problems

    monkeypatch.chdir(tmp_path)
    (problem,) = data_problems(_spec(tmp_path, "exc", ["exception"]))
    assert problem.startswith(
        f"data: folder exc ({tmp_path / 'exc'}: relative to the current folder) does not"
    )
    (problem,) = data_problems(_spec(tmp_path, tmp_path / "abs", ["exception"]))
    assert problem.startswith(f"data: folder {tmp_path / 'abs'} does not exist (")
