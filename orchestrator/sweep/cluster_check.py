"""Before any stage, on a Ray cluster of several hosts: every other host must see the study's storage folder and
reach its MLflow tracking store, as every stage and trial there reads and writes both.

Without this, a storage folder each node has on its own disk (or a relative one, resolved in the driver's working
folder) or the study's own MLflow server on 127.0.0.1 fail late and obscurely: teacher fine-tunes written on a
worker's disk the cache build never finds, or every trial failing against its node's own loopback after the teacher
stages ran. The driver writes a marker file into the storage; one zero-CPU task on each node of another host looks
for it and probes the tracking URI. Nodes that join later (an autoscaler starting workers) are not checked: the
cluster.yaml of this repository mounts one shared folder and exports a reachable tracking URI on every node.
"""

from __future__ import annotations

import secrets
from pathlib import Path
from typing import Any

from orchestrator.core.errors import StudyError

PROBE_TIMEOUT_S = 120.0  # every node's task: a node busy starting its worker takes seconds


def node_problems(marker: str, token: str, tracking_uri: str) -> list[str]:
    """What this node lacks: the driver's marker in the storage (the same folder), the tracking store."""
    from orchestrator.core.probe import unreachable_reason

    out = []
    path = Path(marker)
    try:
        seen = path.read_text() == token
    except OSError:
        seen = False
    if not seen:
        out.append(
            f"storage {path.parent} is not the driver's folder there (a file the driver wrote in it is missing): "
            "put --storage on a filesystem every node mounts at the same path (cluster.yaml: /mnt/efs)"
        )
    if tracking_uri.startswith(("http://", "https://")):
        why = unreachable_reason(tracking_uri, timeout=5.0)
        if why is not None:
            out.append(
                f"MLflow tracking server {tracking_uri} is unreachable there ({why}): set MLFLOW_TRACKING_URI to "
                "a server every node can reach (cluster.yaml exports http://<head private IP>:5000); the "
                "study's own server listens on 127.0.0.1 only"
            )
    elif tracking_uri.startswith("sqlite:///"):
        db = Path(tracking_uri.removeprefix("sqlite:///"))
        if not db.is_file():
            out.append(
                f"MLflow store {db} does not exist there: a SQLite store is one node's file; set "
                "MLFLOW_TRACKING_URI to a server every node can reach"
            )
    return out


def check_cluster(storage: str | Path, tracking_uri: str, same_host: bool = False) -> int:
    """Raise one StudyError naming each node (of another host than the driver's; ``same_host``: every other
    node too) that does not see ``storage`` or cannot reach ``tracking_uri``. Returns how many nodes were
    checked (0 on one host)."""
    import ray
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

    here = ray.get_runtime_context().get_node_id()
    host = ray.util.get_node_ip_address()
    nodes = [
        n
        for n in ray.nodes()
        if n.get("Alive") and n["NodeID"] != here and (same_host or n.get("NodeManagerAddress") != host)
    ]
    if not nodes:
        return 0
    if tracking_uri.startswith("sqlite:///"):  # made now (as the study's client would) so the nodes can look
        from orchestrator.core.store import init_store

        init_store(tracking_uri)
    token = secrets.token_hex(8)
    marker = Path(storage) / f".node-check-{token}"
    marker.write_text(token)
    probe = ray.remote(num_cpus=0, max_retries=0)(node_problems)
    try:
        refs = [
            probe.options(scheduling_strategy=NodeAffinitySchedulingStrategy(n["NodeID"], soft=False)).remote(
                str(marker), token, tracking_uri
            )
            for n in nodes
        ]
        found = ray.get(refs, timeout=PROBE_TIMEOUT_S)
    finally:
        marker.unlink(missing_ok=True)
    problems = _by_node(nodes, found)
    if problems:
        raise StudyError("cluster: " + "; ".join(problems))
    return len(nodes)


def _by_node(nodes: list[dict[str, Any]], found: list[list[str]]) -> list[str]:
    """Each problem once, with the nodes (their addresses) that have it."""
    where: dict[str, list[str]] = {}
    for node, problems in zip(nodes, found, strict=True):
        for p in problems:
            where.setdefault(p, []).append(str(node.get("NodeManagerAddress", node["NodeID"][:8])))
    return [f"on node(s) {', '.join(sorted(set(ips)))}: {p}" for p, ips in where.items()]


def cluster_gpu(read: Any = None) -> Any:
    """The GPU the packing check sizes against (``design/packing.GpuInfo``): the smallest of the live nodes that
    offer GPUs to Ray, each read on its node by a zero-CPU task (a cluster's head, where the driver runs, has none);
    this machine's own first GPU when Ray is not running or no GPU node is up; None when no GPU could be read (an
    autoscaler that starts GPU workers only for the trials: the check then cannot be made before the study).
    ``read``: what each node runs to read its GPU (``device_gpu``)."""
    import ray
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

    from orchestrator.core.device import GpuInfo, device_gpu

    read = read or device_gpu
    if not ray.is_initialized():
        return read()
    nodes = [n for n in ray.nodes() if n.get("Alive") and n.get("Resources", {}).get("GPU", 0) > 0]
    if not nodes:
        return read()
    probe = ray.remote(num_cpus=0, max_retries=0)(read)
    refs = [
        probe.options(scheduling_strategy=NodeAffinitySchedulingStrategy(n["NodeID"], soft=False)).remote()
        for n in nodes
    ]
    found = [g for g in ray.get(refs, timeout=PROBE_TIMEOUT_S) if g is not None]
    if not found:
        return None
    return GpuInfo(min(g.memory for g in found), all(g.bf16 for g in found))
