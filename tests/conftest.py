"""Shared test set-up: everything offline and on loopback, local real-code data built once per session."""

from __future__ import annotations

import atexit
import os
import shutil
import sqlite3
import tempfile

# Set before anything imports huggingface_hub, ray or mlflow: a missing model must fail fast, not hang.
for key, value in {
    "HF_HUB_OFFLINE": "1",
    "HF_DATASETS_OFFLINE": "1",
    "TRANSFORMERS_OFFLINE": "1",
    "TOKENIZERS_PARALLELISM": "false",
    "MLFLOW_DISABLE_TELEMETRY": "true",
    "RAY_USAGE_STATS_ENABLED": "0",
    "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0",
    "RAY_AUTH_MODE": "disabled",
}.items():
    os.environ.setdefault(key, value)
os.environ.pop("MLFLOW_TRACKING_URI", None)
# The study index (which storages a study ran in) lives in the user's state folder: a test run must neither read the
# storages of earlier runs (pytest keeps the last three basetemps, so `smoke` would be found in several storages and
# `--plan`/`--status` refuse to guess) nor write into the user's own index.
_state = tempfile.mkdtemp(prefix="kdstudy-state-")
os.environ["KDSTUDY_STATE_DIR"] = _state
atexit.register(shutil.rmtree, _state, ignore_errors=True)

from collections.abc import Iterator  # noqa: E402
from pathlib import Path  # noqa: E402

import pytest  # noqa: E402
import torch  # noqa: E402

# Two threads on the 2-core CI machine; one per pytest-xdist worker, which run two at once (pyproject's addopts).
torch.set_num_threads(1 if os.environ.get("PYTEST_XDIST_WORKER") else 2)

SMALL_SIZES = {"train": 160, "validation": 48, "test": 48}


@pytest.fixture
def forget_declared_tasks() -> Iterator[None]:
    """Declared tasks live in the process-wide registry and KDSTUDY_TASKS: leave both as the test found them."""
    from tasks import TASKS

    before, env = dict(TASKS), os.environ.get("KDSTUDY_TASKS")
    yield
    TASKS.clear()
    TASKS.update(before)
    if env is None:
        os.environ.pop("KDSTUDY_TASKS", None)
    else:
        os.environ["KDSTUDY_TASKS"] = env


@pytest.fixture(scope="module")
def one_torch_thread() -> Iterator[None]:
    """Tiny models run faster on one thread than on two fighting other processes for 2 shared cores (measured
    1 ms vs 0.5 s per forward of a tiny GPT-2 under load); a module opts in with
    ``pytestmark = pytest.mark.usefixtures("one_torch_thread")``."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="session")
def local_data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Each task's JSON Lines, mined from real source code on this machine (small sizes, built once)."""
    from tasks.build_local import build_local

    out = tmp_path_factory.mktemp("data")
    build_local(out, sizes=SMALL_SIZES)
    return out


@pytest.fixture(scope="session")
def tiny_teacher(tmp_path_factory: pytest.TempPathFactory, local_data: Path) -> Path:
    """A tiny randomly initialised RoBERTa teacher for the exception task (20 labels), BPE trained on the data."""
    from models.teacher import create_random_teacher
    from tasks import load_task_data

    data = load_task_data("exception", local_data)
    out = tmp_path_factory.mktemp("teacher") / "tiny-roberta"
    create_random_teacher(
        out,
        arch="roberta",
        num_layers=3,
        hidden_size=32,
        num_heads=2,
        intermediate_size=64,
        tokenizer_texts=[ex.code for ex in data.train],
        vocab_size=400,
        num_labels=20,
        max_length=128,
    )
    return out


ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="session")
def smoke_study(tmp_path_factory: pytest.TempPathFactory) -> dict:
    """CI's end-to-end plumbing run (every task, method and architecture on tiny models), once per session as a user
    runs it: `python -m orchestrator.study smoke`. The README's main job, `quickstart`, is measured, not run here."""
    import subprocess
    import sys

    storage = tmp_path_factory.mktemp("smoke")
    cmd = [sys.executable, "-m", "orchestrator.study", "smoke", "--storage", str(storage)]
    out = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=900)
    assert out.returncode == 0, out.stdout[-4000:] + out.stderr[-4000:]
    return {
        "storage": storage,
        "tracking_uri": f"sqlite:///{storage / 'mlflow' / 'mlflow.db'}",
        "stdout": out.stdout,
    }


def experiment_made(uri: str, name: str) -> bool:
    """Whether the SQLite store at ``uri`` holds experiment ``name``, read without MLflow. A test that watches a
    driver it started must not open the store with an ``MlflowClient`` before then: on a store the driver is still
    creating, the client runs MLflow's schema migration beside the driver's, and one of the two dies on it."""
    from orchestrator.core.store import read_only

    try:
        with read_only(Path(uri.removeprefix("sqlite:///"))) as con:
            return con.execute("SELECT 1 FROM experiments WHERE name = ?", (name,)).fetchone() is not None
    except sqlite3.OperationalError:  # no file, or no tables yet
        return False


def write_study(path: Path, data: Path, **overrides: object) -> Path:
    """A trimmed study YAML for tests: one task, one tiny teacher, tiny students, few samples."""
    import yaml

    spec = {
        "name": path.stem,
        "data": str(data),
        "max_samples": 32,
        "tasks": ["defect"],
        "teachers": [{"name": "tiny", "source": "random:roberta", "layers": 2, "hidden": 32}],
        "students": ["roberta-tiny"],
        "methods": ["ft", "kd"],
        "seeds": [0],
        "student_train": {"epochs": 1, "batch_size": 16, "lr": 0.001, "max_length": 48},
        "teacher_train": {"epochs": 1, "batch_size": 16, "lr": 0.001, "max_length": 48},
        "max_concurrent_trials": 2,
        "max_failures": 1,
    }
    spec.update(overrides)
    path.write_text(yaml.safe_dump(spec, sort_keys=False))
    return path


def smoke_variant(tmp_path: Path, **fields: object):
    """The smoke profile on hub data with some fields changed, loaded (validated) for planning: the plan reads no
    data, so nothing is downloaded or built."""
    import yaml

    from orchestrator.design.study import load_spec

    base = yaml.safe_load((ROOT / "orchestrator" / "profiles" / "smoke.yaml").read_text())
    hub = {"data": "hub", "max_samples": 100, "storage": str(tmp_path / "store")}
    path = tmp_path / "s.yaml"
    path.write_text(yaml.safe_dump({**base, **hub, **fields}, sort_keys=False))
    return load_spec(path)


@pytest.fixture(scope="session")
def hub_home(tmp_path_factory: pytest.TempPathFactory, local_data: Path) -> Path:
    """A Hugging Face cache holding the three task datasets (prepared, as an online load_dataset leaves them, and
    as the repository snapshot `hf download` leaves), the line-level completion set (snapshot only) and the three
    teachers (tiny, with the real configs' arrangement): docs/HUB.md, written once per session."""
    import json

    from models.hub_standin import write_hub_models
    from tasks.hub_standin import HUB_DATASETS, records_from_local, write_hub_dataset, write_hub_datasets

    home = tmp_path_factory.mktemp("hf-home")
    write_hub_datasets(home, local_data, ["defect", "clone", "exception"])
    lines = records_from_local(local_data, ["completion_line"])["completion_line"]["train"][:30]
    write_hub_dataset(home, HUB_DATASETS["completion_line"], {"train": lines}, prepared=False)
    rows = [json.loads(x) for task in ("defect", "clone") for x in (local_data / task / "train.jsonl").open()]
    write_hub_models(home, [r.get("func") or r["func1"] for r in rows])
    return home


def hub_env(home: Path, offline: bool = True, **extra: str) -> dict[str, str]:
    """A child process's environment as a cluster node without internet sees it: HF_HOME on ``home``, offline
    (``offline=False``: no offline switch at all, so the hub counts as reachable unless ``extra`` says otherwise)."""
    root = Path(__file__).resolve().parent.parent
    switches = ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE", "TRANSFORMERS_OFFLINE")
    env = {k: v for k, v in os.environ.items() if offline or k not in switches}
    for moved in ("HF_DATASETS_CACHE", "HF_HUB_CACHE", "HF_ENDPOINT", "MLFLOW_TRACKING_URI"):
        env.pop(moved, None)
    if offline:
        env.update(HF_HUB_OFFLINE="1", HF_DATASETS_OFFLINE="1")
    env.update(HF_HOME=str(home), PYTHONPATH=str(root), RAY_AUTH_MODE="disabled", **extra)
    return env
