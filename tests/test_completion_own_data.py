"""The completion study on a corpus nobody here has seen (an audit's cases): unusual files that must load (a
byte-order mark, blank lines, trailing spaces), mistakes that must be one line naming the place before anything
starts (a byte that is not UTF-8, an empty split or line set, a data path that is a file), ``prepare-py150`` on a
small corpus or a list that leaves its folder, the scorer on a file with a BOM, and a study name or ``task:``
that is not what it looks like."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from tasks.completion import load_line_test, load_split
from tasks.completion.__main__ import main as cli_main
from tasks.completion.data import CompletionDataError, content_problems
from tasks.completion.scorer import score_files

ROOT = Path(__file__).resolve().parent.parent
FILE = "<s> x = 1 <EOL> </s>"
SAMPLE = {"input": "<s> x =", "gt": "1"}


def _folder(tmp_path: Path, train: bytes | None = None, line_test: bytes | None = None) -> Path:
    data = tmp_path / "corpus"
    data.mkdir()
    (data / "train.txt").write_bytes(train if train is not None else (FILE + "\n").encode())
    (data / "validation.txt").write_text(FILE + "\n")
    (data / "line_test.json").write_bytes(
        line_test if line_test is not None else (json.dumps(SAMPLE) + "\n").encode()
    )
    return data


def test_a_bom_blank_lines_and_trailing_spaces_load(tmp_path: Path) -> None:
    data = _folder(
        tmp_path,
        b"\xef\xbb\xbf" + f"{FILE}  \n\n{FILE}\r\n\n".encode(),
        b"\xef\xbb\xbf" + json.dumps(SAMPLE).encode(),
    )
    assert load_split(data, "train") == [FILE, FILE]
    assert load_line_test(data) == [SAMPLE]
    assert content_problems(data) == []


@pytest.mark.parametrize(
    ("train", "line_test", "expected"),
    [
        (
            "<s> caf\xe9 </s>\n".encode("latin-1"),
            None,
            r"train.txt:1: not UTF-8 \(byte 0xe9 at column 8\)",
        ),
        (b"\n  \n", None, r"train.txt: no files in it \(every line is blank\)"),
        (None, b"\n", r"line_test.json: no line samples in it"),
        (None, b'{"input": "<s> \xff", "gt": "1"}\n', r"line_test.json:1: not UTF-8 \(byte 0xff"),
    ],
)
def test_a_data_mistake_is_one_line_before_anything_starts(
    tmp_path: Path, train: bytes | None, line_test: bytes | None, expected: str
) -> None:
    from orchestrator.core.errors import StudyError
    from orchestrator.design.study import load_spec
    from orchestrator.design.validate import check_study

    data = _folder(tmp_path, train, line_test)
    raw = yaml.safe_load((ROOT / "orchestrator" / "profiles" / "completion-smoke.yaml").read_text())
    raw.update(storage=str(tmp_path / "store"), data=str(data))
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump(raw))
    with pytest.raises(StudyError, match=expected):
        check_study(load_spec(path))
    (data / "train.txt").unlink()
    raw["data"] = str(tmp_path / "c.yaml")  # a file where the folder should be
    path.write_text(yaml.safe_dump(raw))
    with pytest.raises(StudyError, match=r"c.yaml is a file, not a folder"):
        check_study(load_spec(path))


def test_a_byte_that_is_not_utf8_later_in_a_split_is_named_when_it_is_read(tmp_path: Path) -> None:
    """The check before the start reads a split's first file only (py150's train is 0.7 GB); a trial reading the
    whole split says the same one line (``CompletionDataError`` is the user's error)."""
    data = _folder(tmp_path, f"{FILE}\n<s> caf\xe9 </s>\n".encode("latin-1"))
    assert content_problems(data) == []
    with pytest.raises(CompletionDataError, match=r"train.txt:2: not UTF-8 \(byte 0xe9 at column 8\)"):
        load_split(data, "train")


def test_too_few_tokens_for_one_block_is_the_users_error() -> None:
    from orchestrator.core.errors import user_error_of
    from orchestrator.train.lm_data import TooFewTokensError, make_blocks

    with pytest.raises(TooFewTokensError, match="3 tokens make no block of 32") as err:
        make_blocks([[1, 2, 3]], 32)
    assert user_error_of(err.value) is err.value


def _py150(tmp_path: Path, train_list: str) -> Path:
    base = tmp_path / "py150"
    (base / "data").mkdir(parents=True)
    (base / "data" / "a.py").write_text("x = 1\n")
    (tmp_path / "outside.py").write_text("secret_token = 1\n")
    (base / "python100k_train.txt").write_text(train_list)
    (base / "python50k_eval.txt").write_text("data/a.py\n")
    return base


def test_prepare_py150_on_a_small_corpus(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A corpus of fewer files than CodeXGLUE's 5,000 held out: refused (it would train on nothing), or split as
    ``--validation-files`` says; unreadable files are counted."""
    base = _py150(tmp_path, "data/a.py\ndata/a.py\ndata/gone.py\n")
    out = tmp_path / "out"
    with pytest.raises(SystemExit) as code:
        cli_main(["prepare-py150", "--py150", str(base), "--out", str(out)])
    err = capsys.readouterr().err
    assert code.value.code == 2 and "lists 3 files and the last 5000 are held out" in err
    assert "--validation-files" in err and not out.exists()
    assert (
        cli_main(["prepare-py150", "--py150", str(base), "--out", str(out), "--validation-files", "1"]) == 0
    )
    assert load_split(out, "train") == ["<s> x = <NUM_LIT:1> </s>"] * 2
    assert load_split(out, "validation") == ["<s> </s>"]
    assert "validation: 1 of 1 files missing or not UTF-8" in capsys.readouterr().err


def test_prepare_py150_refuses_a_list_entry_outside_its_folder(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    base = _py150(tmp_path, "data/a.py\n../outside.py\n")
    with pytest.raises(SystemExit):
        cli_main(
            ["prepare-py150", "--py150", str(base), "--out", str(tmp_path / "out"), "--validation-files", "1"]
        )
    assert "python100k_train.txt:2: '../outside.py' leaves --py150" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


def test_prepare_py150_checks_the_line_test_first(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    base = _py150(tmp_path, "data/a.py\ndata/a.py\n")
    bad = tmp_path / "test.json"
    bad.write_text('{"input": "<s>"}\n')
    for line_test in (bad, tmp_path / "none.json"):
        with pytest.raises(SystemExit):
            cli_main(
                [
                    "prepare-py150",
                    "--py150",
                    str(base),
                    "--out",
                    str(tmp_path / "out"),
                    "--line-test",
                    str(line_test),
                ]
            )
        assert not (tmp_path / "out").exists()  # before hours of preprocessing
    err = capsys.readouterr().err
    assert "test.json:1: needs string fields 'input' and 'gt'" in err and "none.json: missing" in err


def test_the_scorer_skips_a_bom_and_blank_answer_lines(tmp_path: Path) -> None:
    answers, predictions = tmp_path / "answers.json", tmp_path / "predictions.txt"
    answers.write_bytes(
        b"\xef\xbb\xbf" + "".join(json.dumps({"gt": g}) + "\n\n" for g in ("a b", "c")).encode()
    )
    predictions.write_bytes(b"\xef\xbb\xbfa b\nc\n")
    scores = score_files(answers, predictions)
    assert scores.n == 2 and scores.em == 100.0 and scores.es == 100.0
    with pytest.raises(ValueError, match="a folder, not a file"):
        score_files(tmp_path, predictions)


def test_a_study_name_with_a_folder_is_never_a_profile_and_task_is_checked(tmp_path: Path) -> None:
    from orchestrator.core.errors import StudyError
    from orchestrator.design.study import load_spec, study_path

    with pytest.raises(StudyError, match=r"study file \.\./profiles/smoke does not exist"):
        study_path("../profiles/smoke")
    assert study_path("smoke").name == "smoke.yaml"
    raw = yaml.safe_load((ROOT / "orchestrator" / "profiles" / "completion-smoke.yaml").read_text())
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump({**raw, "task": "completions"}))
    with pytest.raises(StudyError, match=r"task: unknown task 'completions'; valid: \['completion'\]"):
        load_spec(path)
    path.write_text(yaml.safe_dump({**raw, "seeds": []}))
    with pytest.raises(StudyError, match="seeds"):
        load_spec(path)


def test_settings_that_would_fail_after_the_start_are_refused_before_it(tmp_path: Path) -> None:
    """A generation that does not fit the teacher's positions, a device torch does not know, a student folder
    that is missing and a teacher config with a shape field that is not a number: one line each, not a worker's
    traceback after Ray started."""
    from orchestrator.core.errors import StudyError
    from orchestrator.design.study import load_spec
    from orchestrator.design.validate import check_study

    raw = yaml.safe_load((ROOT / "orchestrator" / "profiles" / "completion-smoke.yaml").read_text())
    raw.update(storage=str(tmp_path / "store"), data=str(_folder(tmp_path)))
    folder = tmp_path / "lm"
    folder.mkdir()
    (folder / "config.json").write_text(json.dumps({"architectures": ["GPT2LMHeadModel"], "n_layer": "two"}))
    path = tmp_path / "c.yaml"

    def problem(**edit: object) -> str:
        path.write_text(yaml.safe_dump({**raw, **edit}))
        with pytest.raises(StudyError) as err:
            check_study(load_spec(path))
        return str(err.value)

    gen = {**raw["generation"], "max_new_tokens": 128}
    assert "generation.max_length 128 with max_new_tokens 128 does not fit its 128 positions" in problem(
        generation=gen
    )
    assert "device: unknown device 'tpu'; valid: auto, cpu, cuda, cuda:N" in problem(device="tpu")
    missing = tmp_path / "nope"
    assert f"student_init 'pretrained:{missing}': folder {missing} does not exist" in problem(
        student_init=[f"pretrained:{missing}"]
    )
    teacher = {"name": "t", "source": str(folder)}
    assert "config.json: n_layer must be a positive integer, got 'two'" in problem(teachers=[teacher])
