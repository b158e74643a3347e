"""What the embedded ``mlflow server`` costs: processes, memory, start-up, files outside the store (issue 24).

    python benchmarks/mlflow_server_footprint.py --out footprint.json

Starts ``mlflow server`` the way the study starts it (``orchestrator/core/tracking.py``: SQLite store and artifacts
under a fresh folder, ``--workers 2``, 127.0.0.1, a free port), once with MLflow's defaults and once with
``MLFLOW_SERVER_ENABLE_JOB_EXECUTION=false`` (MLflow 3.x: no job runner, no huey consumers). For each: seconds until
``/health`` answers, then after ``--settle`` seconds the server's whole process tree (count, command names,
summed RSS and PSS), and the files it left behind: in its temp folder (``TMPDIR``, set to a private folder), and
the job queue's folder (``_MLFLOW_HUEY_STORAGE_PATH`` in the server's environment, a ``/dev/shm/tmp*`` folder
MLflow makes when job execution is on) if it is still there after the server stopped. Each server runs in its own session and is stopped by its process group. Prints a table, writes JSON.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

import psutil

from tasks.cli_errors import OneLineArgumentParser

SETTINGS: dict[str, dict[str, str]] = {
    "default": {},
    "no_job_execution": {"MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"},
}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait_health(url: str, proc: subprocess.Popen, timeout: float) -> float:
    start = time.perf_counter()
    while time.perf_counter() - start < timeout:
        if proc.poll() is not None:
            raise RuntimeError(f"mlflow server exited with {proc.returncode}")
        try:
            with urllib.request.urlopen(f"{url}/health", timeout=2) as r:
                if r.status == 200:
                    return time.perf_counter() - start
        except OSError:
            time.sleep(0.2)
    raise TimeoutError(f"no answer from {url} within {timeout} s")


def _tree(pid: int) -> list[dict[str, Any]]:
    root = psutil.Process(pid)
    out = []
    for p in [root, *root.children(recursive=True)]:
        try:
            mem = p.memory_full_info()
            cmd = " ".join(p.cmdline())
        except psutil.NoSuchProcess:
            continue
        out.append({"pid": p.pid, "rss_mb": mem.rss / 2**20, "pss_mb": mem.pss / 2**20, "cmd": cmd[:160]})
    return out


def _huey_path(pid: int) -> str | None:
    """The job queue folder MLflow gave its server processes (None when job execution is off)."""
    for p in [psutil.Process(pid), *psutil.Process(pid).children(recursive=True)]:
        try:
            path = p.environ().get("_MLFLOW_HUEY_STORAGE_PATH")
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            continue
        if path:
            return path
    return None


def _kind(cmd: str) -> str:
    for needle, name in (
        ("huey_consumer", "huey consumer"),
        ("resource_tracker", "resource tracker"),
        ("_job_runner", "job runner"),
        ("jobs", "job runner"),
        ("uvicorn", "uvicorn"),
        ("multiprocessing", "uvicorn worker"),
        ("mlflow server", "mlflow server"),
    ):
        if needle in cmd:
            return name
    return cmd.split(" ")[0].rsplit("/", 1)[-1]


def measure(name: str, extra_env: dict[str, str], settle: float, timeout: float) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix=f"mlflow-footprint-{name}-") as tmp:
        root = Path(tmp)
        private_tmp = root / "tmp"
        private_tmp.mkdir()
        port = _free_port()
        cmd = [
            sys.executable,
            "-m",
            "mlflow",
            "server",
            "--backend-store-uri",
            f"sqlite:///{root / 'mlflow' / 'mlflow.db'}",
            "--artifacts-destination",
            str(root / "mlflow" / "artifacts"),
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--workers",
            "2",
        ]
        (root / "mlflow").mkdir()
        env = {**os.environ, "MLFLOW_DISABLE_TELEMETRY": "true", "TMPDIR": str(private_tmp), **extra_env}
        log = (root / "server.log").open("w")
        proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True)
        try:
            ready = _wait_health(f"http://127.0.0.1:{port}", proc, timeout)
            time.sleep(settle)  # the job runner starts its consumers after the server answers
            tree = _tree(proc.pid)
            huey = _huey_path(proc.pid)
        finally:
            os.killpg(proc.pid, signal.SIGTERM)  # the whole group: workers, job runner, consumers
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
            log.close()
        time.sleep(1.0)
        left_tmp = sorted(p.name for p in private_tmp.iterdir())
        kinds: dict[str, int] = {}
        for p in tree:
            kinds[_kind(p["cmd"])] = kinds.get(_kind(p["cmd"]), 0) + 1
        return {
            "setting": name,
            "env": extra_env,
            "seconds_to_health": round(ready, 2),
            "processes": len(tree),
            "by_kind": kinds,
            "rss_mb": round(sum(p["rss_mb"] for p in tree), 1),
            "pss_mb": round(sum(p["pss_mb"] for p in tree), 1),
            "tree": tree,
            "files_left_in_tmpdir": left_tmp,
            "job_queue_folder": huey,
            "job_queue_folder_left": bool(huey and os.path.exists(huey)),
        }


def main(argv: list[str] | None = None) -> int:
    p = OneLineArgumentParser(
        prog="python benchmarks/mlflow_server_footprint.py",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--out", default="mlflow_server_footprint.json")
    p.add_argument("--settle", type=float, default=20.0, help="seconds to wait after /health answers")
    p.add_argument("--timeout", type=float, default=180.0)
    p.add_argument("--settings", default=",".join(SETTINGS), help=f"comma-separated of {list(SETTINGS)}")
    args = p.parse_args(argv)
    unknown = [s for s in args.settings.split(",") if s not in SETTINGS]
    if unknown:  # before any server is started and measured
        p.error(f"--settings: unknown setting(s) {unknown}; valid: {list(SETTINGS)}")
    import mlflow

    results = {
        "mlflow": mlflow.__version__,
        "cpus": os.cpu_count(),
        "load_average_before": os.getloadavg(),
        "runs": [
            measure(s, SETTINGS[s], args.settle, args.timeout) for s in args.settings.split(",") if s.strip()
        ],
    }
    Path(args.out).write_text(json.dumps(results, indent=2))
    print(f"mlflow {results['mlflow']}, {results['cpus']} CPUs, load {results['load_average_before']}")
    for r in results["runs"]:
        print(
            f"{r['setting']:>17}: {r['processes']} processes {r['by_kind']}, RSS {r['rss_mb']:.0f} MB, "
            f"PSS {r['pss_mb']:.0f} MB, /health after {r['seconds_to_health']:.1f} s; left in TMPDIR: "
            f"{r['files_left_in_tmpdir']}; job queue folder {r['job_queue_folder']} left: "
            f"{r['job_queue_folder_left']}"
        )
    print(f"written to {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
