"""A study on a three-node Ray cluster in this process (a head and two workers on loopback): trials spread over
both workers, each teacher cache is built once and read from both, MLflow gets every trial once, and removing a
worker mid-trial retries its trials on the other."""

from __future__ import annotations

import threading
import time
from collections import Counter

from conftest import write_study
from mlflow.tracking import MlflowClient

from orchestrator.cache.build import teacher_passes
from orchestrator.design.study import load_spec
from orchestrator.study import run_study

NODE = {"node_ip_address": "127.0.0.2", "object_store_memory": 200 * 1024 * 1024}


def test_study_spreads_over_workers_and_survives_losing_one(tmp_path, local_data, monkeypatch):
    from ray.cluster_utils import Cluster

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    storage = tmp_path / "runs"
    spec = load_spec(
        write_study(
            tmp_path / "cluster.yaml",
            local_data,
            tasks=["defect", "exception"],
            students=["roberta-tiny", "bigru-tiny"],
            methods=["ft", "kd", "dist"],
            seeds=[0, 1],
            max_samples=48,
            max_concurrent_trials=4,
            max_failures=0,  # a lost node must not use a trial's failure budget (sweep/node_loss.py)
            student_train={"epochs": 3, "batch_size": 8, "lr": 0.001, "max_length": 48},
            storage=str(storage),
        )
    )
    # The head runs the driver only (no CPUs for trials), as in cluster.yaml.
    cluster = Cluster(initialize_head=True, head_node_args={**NODE, "num_cpus": 0})
    try:
        w1 = cluster.add_node(**NODE, num_cpus=2)
        w2 = cluster.add_node(**NODE, num_cpus=2)
        cluster.wait_for_nodes()
        outcome: dict = {}
        thread = threading.Thread(target=lambda: outcome.update(r=run_study(spec, address=cluster.address)))
        thread.start()

        client = MlflowClient(uri)
        removed_during = None
        deadline = time.time() + 480
        while time.time() < deadline and thread.is_alive():
            exp = client.get_experiment_by_name("cluster")
            runs = (
                client.search_runs([exp.experiment_id], "tags.stage = 'student'", max_results=500)
                if exp
                else []
            )
            on_w2 = [r for r in runs if r.data.tags.get("node_id") == w2.node_id]
            running = [r for r in on_w2 if r.info.status == "RUNNING"]
            # remove it once it has finished a KD trial (read from the shared cache) and is running another
            if running and any(r.info.status == "FINISHED" and r.data.tags["method"] != "ft" for r in on_w2):
                removed_during = {r.data.tags["trial_key"] for r in running}
                cluster.remove_node(w2)
                break
            time.sleep(0.2)
        thread.join(timeout=600)
        assert not thread.is_alive()
        assert removed_during, "no trial was running on the second worker to interrupt"
    finally:
        cluster.shutdown()

    result = outcome["r"]
    assert result.complete and result.planned == 2 * 2 * 3 * 2 == 24
    runs = client.search_runs(
        [client.get_experiment_by_name("cluster").experiment_id], "tags.stage = 'student'", max_results=500
    )
    finished = [r for r in runs if r.info.status == "FINISHED"]
    # every trial FINISHED exactly once, whichever node ran it
    assert Counter(r.data.tags["trial_key"] for r in finished) == Counter(
        {k: 1 for k in {r.data.tags["trial_key"] for r in runs}}
    )
    assert len(finished) == 24
    nodes = {r.data.tags["node_id"] for r in finished}
    assert nodes == {w1.node_id, w2.node_id}
    # the interrupted trials were retried and finished on the remaining worker
    for key in removed_during:
        attempts = [r for r in runs if r.data.tags["trial_key"] == key]
        assert any(r.info.status == "KILLED" and r.data.tags["node_id"] == w2.node_id for r in attempts), [
            (r.info.status, r.data.tags["node_id"]) for r in attempts
        ]
        assert any(r.info.status == "FINISHED" and r.data.tags["node_id"] == w1.node_id for r in attempts)
    assert not [r for r in runs if r.info.status == "RUNNING"]
    # one teacher pass per (teacher, task); KD trials on both workers read the same cache
    assert teacher_passes(storage) == 2
    for task in ("defect", "exception"):
        kd = [r for r in finished if r.data.tags["method"] != "ft" and r.data.tags["task"] == task]
        assert len({r.data.tags["teacher_cache"] for r in kd}) == 1
    kd_nodes = {r.data.tags["node_id"] for r in finished if r.data.tags["method"] != "ft"}
    assert kd_nodes == {w1.node_id, w2.node_id}
