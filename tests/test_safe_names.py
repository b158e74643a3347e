"""Nothing from a study, a task declaration, a pin or a manifest escapes its folder, and the study command answers a
usage mistake with one ``error:`` line (the security and input audit's S1-S4, L1, E5 and E9)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from orchestrator.cache.key import CacheCorruptError
from orchestrator.cache.manifest import check_manifest
from orchestrator.core.errors import StudyError
from orchestrator.design.study import load_spec, profiles

ROOT = Path(__file__).resolve().parent.parent
CLASSIFICATION = """\
name: s
tasks: [exception]
teachers:
  - {{name: {name}, source: "random:roberta", layers: {layers}, hidden: {hidden}}}
students: [roberta-tiny]
methods: [ft, kd]
"""
COMPLETION = """\
name: c
task: completion
teachers:
  - {{name: {name}, source: "random:gpt2"}}
students: [gpt2-1l]
"""
UNUSABLE = ["../../../escaped-teacher", "/tmp/abs-teacher", "microsoft/unixcoder", "a/../../b", ".hidden"]


def _study_error(tmp_path: Path, text: str) -> str:
    path = tmp_path / "study.yaml"
    path.write_text(text)
    with pytest.raises(StudyError) as err:
        load_spec(path)
    return str(err.value)


@pytest.mark.parametrize("name", UNUSABLE)
def test_a_teacher_name_that_is_not_a_folder_name_is_a_field_error(tmp_path: Path, name: str) -> None:
    text = CLASSIFICATION.format(name=json.dumps(name), layers=1, hidden=32)
    msg = _study_error(tmp_path, text)
    assert f"study.yaml:4: teachers.0.name: '{name}' is not usable as a folder name" in msg
    msg = _study_error(tmp_path, COMPLETION.format(name=json.dumps(name)))
    assert f"study.yaml:4: teachers.0.name: '{name}' is not usable as a folder name" in msg


def test_teacher_names_follow_the_rule_of_study_names() -> None:
    from orchestrator.design import spec, validate

    for name in ["ok", "a" * 100, "a" * 101, "x..y", *UNUSABLE]:
        try:
            usable = spec.folder_name(name) == name
        except ValueError:
            usable = False
        assert usable == (not validate.name_problems(name)), name


def test_usable_teacher_names_and_every_profile_still_load(tmp_path: Path) -> None:
    for name in ("tiny-roberta", "minilm", "unixcoder", "Teacher_2.v1"):
        path = tmp_path / "study.yaml"
        path.write_text(CLASSIFICATION.format(name=name, layers=1, hidden=32))
        assert load_spec(path).teachers[0].name == name
        path.write_text(COMPLETION.format(name=name))
        assert load_spec(path).teachers[0].name == name
    for profile in profiles():
        load_spec(profile)


def test_a_bad_teacher_name_stops_plan_with_one_line(tmp_path: Path) -> None:
    """Before anything starts, also with --plan: one line, exit 2, and nothing written."""
    study = tmp_path / "study.yaml"
    study.write_text(CLASSIFICATION.format(name="../../../escaped-teacher", layers=1, hidden=32))
    env = {**os.environ, "PYTHONPATH": str(ROOT), "KDSTUDY_STATE_DIR": str(tmp_path / "state")}
    env.pop("MLFLOW_TRACKING_URI", None)
    storage = tmp_path / "a" / "b" / "st"
    proc = subprocess.run(
        [sys.executable, "-m", "orchestrator.study", str(study), "--plan", "--storage", str(storage)],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        env=env,
        timeout=120,
    )
    lines = proc.stderr.strip().splitlines()
    assert proc.returncode == 2 and len(lines) == 1, proc.stderr[-3000:]
    assert lines[0].startswith("error: ") and "teachers.0.name: '../../../escaped-teacher'" in lines[0]
    assert not storage.exists() and not list(tmp_path.glob("escaped-teacher*"))


@pytest.mark.parametrize(
    ("layers", "hidden", "expected"),
    [
        (-1, 32, "teachers.0.layers: Input should be greater than or equal to 1"),
        (0, 32, "teachers.0.layers: Input should be greater than or equal to 1"),
        (1, 0, "teachers.0.hidden: must be a positive multiple of 2"),
        (1, -4, "teachers.0.hidden: must be a positive multiple of 2"),
        (1, 31, "teachers.0.hidden: must be a positive multiple of 2 (a random teacher's 2 attention heads"),
    ],
)
def test_a_random_teachers_shape_is_checked(tmp_path: Path, layers: int, hidden: int, expected: str) -> None:
    msg = _study_error(tmp_path, CLASSIFICATION.format(name="tt", layers=layers, hidden=hidden))
    assert f"study.yaml:4: {expected}" in msg


@pytest.mark.parametrize("family", ["./../../../escaped-tok", "../x", "/abs", "a/b", "Big", ""])
def test_a_declared_tasks_tokenizer_family_is_named_like_a_task(tmp_path: Path, family: str) -> None:
    from tasks.custom import TaskDeclarationError, validate

    with pytest.raises(TaskDeclarationError, match="field 'tokenizer_family': .* like a task name"):
        validate({"name": "smelly", "data": str(tmp_path), "tokenizer_family": family}, tmp_path)
    study = tmp_path / "study.yaml"
    study.write_text(
        f"name: s\ntasks:\n  - {{name: smelly, data: {tmp_path}, tokenizer_family: {json.dumps(family)}}}\n"
        "teachers: []\nstudents: [roberta-tiny]\nmethods: [ft]\n"
    )
    with pytest.raises(StudyError, match="tokenizer_family"):
        load_spec(study)


def test_a_tokenizer_pin_never_leaves_the_cache_folder(tmp_path: Path) -> None:
    from models.tokenizer import StudentTokenizer, _pinned, train_bpe

    texts = [f"def f{i}(x):\n    return x + {i}\n" for i in range(40)]
    tokenizer = StudentTokenizer(train_bpe(texts, 300))
    cache = tmp_path / "tc" / "tokenizers"
    tokenizer.save(cache / "fam-300-abc")
    tokenizer.save(cache.parent)  # a tokenizer one level up: ".." would load it
    outside = tokenizer.save(tmp_path / "elsewhere")
    (cache / "link").symlink_to(outside, target_is_directory=True)
    (cache / "inner-link").symlink_to(cache / "fam-300-abc", target_is_directory=True)
    pin = cache / "requests" / "p.json"
    pin.parent.mkdir()

    def loads(key: object) -> bool:
        pin.write_text(json.dumps({"tokenizer": key}))
        return _pinned(pin, cache) is not None

    assert loads("fam-300-abc") and loads("inner-link")
    for bad in ("..", ".", "", "link", "../tokenizers/fam-300-abc", str(outside), "fam\x00", 7, None):
        assert not loads(bad), bad


def test_a_manifest_path_with_a_nul_byte_is_a_corrupt_cache(tmp_path: Path) -> None:
    shard = {"dir": "s0\x00x", "start": 0, "end": 2, "files": {"logits": {"sha256": "x", "bytes": 1}}}
    manifest = {
        "key": "k",
        "request": {"spec": {}},
        "num_labels": 2,
        "samples": {"train": 2, "validation": 0, "test": 0},
        "shards": {"train": [shard], "validation": [], "test": []},
        "bytes": 1,
    }
    with pytest.raises(CacheCorruptError, match=r"shards.train\[0\].dir .* not a usable path"):
        check_manifest(manifest, tmp_path)


@pytest.mark.parametrize(
    ("argv", "expected"),
    [
        (["smoke", "--plan", "--bogus"], "unrecognized arguments: --bogus"),
        ([], "the following arguments are required: study"),
        (["smoke", "--storage"], "argument --storage: expected one argument"),
        (["smoke", "--json"], "--json needs --plan or --status"),
        (["smoke", "--plan", "--status"], "--status cannot be combined with --plan"),
        (["smoke", "--status", "--calibrate"], "--status cannot be combined with --calibrate"),
        (["smoke", "--plan", "--wait"], "--wait applies to running the study; --plan runs nothing"),
        (["smoke", "--status", "--wait"], "--wait applies to running the study; --status runs nothing"),
    ],
)
def test_study_usage_mistakes_are_one_line(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, argv: list[str], expected: str
) -> None:
    from orchestrator.core import process
    from orchestrator.sweep import driver

    def ran(*_: object) -> None:
        raise AssertionError(f"{argv} got past the parser: it would have run")

    monkeypatch.setattr(process, "study_env", ran)  # neither changes this process nor starts anything
    monkeypatch.setattr(driver, "_command", ran)
    with pytest.raises(SystemExit) as exit_:
        driver.main(argv)
    lines = capsys.readouterr().err.strip().splitlines()
    assert exit_.value.code == 2 and len(lines) == 1, lines
    assert lines[0].startswith("error: python -m orchestrator.study: ") and expected in lines[0]
    assert lines[0].endswith("(see python -m orchestrator.study --help)")


@pytest.mark.parametrize(
    "flags",
    [["--plan"], ["--plan", "--json"], ["--plan", "--calibrate"], ["--status", "--json"], ["--calibrate"]],
)
def test_documented_flag_combinations_still_parse(flags: list[str]) -> None:
    from orchestrator.sweep.driver import _parse

    args = _parse(["smoke", *flags])
    assert args.study == "smoke" and args.plan == ("--plan" in flags) and args.json == ("--json" in flags)
