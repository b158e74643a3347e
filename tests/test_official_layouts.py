"""The data sets' own layouts load as their authors ship them (docs/OWN_DATA.md), on real files in tmp_path:

* clone detection from CodeXGLUE's BigCloneBench files (``data.jsonl`` + ``train.txt``/``valid.txt``/``test.txt``),
  by CodeXGLUE's run.py rules: ids compared as text, pairs with an unknown id skipped and counted, and the seeded
  10% sample of train and validation the hub copy uses; the study's check, data key, ``--plan`` sizes and the trial
  command read it; bad lines are one line naming the file and line (audit A2, A3);
* ``dev.jsonl`` (CuBERT's and its hub copy's name) is a validation file wherever ``valid.jsonl`` is, and a folder with
  ``validation.jsonl`` keeps its keys (A5);
* built-in binary tasks read text labels "0"/"1"/"true"/"false" (A8);
* test predictions carry the dataset's own id beside the row position ``idx`` (A6).
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tasks import get_task, load_task_data
from tasks.examples import sample_fraction, sample_size

ROOT = Path(__file__).resolve().parents[1]
UNKNOWN = "999999"  # an id data.jsonl lacks: its pairs are skipped

pytestmark = pytest.mark.usefixtures("forget_declared_tasks")  # tests/conftest.py


def _write(path: Path, lines: list[str]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(line + "\n" for line in lines))
    return path


def _jsonl(path: Path, records: list[dict]) -> Path:
    return _write(path, [json.dumps(r) for r in records])


def _official_clone(folder: Path, n_funcs: int = 60, n_train: int = 200, skipped: int = 20) -> dict:
    """CodeXGLUE's clone files: ``n_funcs`` methods (ids as text, every fifth as an integer, as both occur), and
    pair files whose first ``skipped`` training pairs name an unknown id. Returns what a reader must see."""
    ids = [str(13653400 + i) for i in range(n_funcs)]
    funcs = {i: f"int m{k}(int a) {{\n    return a  +  {k};\n}}" for k, i in enumerate(ids)}
    _jsonl(
        folder / "data.jsonl",
        [{"func": funcs[i], "idx": int(i) if k % 5 == 0 else i} for k, i in enumerate(ids)],
    )

    def pairs(n: int, start: int) -> list[tuple[str, str, str]]:
        return [
            (ids[(start + j) % n_funcs], ids[(start + 3 * j + 1) % n_funcs], str(j % 2)) for j in range(n)
        ]

    train = [(UNKNOWN, ids[0], "1")] * skipped + pairs(n_train - skipped, 0)
    splits = {"train": train, "validation": pairs(60, 7), "test": pairs(40, 11)}
    names = {"train": "train.txt", "validation": "valid.txt", "test": "test.txt"}
    for split, rows in splits.items():
        _write(folder / names[split], ["\t".join(r) for r in rows])
    kept = {s: [r for r in rows if UNKNOWN not in r[:2]] for s, rows in splits.items()}
    return {"funcs": funcs, "kept": kept}


def _defect(folder: Path, n: int = 24, first_idx: int = 1000, target=lambda i: i % 2) -> None:
    """Devign-style files: its own ``idx`` (not 0..n), ``project``, ``commit_id`` beside ``func`` and ``target``."""
    for split, count in (("train", n), ("valid", n // 2), ("test", n // 2)):
        rows = [
            {
                "project": "FFmpeg",
                "commit_id": f"c{i}",
                "target": target(i),
                "func": f"int f{i}(char *s) {{ return s[{i}]; }}",
                "idx": first_idx + i,
            }
            for i in range(count)
        ]
        _jsonl(folder / f"{split}.jsonl", rows)


def _ids(examples) -> list[str]:
    return [ex.id for ex in examples]


# ---------------------------------------------------------------------------------------------------------------
# A2 + A3: CodeXGLUE's BigCloneBench layout


def test_official_clone_layout_loads_the_hubs_sampled_pairs(tmp_path: Path, capsys) -> None:
    expect = _official_clone(tmp_path / "data" / "clone")
    capsys.readouterr()
    data = load_task_data("clone", tmp_path / "data", data_seed=3)
    err = capsys.readouterr().err
    # the pairs naming an unknown id are skipped, and said once, in one line
    assert err.count("warning:") == 1 and "train.txt: 20 of 200 pairs skipped" in err, err
    kept = expect["kept"]
    assert len(kept["train"]) == 180
    for split in ("train", "validation"):  # the hub's rule: a seeded 10% of the usable pairs, in file order
        rows = sample_fraction(len(kept[split]), 0.1, 3)
        assert len(data.split(split)) == sample_size(len(kept[split]), 0.1) == len(rows)
        assert _ids(data.split(split)) == [f"{kept[split][i][0]}\t{kept[split][i][1]}" for i in rows]
        assert list(get_task("clone").hub_rows(split, len(kept[split]), 3)) == list(rows)  # one sampler
    assert len(data.train) == 18 and len(data.validation) == 6
    assert _ids(data.test) == [f"{a}\t{b}" for a, b, _ in kept["test"]]  # test: every pair, in order
    first = data.test[0]
    a, b, label = kept["test"][0]
    assert (first.code, first.code2, first.label, first.idx) == (
        " ".join(expect["funcs"][a].split()),
        " ".join(expect["funcs"][b].split()),
        int(label),
        0,
    )
    assert {ex.label for ex in data.train} <= {0, 1}
    # the sample follows the study's data seed; max_samples keeps the first N of it; a second load says nothing
    other = load_task_data("clone", tmp_path / "data", data_seed=4)
    assert _ids(other.train) != _ids(data.train) and _ids(other.test) == _ids(data.test)
    capped = load_task_data("clone", tmp_path / "data", data_seed=3, max_samples=5)
    assert _ids(capped.train) == _ids(data.train)[:5] and len(capped.test) == 5
    assert "warning" not in capsys.readouterr().err


def test_prejoined_clone_files_are_read_whole_with_the_same_keys(tmp_path: Path) -> None:
    """train.jsonl (func1/func2/label, an HF export) wins over stray official files and is not sampled; its request
    key is what it always was (no data seed); the HF export's id1/id2 become the example's id."""
    from tasks.data_key import data_request_key

    folder = tmp_path / "data" / "clone"
    rows = [
        {
            "id": i,
            "id1": 10 + i,
            "id2": 20 + i,
            "func1": "void a(){}",
            "func2": "void b(){}",
            "label": bool(i % 2),
        }
        for i in range(40)
    ]
    for split in ("train", "validation", "test"):
        _jsonl(folder / f"{split}.jsonl", rows)
    before = data_request_key("clone", tmp_path / "data", data_seed=1)
    _official_clone(folder)  # data.jsonl and *.txt beside it change nothing
    data = load_task_data("clone", tmp_path / "data", data_seed=1)
    assert (len(data.train), len(data.validation), len(data.test)) == (40, 40, 40)
    assert data.train[3].id == "13\t23"
    files = [[str((folder / f"{s}.jsonl").resolve()), (folder / f"{s}.jsonl").stat().st_size,
              (folder / f"{s}.jsonl").stat().st_mtime_ns] for s in ("train", "validation", "test")]  # fmt: skip
    expected = json.dumps({"task": "clone", "max_samples": None, "files": files}, sort_keys=True)
    assert data_request_key("clone", tmp_path / "data", data_seed=1) == before == expected
    assert data_request_key("clone", tmp_path / "data", data_seed=2) == before  # the files are the data


def test_official_clone_files_and_seed_are_in_the_keys(tmp_path: Path) -> None:
    from orchestrator.design.identity import data_content
    from tasks.data_key import data_request_key

    root = tmp_path / "data"
    _official_clone(root / "clone")
    content = data_content(str(root), ["clone"], data_seed=3)
    names = {"data": "data.jsonl", "train": "train.txt", "validation": "valid.txt", "test": "test.txt"}
    for role, name in names.items():
        assert content[f"clone/{role}"] == hashlib.sha256((root / "clone" / name).read_bytes()).hexdigest()
    assert content["clone/data_seed"] == "3"
    assert data_content(str(root), ["clone"], data_seed=4) != content
    key = data_request_key("clone", root, data_seed=3)
    assert data_request_key("clone", root, data_seed=4) != key
    for name in names.values():  # every file read is in both keys
        before = (
            data_content(str(root), ["clone"], data_seed=3),
            data_request_key("clone", root, data_seed=3),
        )
        path = root / "clone" / name
        path.write_text(path.read_text() + "\n")  # a blank line more: the same pairs, other bytes
        after = (
            data_content(str(root), ["clone"], data_seed=3),
            data_request_key("clone", root, data_seed=3),
        )
        assert after[0] != before[0] and after[1] != before[1], name


A, B, C = "13653400", "13653401", "13653402"  # ids data.jsonl holds
BAD_FILES = {  # an edit of a good folder -> what the one line says
    "duplicate idx": (
        lambda f: _jsonl(f / "data.jsonl", [{"func": "a", "idx": "7"}, {"func": "b", "idx": 8}, {"func": "c", "idx": 7}]),
        "data.jsonl:3: idx '7' repeats line 1",
    ),
    "label 2": (lambda f: _write(f / "train.txt", [f"{A}\t{B}\t1", f"{A}\t{C}\t2"]), "train.txt:2: unknown label '2'"),
    "spaces": (lambda f: _write(f / "valid.txt", [f"{A} {B} 1"]), "valid.txt:1: expected idx1<TAB>idx2<TAB>label"),
    "no idx": (lambda f: _jsonl(f / "data.jsonl", [{"func": "a", "id": "7"}]), "data.jsonl:1: missing field 'idx'"),
    "not JSON": (lambda f: _write(f / "data.jsonl", ['{"func": "a", "idx": "7"']), "data.jsonl:1: not valid JSON"),
    "no valid.txt": (lambda f: (f / "valid.txt").unlink(), "lacks valid.txt"),
    "no usable pair": (lambda f: _write(f / "test.txt", [f"{UNKNOWN}\t{A}\t0"]), "test.txt: the test split has no pair"),
    "one class": (lambda f: _write(f / "train.txt", [f"{A}\t{B}\t1"] * 3), "train.txt: every usable pair has label 1"),
}  # fmt: skip


@pytest.mark.parametrize("case", list(BAD_FILES))
def test_bad_official_clone_files_are_one_line(tmp_path: Path, case: str) -> None:
    from tasks.data_check import first_problem

    edit, expected = BAD_FILES[case]
    folder = tmp_path / "data" / "clone"
    _official_clone(folder)
    edit(folder)
    problem = first_problem(get_task("clone"), folder)
    assert problem is not None and expected in problem and "\n" not in problem, problem
    if "every usable pair" not in expected:  # the loader stops on the same line
        with pytest.raises((ValueError, FileNotFoundError)) as err:
            load_task_data("clone", tmp_path / "data")
        assert expected in str(err.value) and "\n" not in str(err.value)


def _clone_study(tmp_path: Path, root: Path, **overrides) -> Path:
    from tests.conftest import write_study

    fields = {"tasks": ["clone"], "max_samples": None, "data_seed": 3, "storage": str(tmp_path / "storage")}
    return write_study(tmp_path / "bcb.yaml", root, **{**fields, **overrides})


def test_a_study_plans_on_the_official_clone_layout(tmp_path: Path) -> None:
    from orchestrator.design.identity import data_key
    from orchestrator.design.sizes import split_sizes
    from orchestrator.design.study import load_spec
    from orchestrator.design.validate import check_study, data_problems

    root = tmp_path / "data"
    _official_clone(root / "clone")
    _defect(root / "defect")  # the c_java student tokenizer reads defect too
    spec = load_spec(_clone_study(tmp_path, root))
    check_study(spec)
    assert split_sizes(spec, "clone") == {"train": 18, "validation": 6, "test": 40}  # the sampled pairs
    key = data_key(spec)
    assert data_key(load_spec(_clone_study(tmp_path, root, data_seed=5))) != key  # another sample
    env = {**os.environ, "PYTHONPATH": str(ROOT), "KDSTUDY_STATE_DIR": str(tmp_path / "state")}
    env.pop("MLFLOW_TRACKING_URI", None)
    path = _clone_study(tmp_path, root)
    proc = subprocess.run(
        [sys.executable, "-m", "orchestrator.study", str(path), "--plan", "--json"],
        capture_output=True, text=True, cwd=tmp_path, env=env, timeout=300,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    plan = json.loads(proc.stdout)
    assert plan["labels"]["samples"]["clone"]["all"] == {"labelled": 18, "unlabelled": 0}, plan["labels"]
    assert "train.txt: 20 of 200 pairs skipped" in proc.stderr
    # a clone folder in neither layout: the error names both, in one line
    (root / "clone" / "data.jsonl").unlink()
    for name in ("train.txt", "valid.txt", "test.txt"):
        (root / "clone" / name).unlink()
    (line,) = data_problems(spec)
    assert line.startswith(f"data: {root} lacks clone/train.jsonl, clone/validation.jsonl, clone/test.jsonl")
    assert "CodeXGLUE's official BigCloneBench layout: data.jsonl with train.txt, valid.txt, test.txt" in line
    (root / "clone" / "data.jsonl").write_text('{"func": "a", "idx": "1"}\n')  # official, but incomplete
    (line,) = data_problems(spec)
    assert line == f"data: {root} lacks clone/train.txt, clone/valid.txt, clone/test.txt"


def _run_trial_cli(tmp_path: Path, task: str, root: Path) -> dict:
    out = tmp_path / f"out-{task}"
    args = [
        "--task", task, "--student", "roberta-tiny", "--method", "ft", "--data", str(root), "--epochs", "1",
        "--max-length", "32", "--batch-size", "8", "--device", "cpu", "--data-seed", "3",
        "--cache-dir", str(tmp_path / "cache"), "--out", str(out),
    ]  # fmt: skip
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    env.pop("MLFLOW_TRACKING_URI", None)
    proc = subprocess.run(
        [sys.executable, "-m", "orchestrator.trial", *args],
        capture_output=True, text=True, cwd=tmp_path, env=env, timeout=300,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads((out / "test_predictions.json").read_text())


def test_trials_predict_with_the_datasets_own_ids(tmp_path: Path) -> None:
    """A6, through ``python -m orchestrator.trial``: ``idx`` stays the row position, ``id`` is Devign's idx and
    BigCloneBench's ``idx1<TAB>idx2`` (CodeXGLUE's evaluators join on them)."""
    root = tmp_path / "data"
    expect = _official_clone(root / "clone")
    _defect(root / "defect", first_idx=1000)
    clone = _run_trial_cli(tmp_path, "clone", root)
    assert clone["idx"] == list(range(40))
    assert clone["id"] == [f"{a}\t{b}" for a, b, _ in expect["kept"]["test"]]
    assert clone["label"] == [int(label) for _, _, label in expect["kept"]["test"]]
    assert list(clone) == ["idx", "id", "label", "pred", "probs", "label_name", "pred_name"]
    defect = _run_trial_cli(tmp_path, "defect", root)
    assert defect["idx"] == list(range(12)) and defect["id"] == [str(1000 + i) for i in range(12)]


def test_predictions_without_ids_keep_their_fields(tmp_path: Path) -> None:
    from orchestrator.train.trainer import encode_split

    ex = load_task_data("exception", _exception(tmp_path / "data", "valid.jsonl")).test
    assert all(e.id is None for e in ex)
    assert encode_split(ex, lambda xs, n: [[1, 2]] * len(xs), 8, 0).ids is None  # no "id" in predictions


# ---------------------------------------------------------------------------------------------------------------
# A5: dev.jsonl


def _exception(root: Path, validation: str) -> Path:
    body = "def f{i}(x):\n    try:\n        return x[{i}]\n    except __HOLE__:\n        return None"
    for split, n in (("train", 8), ("validation", 4), ("test", 4)):
        name = validation if split == "validation" else f"{split}.jsonl"
        rows = [{"function": body.format(i=i), "label": ["KeyError", "IndexError"][i % 2]} for i in range(n)]
        _jsonl(root / "exception" / name, rows)
    return root


def test_dev_jsonl_is_a_validation_file_everywhere(tmp_path: Path) -> None:
    from orchestrator.design.identity import data_content
    from orchestrator.design.sizes import split_sizes
    from orchestrator.design.study import load_spec
    from orchestrator.design.validate import data_problems
    from tasks import declare
    from tasks.data_check import first_problem
    from tasks.data_key import data_request_key
    from tests.conftest import write_study

    root = _exception(tmp_path / "cubert", "dev.jsonl")
    dev = root / "exception" / "dev.jsonl"
    assert len(load_task_data("exception", root).validation) == 4
    assert first_problem(get_task("exception"), root / "exception") is None
    spec = load_spec(
        write_study(tmp_path / "s.yaml", root, tasks=["exception"], storage=str(tmp_path / "st"))
    )
    assert data_problems(spec) == []
    assert split_sizes(spec, "exception")["validation"] == 4
    assert (
        data_content(str(root), ["exception"])["exception/validation"]
        == hashlib.sha256(dev.read_bytes()).hexdigest()
    )
    assert str(dev.resolve()) in data_request_key("exception", root)
    task = declare({"name": "exc-own", "data": str(root / "exception"), "code_field": "function"})
    assert len(task.load_jsonl().validation) == 4 and task.split_sizes()["validation"] == 4


def test_a_validation_jsonl_folder_keeps_its_keys(tmp_path: Path) -> None:
    """validation.jsonl is read and hashed first, whatever dev.jsonl or valid.jsonl sit beside it: the study's data
    key is the one its files always gave."""
    from orchestrator.core.paths import stable_key
    from orchestrator.design.identity import data_key
    from orchestrator.design.study import load_spec
    from tasks.data_key import data_request_key
    from tests.conftest import write_study

    root = _exception(tmp_path / "own", "validation.jsonl")
    spec = load_spec(
        write_study(tmp_path / "s.yaml", root, tasks=["exception"], storage=str(tmp_path / "st"))
    )
    folder = root / "exception"
    sha = {
        s: hashlib.sha256((folder / f"{s}.jsonl").read_bytes()).hexdigest()
        for s in ("train", "validation", "test")
    }
    expected = stable_key({"data": {f"exception/{s}": h for s, h in sha.items()}, "max_samples": 32})
    assert data_key(spec) == expected
    request = data_request_key("exception", root)
    stray = [{"function": "def g(): pass", "label": "KeyError"}]
    _jsonl(folder / "dev.jsonl", stray)
    _jsonl(folder / "valid.jsonl", stray)
    assert data_key(spec) == expected and data_request_key("exception", root) == request
    assert len(load_task_data("exception", root).validation) == 4


# ---------------------------------------------------------------------------------------------------------------
# A8: text labels of the built-in binary tasks


def test_builtin_binary_tasks_read_text_labels(tmp_path: Path) -> None:
    from tasks.data_check import first_problem

    words = ["0", "1", "True", "false", "TRUE", "1"]
    root = tmp_path / "data"
    _defect(root / "defect", n=12, target=lambda i: words[i % len(words)])
    data = load_task_data("defect", root)
    assert [ex.label for ex in data.train[:6]] == [0, 1, 1, 0, 1, 1]
    assert first_problem(get_task("defect"), root / "defect") is None
    clone = get_task("clone")
    assert [clone.parse_label(v) for v in ("0", "1", " true ", "False")] == [0, 1, 1, 0]
    # anything else is still one line naming the file, the line and the valid values
    _defect(root / "defect", n=12, target=lambda i: "yes" if i == 5 else i % 2)
    problem = first_problem(get_task("defect"), root / "defect")
    assert (
        problem
        == f"{root / 'defect' / 'train.jsonl'}:6: unknown label 'yes' in field 'target'; valid: false/true or 0/1"
    )
    # one class written two ways ("1" and "true") is still one class: refused as a one-class training split
    _defect(root / "defect", n=12, target=lambda i: ["1", "true"][i % 2])
    assert "every record has label 'defective'" in first_problem(get_task("defect"), root / "defect")


def test_the_commands_checks_read_the_official_clone_layout(tmp_path: Path) -> None:
    """``--labels count=N`` is checked against the sampled pairs the loader uses, and the bench commands' data check
    accepts the official files (both asked for clone/train.jsonl)."""
    import argparse

    from orchestrator.bench.cli_checks import _paths
    from orchestrator.train.cli_checks import labels_problem

    root = tmp_path / "data"
    _official_clone(root / "clone")
    n = get_task("clone").local_sizes(root / "clone")["train"]
    assert labels_problem("clone", str(root), f"count={n}", None) is None
    assert f"exceeds the {n} training samples" in labels_problem("clone", str(root), f"count={n + 1}", None)
    args = argparse.Namespace(bench="teacher-states", data=str(root), task="clone", teacher=None)
    assert _paths(args) is None
    (root / "clone" / "test.txt").unlink()
    assert _paths(args) == f"--data {root}: no clone data there (clone/test.txt is missing)"
