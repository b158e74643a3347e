"""A user's own task, declared in YAML by following docs/OWN_DATA.md alone, run end to end through the study command;
the declaration's one-line errors; everything a study writes under --storage; the notebooks command's store lookup.

The task is one the project does not ship: a 3-label "code smell" classification of Python functions mined from the
standard library on this machine (ok / long_method / many_params).
"""

from __future__ import annotations

import ast
import json
import os
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest
import yaml
from mlflow.tracking import MlflowClient

ROOT = Path(__file__).resolve().parent.parent
SMELLS = ("ok", "long_method", "many_params")


@pytest.fixture(autouse=True)
def _forget_declared_tasks():
    """Declared tasks live in the process-wide registry (never in the environment): leave it as it was."""
    from tasks import TASKS

    before = dict(TASKS)
    yield
    assert "KDSTUDY_TASKS" not in os.environ  # declarations travel in the trial config, not the environment
    TASKS.clear()
    TASKS.update(before)


def _smell(fn: ast.FunctionDef) -> str:
    params = len(fn.args.args) + len(fn.args.kwonlyargs)
    if params >= 5:
        return "many_params"
    if fn.end_lineno - fn.lineno >= 30:
        return "long_method"
    return "ok"


def mine_smells(per_label: int) -> list[dict]:
    """Functions of the standard library, labelled by their shape, ``per_label`` of each smell."""
    found: dict[str, list[dict]] = {s: [] for s in SMELLS}
    for path in sorted(Path(sysconfig.get_paths()["stdlib"]).glob("*.py")):
        try:
            source = path.read_text(encoding="utf-8")
            tree = ast.parse(source)
        except (SyntaxError, UnicodeDecodeError, ValueError):
            continue
        for node in ast.walk(tree):
            if isinstance(node, ast.FunctionDef):
                label = _smell(node)
                if len(found[label]) < per_label:
                    code = ast.get_source_segment(source, node)
                    if code:
                        found[label].append({"snippet": code, "smell": label, "file": path.name})
        if all(len(v) >= per_label for v in found.values()):
            break
    assert all(len(v) == per_label for v in found.values()), {k: len(v) for k, v in found.items()}
    # interleave the labels so every split gets all three
    return [found[s][i] for i in range(per_label) for s in SMELLS]


def write_jsonl(path: Path, records: list[dict]) -> None:
    path.write_text("".join(json.dumps(r) + "\n" for r in records))


@pytest.fixture(scope="module")
def smell_data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("own") / "smell"
    folder.mkdir()
    records = mine_smells(40)  # 120: 72 train, 24 valid, 24 test
    write_jsonl(folder / "train.jsonl", records[:72])
    write_jsonl(folder / "valid.jsonl", records[72:96])  # CodeXGLUE's name, accepted
    write_jsonl(folder / "test.jsonl", records[96:])
    return folder


def _cli(module: str, *args: str, cwd: Path, env: dict, timeout: int = 300) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", module, *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=timeout,
        env=env,
    )


def test_own_task_study_runs_end_to_end_and_writes_under_storage(tmp_path, smell_data):
    # The study YAML as docs/OWN_DATA.md ("Your own task") shows it; data relative to the YAML file. Labels on 24 of
    # the 72 training samples, and 30 more unlabelled inputs beside the splits (README, "Labels on part of the
    # training split"): FT and the teacher see the 24, KD all 102.
    (tmp_path / "data" / "smell").mkdir(parents=True)
    for f in smell_data.iterdir():
        (tmp_path / "data" / "smell" / f.name).symlink_to(f)
    extra = [{"snippet": r["snippet"]} for r in mine_smells(50)[120:]]
    write_jsonl(tmp_path / "data" / "smell" / "unlabelled.jsonl", extra)
    study = {
        "name": "smells",
        "tasks": [
            {
                "name": "smell",
                "data": "data/smell",
                "code_field": "snippet",
                "label_field": "smell",
                "labels": "infer",
                "headline": "macro_f1",
                "selection": ["accuracy", "macro_f1"],
            }
        ],
        "teachers": [{"name": "tiny", "source": "random:roberta", "layers": 1, "hidden": 32}],
        "students": ["roberta-tiny"],
        "methods": ["ft", "kd"],
        "max_samples": 72,
        "labels": {"count": 24},
        "student_train": {"epochs": 1, "batch_size": 16, "lr": 0.001, "max_length": 64},
        "teacher_train": {"epochs": 1, "batch_size": 16, "lr": 0.001, "max_length": 64},
    }
    path = tmp_path / "smells.yaml"
    path.write_text(yaml.safe_dump(study, sort_keys=False))
    storage = tmp_path / "storage"
    state = tmp_path / "state"
    env = {k: v for k, v in os.environ.items() if k != "MLFLOW_TRACKING_URI"}
    # a private TMPDIR: what the study (driver, Ray workers) would put in the temp folder shows up there alone
    private_tmp = tmp_path / "tmp"
    private_tmp.mkdir()
    env.update(
        PYTHONPATH=str(ROOT), KDSTUDY_STATE_DIR=str(state), RAY_AUTH_MODE="disabled", TMPDIR=str(private_tmp)
    )

    out = _cli("orchestrator.study", str(path), "--storage", str(storage), cwd=tmp_path, env=env, timeout=300)
    assert out.returncode == 0, out.stdout[-4000:] + out.stderr[-4000:]

    # the first run informs: no link spam, an honest first ETA, a summary with the next steps
    for noise in ("View run", "Configuration for experiment", "TensorBoard", "Writing model shards"):
        assert noise not in out.stdout + out.stderr, noise
    assert "time left: estimating" in out.stdout
    # a first run that informs: the teacher's epochs while it fine-tunes, the cache's shards, scores per method
    assert "teacher fine-tune smell/" in out.stdout and " epochs, loss " in out.stdout, out.stdout[-4000:]
    assert "cache build " in out.stdout and " shards, " in out.stdout
    assert "scores (test_score, each task's headline metric" in out.stdout
    assert " over 1 run(s); " in out.stdout and "at or below the majority baseline" in out.stdout
    assert "  kd@count=24 " in out.stdout and "  ft@count=24 " in out.stdout  # scores per labels level
    for needle in (
        "done in ",
        "2/2 trials FINISHED",
        "MLflow UI: mlflow server --backend-store-uri",
        "answers:",
    ):
        assert needle in out.stdout, needle

    db = storage / "mlflow" / "mlflow.db"
    client = MlflowClient(f"sqlite:///{db}")
    exp = client.get_experiment_by_name("smells")
    runs = client.search_runs([exp.experiment_id], "tags.stage = 'student'")
    assert sorted(r.data.tags["method"] for r in runs) == ["ft", "kd"]
    for r in runs:
        assert r.info.status == "FINISHED" and r.data.tags["task"] == "smell"
        m = r.data.metrics
        assert m["test_score"] == m["test_macro_f1"]  # the declared headline
        assert 0.0 < m["test_majority_baseline"] < 1.0
        assert {"val_accuracy", "val_macro_f1", "test_accuracy"} <= set(m)
    # the MLflow view: a described experiment, names with factors and score, study settings on the parent only
    assert "```yaml" in exp.tags["mlflow.note.content"] and "smell" in exp.tags["mlflow.note.content"]
    for r in runs:  # "0.512 kd rb-tiny smell tiny s0": test_score first, then the factors
        score, name = r.info.run_name.split(" ", 1)
        assert float(score) == pytest.approx(r.data.metrics["test_score"], abs=5e-4)
        want = {"ft": "ft rb-tiny smell count=24 s0", "kd": "kd rb-tiny smell tiny count=24 s0"}
        assert name == want[r.data.tags["method"]]
    # the labels factor: recorded on every run; FT on the 24 labelled samples, KD on all 102 inputs from a cache
    # with a row for each, the teacher fine-tuned on the 24
    by_method = {r.data.tags["method"]: r for r in runs}
    for r in runs:
        assert r.data.tags["labels"] == r.data.params["labels"] == "count=24"
        assert (r.data.params["labelled_samples"], r.data.params["unlabelled_samples"]) == ("24", "78")
    assert by_method["ft"].data.params["train_samples"] == "24"
    assert by_method["kd"].data.params["train_samples"] == "102"
    assert by_method["kd"].data.metrics["train_labelled"] == 24
    manifest = storage / "teacher_cache" / by_method["kd"].data.tags["teacher_cache"] / "manifest.json"
    assert json.loads(manifest.read_text())["samples"]["train"] == 102
    assert exp.tags["mlflow.experimentKind"] == "custom_model_development"
    assert "#/experiments/" in out.stdout and "workflowType=machine_learning" in out.stdout
    assert (
        not {"data", "max_samples", "teacher_mode"} & set(runs[0].data.params) and "lr" in runs[0].data.params
    )
    (parent,) = client.search_runs([exp.experiment_id], "tags.stage = 'study'")
    assert "max_samples" in parent.data.params
    teacher = client.search_runs([exp.experiment_id], "tags.stage = 'teacher_finetune'")
    assert len(teacher) == 1 and "test_score" in teacher[0].data.metrics
    assert teacher[0].data.params["train_samples"] == "24" and teacher[0].data.tags["labels"] == "count=24"

    # everything under the storage: server log, Ray's session files, scratch emptied, nothing new in /tmp
    assert list((storage / "mlflow").glob("server-*.log"))
    assert any((storage / "ray").glob("session_*")), "Ray's temp folder is not under the storage"
    assert (storage / "smells" / "scratch").is_dir() and not any((storage / "smells" / "scratch").iterdir())
    assert not list(private_tmp.glob("trial-*")), list(private_tmp.iterdir())
    assert not [
        p for p in Path("/tmp").glob("kdr-*") if p.is_symlink() and os.readlink(p).startswith(str(storage))
    ]
    assert not (tmp_path / "runs").exists() and not (tmp_path / "data" / "local").exists()

    # the store is remembered: --plan shows what is done, and the notebooks command finds it without --storage
    plan = _cli("orchestrator.study", str(path), "--plan", "--storage", str(storage), cwd=tmp_path, env=env)
    assert "2 done, 0 remaining" in plan.stdout, plan.stdout + plan.stderr
    from orchestrator.analysis.store import store_uri

    with pytest.MonkeyPatch.context() as mp:  # puts the session's own index (conftest) back afterwards
        mp.setenv("KDSTUDY_STATE_DIR", str(state))
        assert store_uri("smells", None) == f"sqlite:///{db.resolve()}"
    missing = _cli("orchestrator.analysis", "notebooks", "--study", "nosuch", cwd=tmp_path, env=env)
    assert missing.returncode == 2
    assert missing.stderr.count("\n") == 1 and "nosuch" in missing.stderr, missing.stderr
    assert "smells" in missing.stderr or "does not exist" in missing.stderr

    # the analysis scores the declared task by its declared headline, read from what this real study recorded
    from orchestrator import analysis as A

    assert A.load.declared_headlines(client, exp.experiment_id) == {"smell": "macro_f1"}
    df = A.load_runs("smells", f"sqlite:///{db}")
    scored = df[df["stage"].isin(["teacher_finetune", "teacher_cache", "student"])]
    assert len(scored) == 4 and (scored["metric"] == "macro_f1").all()
    s = A.student_runs(df)
    assert (s["primary"] == s["test_macro_f1"]).all() and (s["baseline"] == s["test_majority_baseline"]).all()


def _declare(tmp_path: Path, data: Path, **fields) -> str:
    from tasks import TaskDeclarationError, declare

    try:
        declare(
            {"name": "smell", "data": str(data), "code_field": "snippet", "label_field": "smell", **fields}
        )
    except TaskDeclarationError as err:
        return str(err)
    return ""


def test_declaration_errors_name_the_field(tmp_path, smell_data):
    assert "field 'headline'" in _declare(tmp_path, smell_data, headline="f1")  # f1 needs two labels
    assert "field 'labels'" in _declare(tmp_path, smell_data, labels=["ok"])
    assert "field 'data'" in _declare(tmp_path, tmp_path / "nowhere")
    assert "field 'selection" in _declare(tmp_path, smell_data, selection=["recall"])
    assert "field 'colour': unknown key" in _declare(tmp_path, smell_data, colour="red")
    assert "built-in" in _declare(tmp_path, smell_data, name="clone")
    msg = _declare(tmp_path, smell_data, label_field="nope")
    assert "field 'label_field'" in msg and "no field 'nope'" in msg and "\n" not in msg


def test_declared_task_scores_and_loads_like_a_builtin(smell_data):
    import numpy as np

    from tasks import declare, get_task, load_task_data

    task = declare(
        {"name": "smell", "data": str(smell_data), "code_field": "snippet", "label_field": "smell"}
    )
    assert get_task("smell") is task and task.label_names == ("long_method", "many_params", "ok")  # inferred
    data = load_task_data("smell", "hub")  # a declared task reads its own folder whatever the source
    assert (
        len(data.train) == 72 and len(data.validation) == 24 and {ex.label for ex in data.test} == {0, 1, 2}
    )
    labels = np.array([ex.label for ex in data.test])
    logits = np.eye(3)[labels]
    m = task.metrics(logits, labels)
    assert m == {"accuracy": 1.0, "macro_f1": 1.0} and task.selection_score(m) == 2.0
    assert task.majority_baseline(labels) == pytest.approx(1 / 3)


def test_pair_task_and_study_yaml_errors(tmp_path, smell_data):
    from orchestrator.core.errors import StudyError
    from orchestrator.design.study import load_spec

    pairs = tmp_path / "pairs"
    pairs.mkdir()
    rows = [{"a": f"x = {i}", "b": f"y = {i}", "same": i % 2 == 0} for i in range(8)]
    for split in ("train", "validation", "test"):
        write_jsonl(pairs / f"{split}.jsonl", rows)
    base = {"teachers": [], "students": ["roberta-tiny"], "methods": ["ft"]}
    pair_task = {
        "name": "same",
        "data": "pairs",
        "code_field": "a",
        "code2_field": "b",
        "label_field": "same",
    }
    path = tmp_path / "s.yaml"
    path.write_text(yaml.safe_dump({**base, "tasks": [pair_task, "clone"]}))
    spec = load_spec(path)
    assert spec.tasks == ["same", "clone"] and spec.custom_tasks[0]["data"] == str(pairs)
    from tasks import get_task, load_task_data

    ex = load_task_data("same", "hub").train[0]
    assert get_task("same").paired and ex.code2 == "y = 0" and ex.label == 1  # true -> index of 1 in [0, 1]
    assert get_task("same").metric_names == ("accuracy", "macro_f1", "f1")

    path.write_text(yaml.safe_dump({**base, "tasks": [{**pair_task, "label_field": "a"}]}))
    with pytest.raises(StudyError, match=r"s.yaml:\d+: tasks.0: task 'same': .*label_field must differ"):
        load_spec(path)


def test_builtin_task_accepts_valid_jsonl(tmp_path, local_data):
    from tasks import load_task_data

    folder = tmp_path / "d" / "exception"
    folder.mkdir(parents=True)
    for src, dst in (("train", "train"), ("validation", "valid"), ("test", "test")):
        (folder / f"{dst}.jsonl").write_text((local_data / "exception" / f"{src}.jsonl").read_text())
    data = load_task_data("exception", tmp_path / "d", max_samples=5)
    assert len(data.validation) == 5


def test_trial_command_takes_a_task_file_and_logs_to_mlflow(tmp_path, smell_data):
    task_file = tmp_path / "smell.yaml"
    decl = {"name": "smell", "data": str(smell_data), "code_field": "snippet", "label_field": "smell"}
    task_file.write_text(yaml.safe_dump({**decl, "headline": "macro_f1"}))
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    env = {**os.environ, "PYTHONPATH": str(ROOT), "MLFLOW_TRACKING_URI": uri}
    args = ["--task-file", str(task_file), "--student", "roberta-tiny", "--method", "ft", "--epochs", "1"]
    args += ["--max-length", "32", "--max-samples", "24", "--cache-dir", str(tmp_path / "cache")]
    out = _cli("orchestrator.trial", *args, cwd=tmp_path, env=env)
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    client = MlflowClient(uri)
    (run,) = client.search_runs([client.get_experiment_by_name("trials").experiment_id])
    assert run.info.status == "FINISHED" and run.data.tags["task"] == "smell"
    assert run.data.metrics["test_score"] == run.data.metrics["test_macro_f1"]
    assert "val_macro_f1" in run.data.metrics and "test_majority_baseline" in run.data.metrics

    bad = _cli("orchestrator.trial", *args[:2], "--task", "clone", *args[2:], cwd=tmp_path, env=env)
    assert bad.returncode == 2 and "exactly one of --task" in bad.stderr
    task_file.write_text(yaml.safe_dump({**decl, "headline": "f1"}))
    bad = _cli("orchestrator.trial", *args, cwd=tmp_path, env=env)
    assert bad.returncode == 2 and "field 'headline'" in bad.stderr and "Traceback" not in bad.stderr


def test_help_shows_defaults_and_choices():
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    out = _cli("orchestrator.trial", "--help", cwd=ROOT, env=env).stdout
    import re

    methods = re.search(r"--method \{([a-z,]+)\}", out).group(1).split(",")  # the method registry's names
    assert "roberta-7m" in out and {"ft", "kd", "dist", "pkd", "ckd"} <= set(methods)
    assert "(default: cached)" in out and "(default: 0.0002)" in out and "(default: 5)" in out
    out = _cli("orchestrator.finetune_teacher", "--help", cwd=ROOT, env=env).stdout
    assert "--task-file" in out and "(default: 5)" in out


def test_default_data_is_built_under_the_storage_when_absent(tmp_path, monkeypatch):
    from orchestrator.design.data_source import resolve_spec_data
    from orchestrator.design.study import load_spec

    path = tmp_path / "s.yaml"
    path.write_text(
        yaml.safe_dump({"tasks": ["clone"], "teachers": [], "students": ["roberta-tiny"], "methods": ["ft"]})
    )
    monkeypatch.chdir(tmp_path)  # no ./data/local here
    spec = load_spec(path, {"storage": str(tmp_path / "store")})
    assert spec.data == "data/local"
    assert resolve_spec_data(spec).data == str((tmp_path / "store" / "data" / "local").resolve())
    (tmp_path / "data" / "local").mkdir(parents=True)  # a user's ./data/local is kept
    assert resolve_spec_data(spec).data == "data/local"


def test_finetune_command_takes_a_task_file_and_logs_to_mlflow(tmp_path, smell_data):
    from models.teacher import create_random_teacher
    from tasks import declare

    decl = {"name": "smell", "data": str(smell_data), "code_field": "snippet", "label_field": "smell"}
    texts = [ex.code for ex in declare(decl).load_jsonl(max_samples=24).train]
    base = tmp_path / "tiny"
    create_random_teacher(
        base,
        arch="roberta",
        num_layers=1,
        hidden_size=32,
        num_heads=2,
        intermediate_size=64,
        tokenizer_texts=texts,
        vocab_size=300,
        num_labels=2,
        max_length=64,
    )
    task_file = tmp_path / "smell.yaml"
    task_file.write_text(yaml.safe_dump(decl))
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    env = {**os.environ, "PYTHONPATH": str(ROOT), "MLFLOW_TRACKING_URI": uri}
    args = [
        "--task-file",
        str(task_file),
        "--teacher",
        str(base),
        "--out",
        str(tmp_path / "ft"),
        "--epochs",
        "1",
    ]
    out = _cli(
        "orchestrator.finetune_teacher",
        *args,
        "--max-length",
        "32",
        "--max-samples",
        "24",
        cwd=tmp_path,
        env=env,
    )
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    client = MlflowClient(uri)
    (run,) = client.search_runs([client.get_experiment_by_name("teachers").experiment_id])
    assert run.info.status == "FINISHED" and run.data.tags["stage"] == "teacher_finetune"
    assert (
        run.data.tags["task"] == "smell"
        and run.data.metrics["test_score"] == run.data.metrics["test_accuracy"]
    )
    assert (tmp_path / "ft" / "finetune.json").is_file()
