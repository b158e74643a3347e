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


def test_a_mistake_deep_in_a_split_is_found_before_the_start(tmp_path: Path) -> None:
    """The check before the start reads every file of the train and validation splits (a bad byte or line far
    down would otherwise fail every trial after it); a trial reading the split says the same one line."""
    data = _folder(tmp_path, f"{FILE}\n{FILE}\n<s> caf\xe9 </s>\n".encode("latin-1"))
    assert content_problems(data) == [
        f"{data / 'train.txt'}:3: not UTF-8 (byte 0xe9 at column 8); save the file as UTF-8"
    ]
    with pytest.raises(CompletionDataError, match=r"train.txt:3: not UTF-8 \(byte 0xe9 at column 8\)"):
        load_split(data, "train")
    (data / "train.txt").write_text(f"{FILE}\n")
    (data / "validation.txt").write_text(f"{FILE}\n{FILE}\nx = 1\n")
    assert content_problems(data) == [
        f"{data / 'validation.txt'}:3: not a preprocessed file (must start '<s>' and end '</s>')"
    ]


def test_a_relative_data_folder_that_is_missing_says_where_it_looked(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from orchestrator.core.errors import StudyError
    from orchestrator.design.study import load_spec
    from orchestrator.design.validate import check_study

    raw = yaml.safe_load((ROOT / "orchestrator" / "profiles" / "completion-smoke.yaml").read_text())
    beside = tmp_path / "study"
    beside.mkdir()
    _folder(beside)  # beside the YAML file: not where a relative data: is read
    path = beside / "c.yaml"
    path.write_text(yaml.safe_dump({**raw, "storage": str(tmp_path / "store"), "data": "corpus"}))
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    with pytest.raises(
        StudyError, match=rf"data: folder corpus \({elsewhere / 'corpus'}: relative to the current"
    ):
        check_study(load_spec(path))
    monkeypatch.chdir(beside)
    check_study(load_spec(path))


def _tokens_file(n: int) -> str:
    return f"<s> def f{n} ( ) : <EOL> return {n} <EOL> </s>"


def test_make_line_test_cuts_the_test_split(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """``make-line-test``: samples in CodeXGLUE's schema whose input + gt is a prefix of a test file up to a line
    end; at most one per file while files remain; the same seed gives the same bytes; a study reads the set."""
    data = _folder(tmp_path)
    files = [_tokens_file(n) for n in range(30)]
    (data / "test.txt").write_text("\n".join(files[:29]) + f"\n{files[29].replace(' ', '   ')}\n")
    (data / "line_test.json").unlink()
    assert cli_main(["make-line-test", "--data", str(data), "--samples", "20"]) == 0
    assert "20 line samples, cut anywhere, seed 0" in capsys.readouterr().out
    first = (data / "line_test.json").read_bytes()
    samples = load_line_test(data)
    assert [s["id"] for s in samples] == list(range(20))
    sources = set()
    for s in samples:
        whole = f"{s['input']} {s['gt']}"
        source = next(f for f in files if f.startswith(f"{whole} "))
        assert (
            source.split(" ")[len(whole.split(" "))] in ("<EOL>", "</s>")
            and s["gt"]
            and "<EOL>" not in s["gt"]
        )
        sources.add(source)
    assert len(sources) == 20  # one cut per file: 30 files for 20 samples
    assert content_problems(data) == []
    with pytest.raises(SystemExit):  # kept unless --overwrite
        cli_main(["make-line-test", "--data", str(data)])
    assert "exists; pass --overwrite" in capsys.readouterr().err
    assert cli_main(["make-line-test", "--data", str(data), "--samples", "20", "--overwrite"]) == 0
    assert (data / "line_test.json").read_bytes() == first
    out = tmp_path / "starts.json"
    assert cli_main(["make-line-test", "--data", str(data), "--cut", "line_start", "--out", str(out)]) == 0
    assert "60 line samples (all the test split has: 30 files)" in capsys.readouterr().out
    assert all(s["input"].endswith(("<s>", "<EOL>")) for s in load_line_test(out))


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["--samples", "0"], "--samples must be at least 1, got 0"),
        (["--out", "{tmp}"], "--out {tmp} is a folder; name the file to write"),
        (["--out", "{tmp}/no/such.json"], "--out {tmp}/no/such.json: its folder {tmp}/no does not exist"),
        (["--cut", "middle"], "invalid choice: 'middle'"),
    ],
)
def test_make_line_test_refuses_bad_arguments(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], args: list[str], expected: str
) -> None:
    data = _folder(tmp_path)
    (data / "test.txt").write_text(FILE + "\n")
    with pytest.raises(SystemExit) as err:
        cli_main(["make-line-test", "--data", str(data), *(a.format(tmp=tmp_path) for a in args)])
    assert err.value.code == 2
    assert expected.format(tmp=tmp_path) in capsys.readouterr().err
    with pytest.raises(SystemExit):
        cli_main(["make-line-test", "--data", str(tmp_path / "none")])
    assert "test.txt: missing" in capsys.readouterr().err


def test_generate_checks_its_output_before_generating(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The output path is checked before the model loads (generation can take hours): no model is needed here."""
    data = _folder(tmp_path)
    model = tmp_path / "model"
    model.mkdir()  # empty: loading it would fail, so the error below comes first
    pred = tmp_path / "missing" / "p.txt"
    with pytest.raises(SystemExit):
        cli_main(["generate", "--model", str(model), "--answers", str(data), "--predictions", str(pred)])
    assert f"--predictions {pred}: its folder {pred.parent} does not exist" in capsys.readouterr().err


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


def test_generate_refuses_a_device_it_cannot_use(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    import torch

    data = _folder(tmp_path)
    model = tmp_path / "model"
    model.mkdir()
    args = [
        "generate",
        "--model",
        str(model),
        "--answers",
        str(data),
        "--predictions",
        str(tmp_path / "p.txt"),
    ]
    with pytest.raises(SystemExit):
        cli_main([*args, "--device", "tpu"])
    assert "unknown device 'tpu'; valid: auto, cpu, cuda, cuda:N" in capsys.readouterr().err
    if not torch.cuda.is_available():
        with pytest.raises(SystemExit):
            cli_main([*args, "--device", "cuda:0"])
        assert "--device cuda:0: CUDA is not available on this machine" in capsys.readouterr().err


def test_a_line_set_cut_here_is_never_tagged_as_codexglues(tmp_path: Path) -> None:
    """version.json says ``own`` (keeping what the folder held before), so a study's runs are not tagged with a
    CodeXGLUE version whose published figures they cannot be compared with; a proxy stays ``local-proxy``."""
    from tasks.completion import codexglue_version

    data = _folder(tmp_path)
    (data / "test.txt").write_text("\n".join(_tokens_file(n) for n in range(5)) + "\n")
    (data / "version.json").write_text(json.dumps({"codexglue_version": "codexglue-2021", "python": "3.11"}))
    assert cli_main(["make-line-test", "--data", str(data), "--overwrite"]) == 0
    assert codexglue_version(data) == "own"
    marker = json.loads((data / "version.json").read_text())
    assert marker["token_text"] == "codexglue-2021" and marker["python"] == "3.11"
    assert marker["line_test"] == {"command": "make-line-test", "samples": 35, "cut": "anywhere", "seed": 0}
    assert cli_main(["make-line-test", "--data", str(data), "--overwrite", "--seed", "1"]) == 0
    marker = json.loads((data / "version.json").read_text())
    assert marker["token_text"] == "codexglue-2021" and marker["line_test"]["seed"] == 1
    (data / "version.json").write_text(json.dumps({"codexglue_version": "local-proxy"}))
    assert cli_main(["make-line-test", "--data", str(data), "--overwrite"]) == 0
    assert codexglue_version(data) == "local-proxy"
    (
        data / "version.json"
    ).unlink()  # no marker: CodeXGLUE's own downloads are sniffed, a set cut here is not
    assert cli_main(["make-line-test", "--data", str(data), "--overwrite"]) == 0
    assert codexglue_version(data) == "own" and "token_text" not in json.loads(
        (data / "version.json").read_text()
    )
    assert cli_main(["make-line-test", "--data", str(data), "--out", str(tmp_path / "x.json")]) == 0
    assert codexglue_version(data) == "own"  # --out elsewhere leaves the folder's marker alone
