"""The hub dress rehearsal at the study level (issue 22): ``python -m orchestrator.study`` in a fresh process with
HF_HOME on the stand-in cache (tests/conftest.py ``hub_home``: the hub's layout, schemas and teacher configs) and
the hub off, as a cluster node without internet runs it. A classification study with ``data: hub``, two seeds, the
three tasks, a teacher by hub id, FT and cached KD and CKD; a completion study whose teacher is CodeGPT by hub id.
Both must end with every trial FINISHED. Plus: clone trials at two seeds get one data sample and one tokenizer,
and a study whose hub assets are not cached is told what to fetch before anything starts.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import yaml
from conftest import hub_env
from mlflow.tracking import MlflowClient

ROOT = Path(__file__).resolve().parent.parent
TASKS = ["defect", "clone", "exception"]
UNIXCODER = "microsoft/unixcoder-base"

CLASSIFICATION = {
    "name": "hub-rehearsal",
    "data": "hub",
    "max_samples": 16,
    "tasks": TASKS,
    "teachers": [{"name": "unixcoder", "source": UNIXCODER}],
    "students": ["roberta-tiny"],
    "methods": ["ft", "kd", "ckd"],
    "seeds": [0, 1],
    "student_train": {"epochs": 1, "batch_size": 8, "lr": 0.001, "max_length": 32},
    "teacher_train": {"epochs": 1, "batch_size": 8, "lr": 0.0005, "max_length": 32},
    "max_concurrent_trials": 2,
    "max_failures": 0,
    "trial_resources": {"cpu": 1},
    "teacher_resources": {"cpu": 1},
}


def _study(tmp: Path, home: Path, raw: dict, *flags: str, timeout: int = 900) -> subprocess.CompletedProcess:
    path = tmp / f"{raw['name']}.yaml"
    path.write_text(yaml.safe_dump({**raw, "storage": str(tmp / "runs")}))
    env = hub_env(home, KDSTUDY_STATE_DIR=str(tmp / "state"))
    cmd = [sys.executable, "-m", "orchestrator.study", str(path), *flags]
    return subprocess.run(cmd, cwd=tmp, env=env, capture_output=True, text=True, timeout=timeout)


def _runs(tmp: Path, name: str, stage: str) -> list:
    client = MlflowClient(f"sqlite:///{tmp / 'runs' / 'mlflow' / 'mlflow.db'}")
    exp = client.get_experiment_by_name(name)
    return client.search_runs([exp.experiment_id], f"tags.stage = '{stage}'", max_results=1000)


def test_a_hub_classification_study_over_three_tasks_and_two_seeds_finishes_every_trial(
    hub_home: Path, tmp_path: Path
) -> None:
    # offline: the run passes the hub-asset check only when the cache holds everything it reads
    proc = _study(tmp_path, hub_home, CLASSIFICATION)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    trials = _runs(tmp_path, "hub-rehearsal", "student")
    assert len(trials) == 18 and {r.info.status for r in trials} == {"FINISHED"}
    assert {(r.data.tags["task"], r.data.tags["method"], r.data.tags["seed"]) for r in trials} == {
        (t, m, s) for t in TASKS for m in ("ft", "kd", "ckd") for s in ("0", "1")
    }
    # the study's data seed, whatever the trial's
    assert {r.data.params["data_seed"] for r in trials} == {"0"}
    # one teacher fine-tune and one cache per task, on the data seed's sample: every cached seed-1 clone trial
    # passed the cache's fingerprint check on the sample the cache was built on
    for stage in ("teacher_finetune", "teacher_cache"):
        units = _runs(tmp_path, "hub-rehearsal", stage)
        assert sorted(r.data.tags["task"] for r in units) == sorted(TASKS)
        assert {r.info.status for r in units} == {"FINISHED"}
    clone_kd = [r for r in trials if r.data.tags["task"] == "clone" and r.data.tags["method"] != "ft"]
    assert len({r.data.tags["teacher_cache"] for r in clone_kd}) == 1


def test_a_completion_study_with_codegpt_by_hub_id_finishes_every_trial(
    hub_home: Path, tmp_path: Path, local_data: Path
) -> None:
    from tasks.build_local import build_local
    from tasks.completion.proxy import ProxySettings

    data = build_local(
        tmp_path / "data", tasks=["completion"], completion=ProxySettings(max_mb=0.2, line_samples=8)
    )["completion"]
    raw = {
        "name": "hub-completion",
        "task": "completion",
        "data": str(data),
        # loaded, CodeXGLUE's tokens added, resized, then checked (its <|UNKNOWN|> is in no vocabulary file)
        "teachers": [{"name": "codegpt", "source": "microsoft/CodeGPT-small-py"}],
        "students": ["gpt2-1l"],
        "teacher_modes": ["cached"],
        "methods": ["distil", "lm_only"],
        "seeds": [0],
        "block_size": 64,
        "max_files": {"train_files": 3, "validation_files": 2, "line_test": 4},
        "student_train": {"epochs": 1, "batch_size": 8, "lr": 0.003},
        "generation": {"beam_size": 1, "max_new_tokens": 4, "batch_size": 4},
        "max_concurrent_trials": 2,
        "trial_resources": {"cpu": 1},
    }
    proc = _study(tmp_path, hub_home, raw)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    trials = _runs(tmp_path, "hub-completion", "student")
    assert len(trials) == 2 and {r.info.status for r in trials} == {"FINISHED"}
    assert "CodeXGLUE tokens added" in proc.stdout + proc.stderr


SAME_DATA = r"""
import json, sys
from orchestrator.sweep import work
from orchestrator.train.trial import TrialConfig

out = {}
for seed, data_seed in ((0, 0), (1, 0), (0, 1)):  # one actor, as Ray reuses it: the memo must key on the data seed
    cfg = TrialConfig(task="clone", student="roberta-tiny", method="kd", seed=seed, data="hub",
                      data_seed=data_seed, max_length=32, cache_dir=sys.argv[1])
    p = work._prepared(cfg)
    out[f"{seed}/{data_seed}"] = {"fp": p.task_data.fingerprint(), "tokenizer": str(p.tokenizer.path)}
print("SAME " + json.dumps(out))
"""


def test_clone_trials_at_two_seeds_get_one_sample_and_one_tokenizer(hub_home: Path, tmp_path: Path) -> None:
    proc = subprocess.run(
        [sys.executable, "-c", SAME_DATA, str(tmp_path / "cache")],
        env=hub_env(hub_home),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = json.loads(next(x for x in proc.stdout.splitlines() if x.startswith("SAME "))[5:])
    # the teacher cache's fingerprint check compares exactly this fingerprint: seed 1 matches seed 0's cache
    assert out["0/0"] == out["1/0"]
    assert out["0/1"]["fp"] != out["0/0"]["fp"] and out["0/1"]["tokenizer"] != out["0/0"]["tokenizer"]


def test_plan_lists_missing_hub_assets_and_a_run_stops_on_them_in_one_line(tmp_path: Path) -> None:
    empty = tmp_path / "empty-hf"
    empty.mkdir()
    plan = _study(tmp_path, empty, CLASSIFICATION, "--plan", timeout=300)
    assert plan.returncode == 0, plan.stderr[-3000:]
    head = plan.stdout.splitlines()
    assert head[0] == "hub assets missing from the local cache (4; docs/HUB.md):"
    assert f"hf download {UNIXCODER}" in plan.stdout
    clone = "google/code_x_glue_cc_clone_detection_big_clone_bench"
    assert f"hf download --repo-type dataset {clone}" in plan.stdout
    assert plan.stdout.index("hub assets missing") < plan.stdout.index("study 'hub-rehearsal'")
    run = _study(tmp_path, empty, CLASSIFICATION, timeout=300)
    assert run.returncode == 2
    lines = run.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: 4 hub asset(s) missing"), run.stderr[-2000:]
    assert "HF_HUB_OFFLINE=1" in lines[0] and f"HF_HOME={empty}" in lines[0]
    assert not (tmp_path / "runs" / "mlflow").exists()  # nothing started
