"""Bad values are the user's mistake, answered before any work with one ``error:`` line and exit status 2 (never a
traceback, never a run on a value a study refuses): trial and finetune_teacher values (--param, --lr, --max-length,
--device, --labels, --teacher, --out), the bench subcommands' names and numbers, a completion study's teacher and
distil parameters, and a malformed data manifest or study index (read as absent, never a crash)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]


def _one_line(capsys: pytest.CaptureFixture, rc: int) -> str:
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2 and len(err) == 1 and err[0].startswith("error: "), (rc, err)
    return err[0]


def _data(tmp_path: Path, train: int = 6) -> Path:
    """An exception task folder whose lines load (tasks/data_check.py), ``train`` training samples."""
    root = tmp_path / "data"
    (root / "exception").mkdir(parents=True)
    code = "def f(x):\n    try:\n        return int(x)\n    except __HOLE__:\n        pass\n"
    rows = [
        {"function": code, "label": label} for label in ("ValueError", "KeyError")
    ]  # two classes to learn
    for split, n in {"train": train, "validation": 3, "test": 3}.items():
        lines = "".join(json.dumps(rows[i % 2]) + "\n" for i in range(n))
        (root / "exception" / f"{split}.jsonl").write_text(lines)
    return root


def _model(folder: Path, *, weights: bool = True, teacher_json: str | None = None) -> Path:
    """A folder that looks like a saved teacher (the files are placeholders: the checks never load them)."""
    folder.mkdir(parents=True)
    (folder / "config.json").write_text(json.dumps({"architectures": ["RobertaForSequenceClassification"]}))
    (folder / "tokenizer.json").write_text("{}")
    if weights:
        (folder / "model.safetensors").write_bytes(b"")
    if teacher_json is not None:
        (folder / "teacher.json").write_text(teacher_json)
    return folder


# -- E1/E2: orchestrator.trial and orchestrator.finetune_teacher ----------------------------------------------------


@pytest.mark.parametrize(
    ("extra", "expected"),
    [
        (
            ["--method", "kd", "--param", "temperature=hot"],
            "--param temperature (method 'kd'): must be a number",
        ),
        (["--method", "kd", "--param", "temperature=-1"], "--param temperature (method 'kd'): must be > 0"),
        (["--method", "kd", "--param", "t_squared=maybe"], "t_squared (method 'kd'): must be true or false"),
        (["--method", "pkd", "--param", "alpha=-2"], "--param alpha (method 'pkd'): must be >= 0, got -2"),
        (["--method", "ft", "--lr", "-1"], "--lr must be a finite number > 0, got -1.0"),
        (["--method", "ft", "--max-length", "2"], "--max-length must be >= 8"),
        (["--method", "ft", "--labels", "count=100000"], "'count' 100000 exceeds the 6 training samples"),
        (
            ["--method", "ft", "--device", "banana"],
            "--device: unknown device 'banana'; valid: auto, cpu, cuda",
        ),
    ],
    ids=["temp-hot", "temp-neg", "tsq-maybe", "pkd-alpha", "lr", "max-length", "labels", "device"],
)
def test_trial_values(tmp_path: Path, capsys: pytest.CaptureFixture, extra: list[str], expected: str) -> None:
    from orchestrator.trial import main

    base = ["--task", "exception", "--student", "roberta-tiny", "--data", str(_data(tmp_path))]
    base += ["--cache-dir", str(tmp_path / "cache"), "--epochs", "1"]
    if extra[1] != "ft":  # FT with a teacher warns that it is unused
        base += ["--teacher", str(_model(tmp_path / "teacher"))]
    assert expected in _one_line(capsys, main([*base, *extra]))
    assert not (tmp_path / "cache").exists()  # nothing built


def test_a_cuda_device_this_machine_lacks(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    import torch

    from orchestrator.trial import main

    base = [
        "--task",
        "exception",
        "--student",
        "roberta-tiny",
        "--method",
        "ft",
        "--data",
        str(_data(tmp_path)),
    ]
    line = _one_line(capsys, main([*base, "--device", f"cuda:{torch.cuda.device_count() + 3}"]))
    assert "CUDA is not available" in line or "CUDA device(s)" in line


@pytest.mark.parametrize(
    ("make", "expected"),
    [
        (lambda p: p.parent / "data", "holds no config.json, so it is not a saved model"),
        (lambda p: _model(p, weights=False), "holds no weights (model.safetensors or pytorch_model.bin)"),
        (lambda p: _model(p, teacher_json="{bad"), "teacher.json is not readable JSON"),
        (
            lambda p: _model(p, teacher_json='{"input_form": "../../x"}'),
            "teacher.json: unknown input_form '../../x'",
        ),
    ],
    ids=["not-a-model", "no-weights", "bad-json", "bad-input-form"],
)
def test_a_teacher_folder_that_cannot_load(
    tmp_path: Path, capsys: pytest.CaptureFixture, make, expected
) -> None:
    from orchestrator.finetune_teacher import main as finetune
    from orchestrator.trial import main as trial

    data = _data(tmp_path)
    teacher = make(tmp_path / "teacher")
    base = ["--task", "exception", "--data", str(data), "--teacher", str(teacher)]
    line = _one_line(capsys, trial([*base, "--student", "roberta-tiny", "--method", "kd"]))
    assert f"--teacher {teacher}: {expected}" in line
    assert expected in _one_line(capsys, finetune([*base, "--out", str(tmp_path / "out")]))


def test_finetune_values_and_out_are_checked_before_the_fine_tune(
    tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    from orchestrator.finetune_teacher import main

    a_file = tmp_path / "a-file"
    a_file.write_text("x")
    base = ["--task", "exception", "--data", str(_data(tmp_path)), "--teacher", "random:roberta"]
    out = ["--out", str(tmp_path / "t")]
    assert "--lr must be a finite number > 0, got 0.0" in _one_line(capsys, main([*base, *out, "--lr", "0"]))
    assert "--max-length must be >= 8" in _one_line(capsys, main([*base, *out, "--max-length", "2"]))
    assert "exceeds the 6 training samples" in _one_line(capsys, main([*base, *out, "--labels", "count=99"]))
    assert "unknown device 'banana'" in _one_line(capsys, main([*base, *out, "--device", "banana"]))
    line = _one_line(capsys, main([*base, "--out", str(a_file)]))
    assert f"--out {a_file}: a file" in line
    line = _one_line(capsys, main([*base, "--out", str(a_file / "t")]))
    assert f"{a_file} is a file, not a folder" in line
    # the teacher replaces the whole --out folder: a folder of other files (--out runs, --out .) is refused, kept
    precious = tmp_path / "precious"
    (precious / "sub").mkdir(parents=True)
    (precious / "notes.txt").write_text("mine")
    line = _one_line(capsys, main([*base, "--out", str(precious)]))
    assert f"--out {precious}: a folder holding other files (notes.txt, sub); the fine-tuned teacher" in line
    assert (precious / "notes.txt").read_text() == "mine" and (precious / "sub").is_dir()


def test_a_trial_out_that_is_a_file_is_one_line(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    from orchestrator.trial import main

    a_file = tmp_path / "a-file"
    a_file.write_text("x")
    base = [
        "--task",
        "exception",
        "--data",
        str(_data(tmp_path)),
        "--student",
        "roberta-tiny",
        "--method",
        "ft",
    ]
    line = _one_line(capsys, main([*base, "--out", str(a_file)]))
    assert f"--out {a_file}: a file; give a folder for the trial's checkpoint and results" in line


def test_a_trial_as_a_user_runs_it_answers_a_bad_param_in_one_line(tmp_path: Path) -> None:
    """The module entry point (``python -m orchestrator.trial``) goes through the same checks."""
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    args = ["--task", "exception", "--student", "roberta-tiny", "--data", str(_data(tmp_path))]
    args += ["--method", "kd", "--teacher", str(_model(tmp_path / "t")), "--param", "temperature=hot"]
    proc = subprocess.run(
        [sys.executable, "-m", "orchestrator.trial", *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )
    lines = proc.stderr.strip().splitlines()
    assert proc.returncode == 2 and len(lines) == 1 and "temperature" in lines[0], proc.stderr[-2000:]


# -- E3: a malformed data manifest -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "manifest",
    ["{bad", "[1, 2]", '{"tasks": {"exception": {"counts": {"train": "many"}}}}', '{"counts": [1]}'],
    ids=["not-json", "a-list", "string-count", "counts-list"],
)
def test_a_malformed_manifest_counts_the_split_files(tmp_path: Path, manifest: str) -> None:
    from orchestrator.design.sizes import split_sizes

    data = _data(tmp_path, train=7)
    (data / "manifest.json").write_text(manifest)
    spec = SimpleNamespace(data=str(data), max_samples=None)
    assert split_sizes(spec, "exception") == {"train": 7, "validation": 3, "test": 3}
    assert split_sizes(SimpleNamespace(data=str(data), max_samples=5), "exception")["train"] == 5
    good = {"tasks": {"exception": {"counts": {"train": 70, "validation": 30, "test": 30}}}}
    (data / "manifest.json").write_text(json.dumps(good))
    assert split_sizes(spec, "exception") == {"train": 70, "validation": 30, "test": 30}


# -- E4: a completion study's pre-start checks ------------------------------------------------------------------------


def _completion(tmp_path: Path, source: str | None = None, **fields: object):
    from orchestrator.design.study import load_spec

    raw = yaml.safe_load((ROOT / "orchestrator" / "profiles" / "completion-smoke.yaml").read_text())
    raw["storage"] = str(tmp_path / "store")
    raw["data"] = str(tmp_path / "completion")  # what the data check looks for: train, validation, line test
    (tmp_path / "completion").mkdir(exist_ok=True)
    for name in ("train.txt", "validation.txt"):  # one preprocessed file each, one line sample
        (tmp_path / "completion" / name).write_text("<s> x = 1 <EOL> </s>\n")
    (tmp_path / "completion" / "line_test.json").write_text(
        json.dumps({"input": "<s> x =", "gt": "1"}) + "\n"
    )
    if source is not None:
        raw["teachers"][0]["source"] = source
    raw.update(fields)
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump(raw, sort_keys=False))
    return path, load_spec(path)


def test_a_completion_study_checks_its_teacher_and_distil_params(tmp_path: Path) -> None:
    from orchestrator.core.errors import StudyError
    from orchestrator.design.validate import check_study

    def problem(**kw: object) -> str:
        with pytest.raises(StudyError) as err:
            check_study(_completion(tmp_path, **kw)[1])
        return str(err.value)

    missing = tmp_path / "nonexist"
    assert f"teachers.0 ('tiny-gpt2'): teacher folder {missing} does not exist" in problem(
        source=str(missing)
    )
    cls = _model(tmp_path / "cls")
    assert "holds a RobertaForSequenceClassification model, not a causal LM" in problem(source=str(cls))
    assert "method_params.distil.temperature: must be a number, got 'hot'" in problem(
        method_params={"distil": {"temperature": "hot"}}
    )
    assert "method_params.distil.alpha_ce: must be >= 0" in problem(
        method_params={"distil": {"alpha_ce": -1}}
    )
    lm = tmp_path / "lm"
    lm.mkdir()
    (lm / "config.json").write_text(json.dumps({"architectures": ["GPT2LMHeadModel"], "n_layer": 2}))
    for ok in (str(lm), "codegpt", "org/some-lm", "random:gpt2"):
        check_study(_completion(tmp_path, source=ok)[1])  # no error


def test_a_completion_plan_refuses_a_missing_teacher_before_anything_starts(tmp_path: Path) -> None:
    path, _ = _completion(tmp_path, source=str(tmp_path / "nonexist"))
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.run(
        [sys.executable, "-m", "orchestrator.study", str(path), "--plan"],
        capture_output=True,
        text=True,
        env=env,
        cwd=tmp_path,
        timeout=120,
    )
    lines = proc.stderr.strip().splitlines()
    assert proc.returncode == 2 and len(lines) == 1 and "does not exist" in lines[0], proc.stderr[-2000:]


# -- E6: a corrupt study index ----------------------------------------------------------------------------------------


def test_a_corrupt_study_index_reads_as_empty(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    from orchestrator import study_index

    monkeypatch.setenv(study_index.STATE_ENV, str(tmp_path))
    monkeypatch.setattr(study_index, "_WARNED", set())
    index = tmp_path / "studies.json"
    kept = tmp_path / "kept"
    kept.mkdir()
    for text in ('{"/tmp/x": {"ok": "abc"}}', "{bad", "[1]", '{"/tmp/x": [1]}', '{"/tmp/x": {"ok": true}}'):
        index.write_text(text)
        assert study_index.remembered_storages("ok") == []
        assert study_index.remembered_storage("ok") is None
    assert str(index) in capsys.readouterr().err
    index.write_text(json.dumps({str(kept): {"ok": 5.0}, "/tmp/x": {"ok": "abc"}}))
    assert study_index.remembered_storages("ok") == [kept]  # the readable entries still serve
    study_index.remember_storage("other", kept)  # and the next write drops the bad one
    assert list(json.loads(index.read_text())) == [str(kept.resolve())]


# -- E8: orchestrator.bench ------------------------------------------------------------------------------------------


def test_bench_names_numbers_and_folders(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    from orchestrator.bench.cli import main

    data, teacher = _data(tmp_path), _model(tmp_path / "teacher")
    states = ["teacher-states", "--out", str(tmp_path / "b1.json"), "--teacher", str(teacher)]
    diag = ["diagnose", "--mode", "init", "--out", str(tmp_path / "b2.json")]
    over = ["overhead", "--out", str(tmp_path / "b3.json"), "--size", "tiny"]
    cases = [
        ([*states, "--data", str(data), "--task", "nope"], "--task: unknown task 'nope'; valid: ['clone'"),
        ([*states, "--data", str(tmp_path / "none")], f"--data {tmp_path / 'none'}: no such folder"),
        ([*states, "--data", str(data), "--task", "defect"], "no defect data there"),
        ([*states, "--data", str(data), "--student", "nope"], "--student: unknown student 'nope'; valid: ["),
        ([*states, "--data", str(data), "--hole-window", "abc"], "--hole-window expects B,A"),
        ([*states, "--data", str(data), "--samples", "0"], "--samples must be >= 1, got 0"),
        (
            [*diag, "--method", "nope"],
            "--method: unknown method 'nope'; valid: ['ckd', 'dist', 'ft', 'kd', 'pkd']",
        ),
        ([*diag, "--student", "nope"], "--student: unknown student 'nope'"),
        ([*diag, "--margins", "a,b"], "--margins expects comma-separated numbers, got 'a,b'"),
        (
            [*diag, "--method", "kd", "--param", "temperature=hot"],
            "--param temperature (method 'kd'): must be a",
        ),
        (
            [*diag, "--method", "kd", "--param", "nope=1"],
            "unknown hyperparameter(s) ['nope'] for method 'kd'",
        ),
        ([*diag, "--lr", "0"], "--lr must be a finite number > 0"),
        (
            [*diag[:2], "train", *diag[3:], "--data", str(data), "--method", "kd"],
            "--mode train with a KD method needs --teacher",
        ),
        ([*over, "--task", "nope"], "--task: unknown task 'nope'"),
        ([*over, "--steps", "-1"], "--steps must be >= 1, got -1"),
        (
            [*diag[:2], "train", *diag[3:], "--data", str(data), "--teacher", str(tmp_path / "none")],
            f"--teacher: teacher folder {tmp_path / 'none'} does not exist",
        ),
    ]
    for argv, expected in cases:
        assert expected in _one_line(capsys, main(argv)), argv
    assert not any(tmp_path.glob("b*.json"))


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["--lengths", "x"], "--lengths expects comma-separated integers >= 8, got 'x'"),
        (["--lengths", "0"], "--lengths expects comma-separated integers >= 8, got '0'"),
        (["--window", "6"], "--window expects 2 comma-separated integers >= 0, got '6'"),
        (["--window", "a,b"], "--window expects 2 comma-separated integers >= 0, got 'a,b'"),
        (["--student", "foo"], "invalid choice: 'foo'"),
        (["--teacher", "./nope"], "teacher folder './nope' does not exist"),
    ],
)
def test_the_transfer_data_command_answers_bad_values_in_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture, args: list[str], expected: str
) -> None:
    from orchestrator.bench.transfer_data import main

    with pytest.raises(SystemExit) as exit_:
        main(["--data", str(_data(tmp_path)), *args])
    assert expected in _one_line(capsys, exit_.value.code)


@pytest.mark.parametrize(
    ("command", "args", "expected"),
    [
        ("lm_bench", ["--device", "tpu"], "--device: unknown device 'tpu'"),
        ("lm_bench", ["--threads", "0"], "--threads must be >= 1, got 0"),
        (
            "extract_stats",
            ["--out", "/no/such/folder/x.json"],
            "--out /no/such/folder/x.json: its folder /no/such/folder does not exist",
        ),
    ],
)
def test_the_step_cost_and_extraction_commands_check_their_flags_first(
    capsys: pytest.CaptureFixture, command: str, args: list[str], expected: str
) -> None:
    from orchestrator.train.lm_bench import main as lm_bench
    from tasks.extract_stats import main as extract_stats

    with pytest.raises(SystemExit) as exit_:
        {"lm_bench": lm_bench, "extract_stats": extract_stats}[command](args)
    assert expected in _one_line(capsys, exit_.value.code)


@pytest.mark.parametrize(
    ("extra", "named"),
    [
        (["--precision", "bf16"], "--precision does"),
        (["--data", "elsewhere", "--methods", "kd"], "--data, --methods do"),
    ],
)
def test_overhead_on_completion_refuses_the_flags_it_would_ignore(
    tmp_path: Path, capsys: pytest.CaptureFixture, extra: list[str], named: str
) -> None:
    """``bench overhead --task completion`` times the completion study's own proxy: a precision, data folder or
    method list given with it would be ignored while the figures read as if measured that way."""
    from orchestrator.bench.cli import main

    rc = main(
        ["overhead", "--task", "completion", "--size", "tiny", "--out", str(tmp_path / "o.json"), *extra]
    )
    assert f"{named} not apply to --task completion" in _one_line(capsys, rc)
    assert not (tmp_path / "o.json").exists()


def test_ft_with_a_teacher_warns_that_the_teacher_is_unused(
    tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    """A loop over methods may pass one --teacher to every method, FT included: not refused, but said."""
    from orchestrator.train.cli_checks import method_problem

    assert method_problem("ft", str(tmp_path / "teacher"), {}) is None
    err = capsys.readouterr().err
    assert (
        f"warning: --method ft trains on the labels alone; --teacher {tmp_path / 'teacher'} is not used"
        in err
    )
    assert method_problem("ft", None, {}) is None and capsys.readouterr().err == ""
