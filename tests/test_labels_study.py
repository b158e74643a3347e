"""The labels factor of a classification study (issue 20, item 1): ``labels:`` in the YAML, one level or several,
its names, keys, plan counts and errors; a declared task's ``unlabelled.jsonl`` checked before anything starts.
The end-to-end run (FT and the teacher on the labelled part, KD on every input from a cache over all of them) is
``tests/test_own_data.py``'s declared-task study."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from conftest import smoke_variant

from orchestrator.core.errors import StudyError
from orchestrator.design.describe import describe, plan_dict
from orchestrator.design.study import build_plan
from orchestrator.design.validate import check_study
from tasks.data_check import first_problem

ROOT = Path(__file__).resolve().parent.parent
_spec = smoke_variant


def test_levels_parse_and_name_themselves(tmp_path: Path) -> None:
    assert list(_spec(tmp_path).label_levels()) == ["all"]
    assert list(_spec(tmp_path, labels="all").label_levels()) == ["all"]
    assert list(_spec(tmp_path, labels={"fraction": 0.1}).label_levels()) == ["fraction=0.1"]
    levels = _spec(
        tmp_path, labels=[{"count": 50, "seed": 2, "stratify": True}, {"fraction": 1.0}]
    ).label_levels()
    assert list(levels) == ["count=50;seed=2;stratified", "all"] and levels["all"] is None


@pytest.mark.parametrize(
    ("labels", "message"),
    [
        (
            [{"count": 50}, {"fraction": 2}],
            r"s.yaml:\d+: labels.1.fraction: must be a number in \(0, 1\], got 2",
        ),
        ({"count": 0}, r"labels.0.count: must be an integer >= 1, got 0"),
        ({"count": 5, "fraction": 0.5}, r"labels.0: give exactly one of 'fraction'"),
        ({"frac": 0.5}, r"labels.0.frac: unknown key"),
        ([], r"labels: give at least one level"),
        ([5], r"labels.0: "),
    ],
)
def test_bad_levels_name_the_field(tmp_path: Path, labels: object, message: str) -> None:
    with pytest.raises(StudyError, match=message):
        _spec(tmp_path, labels=labels)


def test_study_wide_label_problems(tmp_path: Path) -> None:
    with pytest.raises(
        StudyError, match=r"labels.0.count: 500 exceeds the 100 training samples of task 'defect'"
    ):
        check_study(_spec(tmp_path, labels={"count": 500}))
    with pytest.raises(StudyError, match=r"labels: duplicate entries \['all'\]"):
        check_study(_spec(tmp_path, labels=["all", {"fraction": 1.0}]))


def test_a_completion_study_refuses_labels_in_one_line(tmp_path: Path) -> None:
    path = tmp_path / "c.yaml"
    raw = yaml.safe_load((ROOT / "orchestrator" / "profiles" / "completion-smoke.yaml").read_text())
    path.write_text(yaml.safe_dump({**raw, "labels": {"count": 10}}))
    out = subprocess.run(
        [sys.executable, "-m", "orchestrator.study", str(path), "--plan"],
        capture_output=True, text=True, cwd=ROOT, timeout=120,
    )  # fmt: skip
    assert out.returncode == 2 and "Traceback" not in out.stderr, out.stderr
    assert "labels: not meaningful for a completion study" in out.stderr


def test_keys_unchanged_by_default_and_distinct_per_level(tmp_path: Path) -> None:
    default = build_plan(_spec(tmp_path), calibration=None)
    both = build_plan(_spec(tmp_path, labels=[{"count": 40}, {"fraction": 1.0}]), calibration=None)
    # the all level is today's study: the same trial, teacher and cache keys and folders
    assert [t.trial_key for t in both.trials if t.labels == "all"] == [t.trial_key for t in default.trials]
    assert [(u.key, u.folder) for u in both.teachers if u.labels == "all"] == [
        (u.key, u.folder) for u in default.teachers
    ]
    few = [t for t in both.trials if t.labels == "count=40"]
    assert len(few) == len(default.trials) and not {t.trial_key for t in few} & {
        t.trial_key for t in default.trials
    }
    assert len({t.cell for t in both.trials}) == 2 * len({t.cell for t in default.trials})
    teachers = [u for u in both.teachers if u.labels == "count=40"]
    assert all("-count=40-" in u.folder for u in teachers) and len(teachers) == len(default.teachers)
    ft = next(t for t in few if t.method == "ft")
    kd = next(t for t in few if t.method == "kd")
    assert ft.work.labels == kd.work.labels == {"count": 40} and kd.work.teacher in {
        u.folder for u in teachers
    }
    assert (
        ft.run_name == "ft rb-tiny def count=40 s0" and ft.tags["labels"] == ft.params["labels"] == "count=40"
    )
    assert default.trials[0].params["labels"] == "all" and default.trials[0].tags["labels"] == "all"


def test_plan_shows_the_factor(tmp_path: Path) -> None:
    plan = build_plan(_spec(tmp_path, labels=[{"count": 40}, {"fraction": 1.0}]), calibration=None)
    factor = plan_dict(plan)["labels"]
    assert factor["levels"] == ["count=40", "all"]
    assert factor["trials"] == {"count=40": 54, "all": 54} and plan.counts()["trials"] == 108
    assert factor["samples"]["clone"] == {
        "count=40": {"labelled": 40, "unlabelled": 60},
        "all": {"labelled": 100, "unlabelled": 0},
    }
    text = describe(plan)
    assert "labels levels            2" in text and "defect 40 labels + 60 unlabelled" in text
    assert "labels levels" not in describe(build_plan(_spec(tmp_path), calibration=None))


def test_data_check_reads_unlabelled_inputs(tmp_path: Path) -> None:
    from tasks import TASKS
    from tasks.custom import TaskDeclaration
    from tasks.data_check import task_from_entry

    folder = tmp_path / "own"
    folder.mkdir()
    for split in ("train", "validation", "test"):
        (folder / f"{split}.jsonl").write_text(
            '{"code": "def f(): pass", "label": "a"}\n{"code": "x", "label": "b"}\n'
        )
    decl = TaskDeclaration(name="own", data=str(folder)).model_dump()
    task = task_from_entry({**decl, "labels": ["a", "b"]})
    before = dict(TASKS)
    try:
        assert first_problem(task) is None
        (folder / "unlabelled.jsonl").write_text('{"code": "y = 1"}\n\n{"text": "z"}\n')
        assert first_problem(task) == (
            f"{folder / 'unlabelled.jsonl'}:3: missing field 'code' (unlabelled inputs need ['code']; got ['text'])"
        )
        (folder / "unlabelled.jsonl").write_text('{"code": "y = 1"}\n{"code": \n')
        assert str(first_problem(task)).startswith(f"{folder / 'unlabelled.jsonl'}:2: not valid JSON")
        (folder / "unlabelled.jsonl").write_text(json.dumps({"code": "y = 1", "label": "ignored"}) + "\n")
        assert first_problem(task) is None
    finally:
        TASKS.clear()
        TASKS.update(before)
