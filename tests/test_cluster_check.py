"""The cluster check before any stage (``sweep/cluster_check.py``), on a real two-node Ray cluster in this process:
a node that sees the storage and reaches the tracking store passes; one that cannot reach the tracking server is
named in one line; a node whose storage is another folder is told where to put it. The nodes share this machine,
so the check is asked to look at nodes of the same host too (a study looks at other hosts only). Also: which teacher
caches go into the object store, on nodes of unequal stores; the GPU the packing check sizes against on a cluster
whose driver's node has none."""

from __future__ import annotations

import pytest

from orchestrator.core.device import GpuInfo, trial_precision
from orchestrator.core.errors import StudyError
from orchestrator.design.packing import GIB
from orchestrator.sweep.cluster_check import check_cluster, cluster_gpu, node_problems

MB = 1024 * 1024
NODE = {"node_ip_address": "127.0.0.2", "object_store_memory": 100 * MB}


@pytest.fixture(scope="module")
def two_nodes():
    import ray
    from ray.cluster_utils import Cluster

    cluster = Cluster(initialize_head=True, head_node_args={**NODE, "num_cpus": 0})
    try:
        cluster.add_node(**{**NODE, "object_store_memory": 80 * MB}, num_cpus=1)  # the smaller store
        cluster.wait_for_nodes()
        ray.init(address=cluster.address)
        yield cluster
    finally:
        ray.shutdown()
        cluster.shutdown()


def test_a_node_that_sees_the_storage_and_the_store_passes(two_nodes, tmp_path):
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    assert (
        check_cluster(tmp_path, uri, same_host=True) == 1
    )  # the worker; the driver's own node is not probed
    assert (tmp_path / "mlflow.db").is_file() and not list(tmp_path.glob(".node-check-*"))  # marker removed
    assert check_cluster(tmp_path, uri) == 0  # a study on one host: nothing to look at


def test_a_tracking_server_the_nodes_cannot_reach_is_named_in_one_line(two_nodes, tmp_path):
    with pytest.raises(StudyError) as err:
        check_cluster(tmp_path, "http://127.0.0.1:9", same_host=True)  # port 9: nothing listens
    message = str(err.value)
    assert "\n" not in message and message.startswith("cluster: on node(s) 127.0.0.2: MLflow tracking server")
    assert "MLFLOW_TRACKING_URI" in message and not list(tmp_path.glob(".node-check-*"))


def test_a_storage_that_is_another_folder_on_the_node_is_reported(tmp_path):
    marker = tmp_path / ".node-check-x"
    [problem] = node_problems(str(marker), "x", f"sqlite:///{tmp_path / 'mlflow.db'}")[:1]
    assert f"storage {tmp_path} is not the driver's folder there" in problem and "/mnt/efs" in problem
    marker.write_text("other driver")  # a file of that name, not the driver's token
    assert len(node_problems(str(marker), "x", "sqlite:///nowhere/mlflow.db")) == 2
    marker.write_text("x")
    (tmp_path / "mlflow.db").write_text("")
    assert node_problems(str(marker), "x", f"sqlite:///{tmp_path / 'mlflow.db'}") == []


def test_a_cache_goes_to_the_object_store_only_if_the_smallest_node_holds_it_with_the_others(two_nodes):
    """Stores of 100 and 80 MB, a 0.3 share: 24 MB, not 0.3 x 180 = 54 MB (a trial's node pulls the whole cache),
    and the caches already put count (the driver's node holds them all)."""
    from orchestrator.cache.serve import fits_object_store

    assert fits_object_store(20 * MB, 0.3)
    assert not fits_object_store(30 * MB, 0.3)  # fits the sum of the stores, not the smaller one
    assert not fits_object_store(20 * MB, 0.3, held=10 * MB)


def test_the_packing_check_reads_the_smallest_gpu_of_the_gpu_nodes(two_nodes):
    """The driver's node (the head) and the CPU worker have no GPU; two GPU nodes of 24 GiB (bf16) and 16 GiB
    (no bf16) report theirs on their own node: the check sizes against 16 GiB, and ``auto`` is fp32 there."""

    def read_gpu_of_this_node() -> GpuInfo:
        """What a GPU node of the test reports: its size from the resource it was started with (no GPU here).
        Defined in the test so Ray ships it by value (the tests folder is not importable on the workers)."""
        import ray

        here = ray.get_runtime_context().get_node_id()
        [node] = [n for n in ray.nodes() if n["NodeID"] == here]
        if node["Resources"].get("GPU", 0) <= 0:
            raise AssertionError("a node without GPUs was asked for its GPU")
        gib = 24 if "a10g" in node["Resources"] else 16
        return GpuInfo(gib * GIB, bf16=gib == 24)

    added = [
        two_nodes.add_node(**NODE, num_cpus=0, num_gpus=1, resources={"a10g": 1}),
        two_nodes.add_node(**NODE, num_cpus=0, num_gpus=1, resources={"t4": 1}),
    ]
    try:
        two_nodes.wait_for_nodes()
        gpu = cluster_gpu(read=read_gpu_of_this_node)
        assert gpu == GpuInfo(16 * GIB, bf16=False)
        assert trial_precision("auto", gpu) == "fp32" and trial_precision("bf16", gpu) == "bf16"
        assert trial_precision("auto", GpuInfo(24 * GIB, bf16=True)) == "bf16"
        assert trial_precision("auto", None) == "fp32"  # no GPU read: the larger estimate
    finally:
        for node in added:
            two_nodes.remove_node(node)
    assert cluster_gpu() is None  # no GPU node left, and none on this machine
