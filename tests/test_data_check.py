"""A declared task's data-file mistakes are one ``error:`` line naming file:line and field, exit 2, found by the
study's validation (run and ``--plan``) before Ray or MLflow start (issue 24; tasks/data_check.py); and a
classification study's method names leave out the completion study's ``distil``."""

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


@pytest.fixture(autouse=True)
def _forget_declared_tasks():
    """Declared tasks live in the process-wide registry and KDSTUDY_TASKS: leave both as they were."""
    from tasks import TASKS

    before, env = dict(TASKS), os.environ.get("KDSTUDY_TASKS")
    yield
    TASKS.clear()
    TASKS.update(before)
    if env is None:
        os.environ.pop("KDSTUDY_TASKS", None)
    else:
        os.environ["KDSTUDY_TASKS"] = env


def _rows(n: int = 6) -> list[dict]:
    return [{"snippet": f"def f{i}():\n    return {i}", "smell": LABELS[i % 3]} for i in range(n)]


def _study(tmp_path: Path, edit: dict[str, list[str]] | None = None, labels: object = LABELS) -> Path:
    """A study YAML with a declared task whose files are good, except lines replaced by ``edit`` (split: lines)."""
    data = tmp_path / "smell"
    data.mkdir()
    for split in ("train", "validation", "test"):
        lines = [json.dumps(r) for r in _rows()]
        lines = (edit or {}).get(split, lines)
        (data / f"{split}.jsonl").write_text("".join(line + "\n" for line in lines))
    task = {
        "name": "smell",
        "data": "smell",
        "code_field": "snippet",
        "label_field": "smell",
        "labels": labels,
    }
    study = {
        "name": "own",
        "tasks": [task],
        "teachers": [{"name": "t", "source": "random:roberta"}],
        "students": ["roberta-tiny"],
        "methods": ["ft"],
        "seeds": [0],
        "storage": str(tmp_path / "storage"),
    }
    path = tmp_path / "study.yaml"
    path.write_text(yaml.safe_dump(study))
    return path


def _problem(tmp_path: Path, **kw) -> str:
    from orchestrator.core.errors import StudyError
    from orchestrator.design.study import load_spec
    from orchestrator.design.validate import check_study

    with pytest.raises(StudyError) as err:
        check_study(load_spec(_study(tmp_path, **kw)))
    return str(err.value)


def _good(n: int = 6) -> list[str]:
    return [json.dumps(r) for r in _rows(n)]


def test_good_files_pass(tmp_path: Path) -> None:
    from orchestrator.design.study import load_spec
    from orchestrator.design.validate import check_study

    check_study(load_spec(_study(tmp_path)))


def test_label_not_in_the_declared_list(tmp_path: Path) -> None:
    lines = _good()
    lines[3] = json.dumps({"snippet": "x = 1", "smell": "returns_none"})
    msg = _problem(tmp_path, edit={"test": lines})
    assert f"{tmp_path / 'smell' / 'test.jsonl'}:4: unknown label 'returns_none' in field 'smell'" in msg
    assert str(LABELS) in msg and "\n" not in msg


def test_missing_code_field(tmp_path: Path) -> None:
    lines = _good()
    lines[1] = json.dumps({"code": "x = 1", "smell": "ok"})
    msg = _problem(tmp_path, edit={"train": lines})
    assert "train.jsonl:2: missing field 'snippet'" in msg


def test_a_line_that_is_not_json(tmp_path: Path) -> None:
    lines = _good()
    lines[4] = '{"snippet": "x = 1", "smell": ok}'
    assert "validation.jsonl:5: not valid JSON" in _problem(tmp_path, edit={"validation": lines})


def test_an_empty_validation_file(tmp_path: Path) -> None:
    msg = _problem(tmp_path, edit={"validation": ["", "  "]})
    assert "validation.jsonl: the validation split is empty" in msg


def test_integer_labels_where_the_others_are_text(tmp_path: Path) -> None:
    """With inferred labels the integer 1 would silently become a fourth class."""
    lines = _good()
    lines[2] = json.dumps({"snippet": "x = 1", "smell": 1})
    msg = _problem(tmp_path, edit={"train": lines}, labels="infer")
    assert "train.jsonl:3: field 'smell': label 1 is integer, but the labels before it are text" in msg
    assert "train.jsonl:1: 'ok'" in msg


def test_plan_through_the_cli_is_one_line_exit_2_before_anything_starts(tmp_path: Path) -> None:
    lines = _good()
    lines[3] = json.dumps({"snippet": "x = 1", "smell": "returns_none"})
    path = _study(tmp_path, edit={"test": lines})
    env = {**os.environ, "PYTHONPATH": str(ROOT), "KDSTUDY_STATE_DIR": str(tmp_path / "state")}
    env.pop("MLFLOW_TRACKING_URI", None)
    for extra in (["--plan"], []):  # the plan, and a run: refused before Ray, MLflow or the storage
        proc = subprocess.run(
            [sys.executable, "-m", "orchestrator.study", str(path), *extra],
            capture_output=True,
            text=True,
            cwd=tmp_path,
            env=env,
            timeout=120,
        )
        assert proc.returncode == 2, proc.stderr
        lines_err = proc.stderr.strip().splitlines()
        assert len(lines_err) == 1 and lines_err[0].startswith("error: "), proc.stderr
        assert "test.jsonl:4: unknown label 'returns_none' in field 'smell'; valid: " in lines_err[0]
        assert not (tmp_path / "storage" / "mlflow").exists() and not (tmp_path / "storage" / "ray").exists()


def test_a_classification_study_offers_no_completion_method(tmp_path: Path) -> None:
    """``distil`` (causal LMs) is neither accepted nor offered in a classification study's lists (issue 24)."""
    from orchestrator.core.errors import StudyError
    from orchestrator.design.study import load_spec

    path = _study(tmp_path)
    study = yaml.safe_load(path.read_text())
    for edit in ({"methods": ["distil"]}, {"method_params": {"distil": {"alpha_ce": 1.0}}}):
        path.write_text(yaml.safe_dump({**study, **edit}))
        with pytest.raises(StudyError) as err:
            load_spec(path)
        msg = str(err.value)
        assert "'distil'" in msg and "valid: ['ckd', 'dist', 'ft', 'kd', 'pkd']" in msg
