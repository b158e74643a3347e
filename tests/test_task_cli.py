"""The ``tasks`` commands on user mistakes: one ``error: ...`` line on stderr, exit status 2, no traceback."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tasks.build_local import main as build_local_main
from tasks.completion.__main__ import main as completion_main


def _one_error_line(capsys: pytest.CaptureFixture[str], run, *args: str) -> str:  # noqa: ANN001
    with pytest.raises(SystemExit) as info:
        run(list(args))
    assert info.value.code == 2
    err = capsys.readouterr().err
    lines = err.splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    assert "Traceback" not in err
    return lines[0]


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["--train", "x"], "argument --train: invalid int value: 'x'"),
        (["--tasks", "nope"], "invalid choice: 'nope'"),
        (["--train", "0"], "sizes['train'] must be a positive int, got 0"),
        (["--completion-mb", "-1", "--tasks", "completion"], "--completion-mb must be above 0, got -1.0"),
        (["--completion-mb", "nan", "--tasks", "completion"], "--completion-mb must be above 0, got nan"),
        (
            ["--completion-lines", "0", "--tasks", "completion"],
            "--completion-lines must be at least 1, got 0",
        ),
    ],
)
def test_build_local_bad_arguments(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], args: list[str], expected: str
) -> None:
    line = _one_error_line(capsys, build_local_main, "--out", str(tmp_path / "out"), *args)
    assert expected in line


def test_build_local_needs_out_and_an_out_it_can_write(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert "required: --out" in _one_error_line(capsys, build_local_main)
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    line = _one_error_line(capsys, build_local_main, "--out", str(blocker / "data"), "--tasks", "exception")
    assert str(blocker / "data") in line and "Not a directory" in line


def test_completion_commands_on_missing_and_bad_inputs(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    missing = tmp_path / "missing.json"
    line = _one_error_line(capsys, completion_main, "score", "--answers", str(missing), "--predictions", "p")
    assert str(missing) in line
    bad = tmp_path / "answers.json"
    bad.write_text(json.dumps({"input": "<s> a", "gt": "b"}) + "\n{not json\n")
    line = _one_error_line(capsys, completion_main, "score", "--answers", str(bad), "--predictions", str(bad))
    assert f"{bad}:2: not JSON" in line
    good = tmp_path / "good.json"
    good.write_text(json.dumps({"input": "<s> a", "gt": "b"}) + "\n")
    line = _one_error_line(
        capsys, completion_main, "generate", "--model", str(tmp_path / "no-model"), "--answers", str(good),
        "--predictions", str(tmp_path / "p.txt"),
    )  # fmt: skip
    assert "no-model" in line and "not a model folder" in line
    assert "py150_files" in _one_error_line(
        capsys,
        completion_main,
        "prepare-py150",
        "--py150",
        str(tmp_path / "none"),
        "--out",
        str(tmp_path / "o"),
    )
    assert "invalid choice: 'bogus'" in _one_error_line(capsys, completion_main, "bogus")
    assert "required: --answers/-a" in _one_error_line(capsys, completion_main, "score")
