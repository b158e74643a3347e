"""The hub path as a researcher with the hub meets it (the hub audit's findings), checked offline: completion data
that lacks its line-level test set is refused before anything starts, naming ``prepare-py150 --line-test``; data
and model errors print as one line; a snapshot downloaded with ``--include`` loads the config it holds whatever the
card lists first; a ``data: hub`` study fetches a dataset snapshot before planning, so its keys do not change after
the first load; a hub id as a pretrained student is refused; a missing hub model fails at once when the hub does not
answer. No Ray, no MLflow.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest
from conftest import hub_env

from orchestrator.core.errors import run_guarded
from tasks.completion.data import VERSIONS, CompletionDataError

ROOT = Path(__file__).resolve().parent.parent
LINE_URL = VERSIONS["codexglue-2021"].line_test_url


def _completion(tmp_path: Path, data: Path) -> SimpleNamespace:
    return SimpleNamespace(kind="completion", data=str(data), storage=str(tmp_path / "runs"))


def test_completion_data_needs_line_test_and_the_advice_names_prepare_py150(tmp_path: Path) -> None:
    from orchestrator.design.validate import completion_data_problems

    py150 = tmp_path / "py150"
    py150.mkdir()
    (py150 / "train.txt").write_text("<s> a </s>\n")
    (py150 / "validation.txt").write_text("<s> a </s>\n")
    [problem] = completion_data_problems(_completion(tmp_path, py150))
    assert "\n" not in problem and f"{py150} lacks line_test.json" in problem
    assert LINE_URL in problem and "--line-test" in problem

    empty = tmp_path / "data" / "py150"
    [problem] = completion_data_problems(_completion(tmp_path, empty))
    command = f"python -m tasks.completion prepare-py150 --py150 DIR --out {empty} --line-test test.json"
    assert command in problem and LINE_URL in problem and "build_local" not in problem

    (py150 / "line_test.json").write_text('{"input": "<s> x", "gt": "y"}\n')
    assert completion_data_problems(_completion(tmp_path, py150)) == []
    # the default proxy folder under the storage is built on first use; one that exists but lacks files is
    # pointed at the proxy builder
    default = tmp_path / "runs" / "data" / "local" / "completion"
    assert completion_data_problems(_completion(tmp_path, default)) == []
    default.mkdir(parents=True)
    (default / "train.txt").write_text("<s> a </s>\n")
    [problem] = completion_data_problems(_completion(tmp_path, default))
    assert "tasks.build_local --tasks completion" in problem and "line_test.json" in problem


def test_completion_full_plans_before_its_data_is_prepared_and_a_run_still_stops(tmp_path: Path) -> None:
    """``--plan`` answers before py150 is prepared (as a ``data: hub`` study plans before its datasets are
    fetched), pricing py150's size and listing what to prepare; ``--calibrate`` and a run need the data."""
    env = {**hub_env(tmp_path / "hf"), "KDSTUDY_STATE_DIR": str(tmp_path / "state")}

    def study(*args: str) -> subprocess.CompletedProcess:
        command = [sys.executable, "-m", "orchestrator.study", "completion-full", "--storage", "runs", *args]
        return subprocess.run(command, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)

    out = study("--plan", "--json")
    assert out.returncode == 0, out.stderr[-2000:]
    plan = json.loads(out.stdout)
    [missing] = plan["data_missing"]
    assert (
        "data: folder data/py150 (" in missing and "relative to the current folder) does not exist" in missing
    )
    assert "(a study reads train.txt" in missing and "prepare-py150" in missing and LINE_URL in missing
    assert any("py150's published size" in n for n in plan["notes"])
    assert plan["trials"] == 45 and sum(plan["estimate_hours"].values()) > 0
    text = study("--plan")
    assert text.returncode == 0 and "completion data not prepared yet" in text.stdout
    for args in (["--calibrate"], []):
        out = study(*args)
        assert out.returncode == 2 and out.stderr.startswith("error: data: folder data/py150 ("), out.stderr[
            -2000:
        ]
        assert not (tmp_path / "runs" / "completion-full").exists()


def test_prepare_py150_without_line_test_warns(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    from tasks.completion.__main__ import main

    py150 = tmp_path / "py150_files"
    py150.mkdir()
    (py150 / "a.py").write_text("x = 1\n")
    for name in ("python100k_train.txt", "python50k_eval.txt"):
        (py150 / name).write_text("a.py\n" * 2)
    out = ["--out", str(tmp_path / "out"), "--validation-files", "1"]  # a tiny corpus: one file held out
    assert main(["prepare-py150", "--py150", str(py150), *out]) == 0
    err = capsys.readouterr().err
    assert "warning: no --line-test" in err and "line_test.json" in err and LINE_URL in err


def test_data_hub_and_model_errors_print_as_one_line(capsys: pytest.CaptureFixture) -> None:
    from models.offline import ModelNotAvailableError
    from tasks.hub_access import HubUnavailableError

    def raising(err: BaseException):
        def command() -> int:
            raise err

        return command

    for err in (
        CompletionDataError("data/py150/line_test.json: missing; do this"),
        HubUnavailableError("task 'x': dataset 'a/b' is not available"),
        ModelNotAvailableError("teacher model 'a/b' is not available"),
    ):
        assert run_guarded(raising(err)) == 2
        assert capsys.readouterr().err == f"error: {err}\n"

    class RayTaskError(RuntimeError):  # how a Ray task's error arrives: a wrapper with the error as ``cause``
        def __init__(self, cause: BaseException) -> None:
            super().__init__(f"ray::stage() (pid=1)\nTraceback ...\n{cause}")
            self.cause = cause

    assert run_guarded(raising(RayTaskError(CompletionDataError("f: missing")))) == 2
    assert capsys.readouterr().err == "error: f: missing\n"
    with pytest.raises(FileNotFoundError):  # a plain missing file is still a bug with its traceback
        run_guarded(raising(FileNotFoundError("x")))


def _snapshot(
    home: Path, repo: str, configs: list[tuple[str, list[str]]], files: dict[str, list[dict]]
) -> Path:
    """A dataset snapshot (as `hf download --include` leaves it) whose card lists ``configs`` as (name, splits),
    holding only ``files`` (path -> rows)."""
    from tasks.hub_cache import hub_cache_root
    from tasks.hub_standin import HUB_DATASETS, _parquet, write_hub_repo

    card = ["---", "configs:"]
    for name, splits in configs:
        card += [f"- config_name: {name}", "  data_files:"]
        card += [x for s in splits for x in (f"  - split: {s}", f"    path: {name}/{s}-*")]
    blobs = {p: _parquet(HUB_DATASETS["completion_line"], rows)[0] for p, rows in files.items()}
    return write_hub_repo(
        hub_cache_root(home), repo, {"README.md": "\n".join([*card, "---", ""]).encode(), **blobs}, "dataset"
    )


def test_a_partial_snapshot_loads_its_config_whatever_the_card_lists_first(tmp_path: Path) -> None:
    from tasks.hub_access import card_data_files, load_snapshot

    rows = [{"id": i, "input": "<s> x = <EOL>", "gt": "y"} for i in range(5)]
    snap = _snapshot(
        tmp_path, "org/lines", [("java", ["train"]), ("python", ["train", "dev"])],
        {"python/train-00000-of-00001.parquet": rows, "python/dev-00000-of-00001.parquet": rows[:2]},
    )  # fmt: skip
    assert card_data_files(snap, "python") == {"train": ["python/train-*"], "dev": ["python/dev-*"]}
    ds = load_snapshot(snap, "python", str(tmp_path / "cache"))
    assert sorted(ds) == ["dev", "train"]  # the card's split names: not renamed to validation
    assert ds["train"]["gt"] == ["y"] * 5 and len(ds["dev"]) == 2


def test_pretrained_hub_id_is_refused_when_the_study_is_checked(tmp_path: Path) -> None:
    from orchestrator.design.validate import student_init_problems

    inits = ["teacher_layers", "pretrained:microsoft/CodeGPT-small-py", f"pretrained:{tmp_path / 'missing'}"]
    problem, missing = student_init_problems(SimpleNamespace(student_init=inits))
    assert problem.startswith("student_init 'pretrained:microsoft/CodeGPT-small-py': a hub id cannot")
    assert (
        missing
        == f"student_init 'pretrained:{tmp_path / 'missing'}': folder {tmp_path / 'missing'} does not exist"
    )


def test_planned_clone_sizes_are_what_the_sampler_draws() -> None:
    from orchestrator.design.sizes import HUB_SAMPLES
    from tasks import sample_fraction

    assert HUB_SAMPLES["clone"]["train"] == len(sample_fraction(901_028, 0.1, 0)) == 90_103
    assert HUB_SAMPLES["clone"]["validation"] == len(sample_fraction(415_416, 0.1, 3)) == 41_542


FETCH = r"""
import json, os, sys
from pathlib import Path
from orchestrator.core.errors import StudyError
from orchestrator.design.hub_check import check_hub_assets
from orchestrator.design.identity import data_key
from orchestrator.design.study import load_spec
from tasks import data_request_key
from tasks.hub_cache import datasets_cache_root
from tasks.hub_standin import HUB_DATASETS, _prepare_arrow, write_hub_dataset

home, study = Path(os.environ["HF_HOME"]), sys.argv[1]
spec = load_spec(study)
layout = HUB_DATASETS["defect"]
row = lambda i: {"id": i, "func": f"int f{i}() {{}}", "target": bool(i % 2), "project": "p", "commit_id": "c"}
calls, snap = [], []

def download(**kw):  # what snapshot_download leaves: the files and refs/main
    calls.append(kw)
    snap.append(write_hub_dataset(home, layout, {s: [row(i) for i in range(4)] for s in layout.splits}, prepared=False))

out = {"k0": data_key(spec), "r0": data_request_key("defect", "hub")}
check_hub_assets(spec, study, download=download, reachable=lambda: True)
out.update(calls=calls, k1=data_key(spec), r1=data_request_key("defect", "hub"), commit=snap[0].name)
_prepare_arrow(layout, snap[0], datasets_cache_root(home))  # what the first load leaves beside the snapshot
out.update(k2=data_key(spec), r2=data_request_key("defect", "hub"))
check_hub_assets(spec, study, download=lambda **kw: 1 / 0, reachable=lambda: True)  # cached now: no download
os.environ["HF_HUB_OFFLINE"] = "1"
try:
    check_hub_assets(spec.model_copy(update={"tasks": ["exception"]}), study)
except StudyError as err:
    out["error"] = str(err)
print("FETCH " + json.dumps(out))
"""


def test_a_hub_study_fetches_a_snapshot_before_planning_so_its_keys_stay(tmp_path: Path) -> None:
    study = tmp_path / "hub-keys.yaml"
    study.write_text(json.dumps({
        "name": "hub-keys", "data": "hub", "storage": str(tmp_path / "runs"), "tasks": ["defect"],
        "teachers": [{"name": "t", "source": "random:roberta", "layers": 2, "hidden": 32}],
        "students": ["roberta-tiny"], "methods": ["ft"], "seeds": [0],
    }))  # fmt: skip
    home = tmp_path / "hf"
    proc = subprocess.run(
        [sys.executable, "-c", FETCH, str(study)],
        env=hub_env(home, offline=False),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = json.loads(next(x for x in proc.stdout.splitlines() if x.startswith("FETCH "))[6:])
    assert out["calls"] == [
        {"repo_id": "google/code_x_glue_cc_defect_detection", "repo_type": "dataset", "allow_patterns": None}
    ]
    assert "downloading dataset google/code_x_glue_cc_defect_detection for task defect" in proc.stdout
    assert out["k0"] != out["k1"] == out["k2"]  # planned after the fetch: the same keys after the first load
    assert out["r1"] == out["r2"] and json.loads(out["r1"])["revision"] == f"hub:{out['commit']}"
    assert f"python -m orchestrator.study {study} --plan" in out["error"]


LINE_SET = r"""
import os, sys
sys.path.insert(0, os.environ["TESTS"])
from pathlib import Path
from test_hub_paths import _snapshot
rows = [{"id": i, "input": "<s> x = <EOL>", "gt": "y"} for i in range(5)]
_snapshot(Path(os.environ["HF_HOME"]), "google/code_x_glue_cc_code_completion_line",
          [("java", ["train"]), ("python", ["train"])], {"python/train-00000-of-00001.parquet": rows})
from tasks.completion.data import load_hub_line_test
print("LINES", len(load_hub_line_test()))
"""

MODEL = r"""
import time
from models.teacher import Teacher
start = time.monotonic()
try:
    Teacher.load("kdstudy-no-such-org/no-such-model", 2)
except Exception as err:
    print("MODEL", type(err).__name__, round(time.monotonic() - start, 1), str(err))
"""


def _run(script: str, env: dict[str, str]) -> str:
    proc = subprocess.run(
        [sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=300
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc.stdout


def test_an_hf_download_include_snapshot_loads_offline(tmp_path: Path) -> None:
    # the line set's real card lists java first; --include "python/*" left java's files out
    env = hub_env(tmp_path / "hf", offline=False, HF_HUB_OFFLINE="1", TESTS=str(ROOT / "tests"))
    assert "LINES 5" in _run(LINE_SET, env)


def test_a_missing_hub_model_fails_at_once_when_the_hub_does_not_answer(tmp_path: Path) -> None:
    # no offline switch; the hub endpoint is a closed local port: without the probe, ~50 s of retries
    out = _run(MODEL, hub_env(tmp_path / "hf", offline=False, HF_ENDPOINT="http://127.0.0.1:9"))
    [line] = [x for x in out.splitlines() if x.startswith("MODEL ")]
    _, kind, seconds, message = line.split(" ", 3)
    assert kind == "ModelNotAvailableError" and float(seconds) < 10, line
    assert "the hub (it does not answer)" in message
    assert "`hf download kdstudy-no-such-org/no-such-model`" in message and "huggingface-cli" not in message
