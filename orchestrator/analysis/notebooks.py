"""The notebooks command: run every analysis notebook headless against a study in MLflow.

python -m orchestrator.analysis notebooks --study smoke --out runs/notebooks
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parent.parent.parent
NOTEBOOK_DIR = REPO_ROOT / "notebooks"
NOTEBOOKS: tuple[str, ...] = (
    "01_rq1_effectiveness.ipynb",
    "02_rq2_teachers.ipynb",
    "03_rq3_methods.ipynb",
    "04_rq4_students.ipynb",
    "05_efficiency.ipynb",
    "06_behaviour.ipynb",
    "figure2.ipynb",
    "07_tuning.ipynb",
    "08_completion.ipynb",
)


def run_notebooks(
    out_dir: Path,
    study: str,
    tracking_uri: str,
    notebooks: Sequence[str] | None = None,
    figures_dir: Path | None = None,
    timeout: int = 600,
    fresh_kernels: bool = False,
) -> list[Path]:
    """Execute the analysis notebooks headless (nbclient) against ``study`` at ``tracking_uri`` and write the
    executed copies into ``out_dir`` (the sources in notebooks/ stay output-free). Figures go to
    ``figures_dir`` (default ``out_dir/figures``).

    The kernel runs this very interpreter (a private ``python3`` kernelspec written by ipykernel for
    sys.executable), so the notebooks see the packages this process sees whatever kernelspecs the machine
    has. One kernel serves all notebooks, its namespace cleared (``%reset -f``) before each, so none can lean
    on another's variables while the imports are paid once; ``fresh_kernels`` restarts it instead. A failing
    cell raises nbclient's CellExecutionError after the partly executed notebook has been written."""
    import nbformat
    from ipykernel.kernelspec import write_kernel_spec
    from jupyter_client.kernelspec import KernelSpecManager
    from jupyter_client.manager import KernelManager
    from nbclient import NotebookClient
    from nbclient.exceptions import CellExecutionError

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    figures = Path(figures_dir) if figures_dir is not None else out_dir / "figures"
    env = dict(os.environ)
    env.update(
        STUDY=study,
        MLFLOW_TRACKING_URI=tracking_uri,
        FIGURES_DIR=str(figures),
        MLFLOW_DISABLE_TELEMETRY="true",
        MPLBACKEND="Agg",
        # the notebooks import orchestrator.analysis even when the project is not pip-installed
        PYTHONPATH=os.pathsep.join(p for p in (str(REPO_ROOT), os.environ.get("PYTHONPATH", "")) if p),
    )
    written = []
    with tempfile.TemporaryDirectory(prefix="kdstudy-kernels-") as kdir:
        write_kernel_spec(Path(kdir) / "python3")
        km = KernelManager(kernel_name="python3", kernel_spec_manager=KernelSpecManager(kernel_dirs=[kdir]))
        km.start_kernel(env=env, cwd=str(NOTEBOOK_DIR))
        try:
            for i, name in enumerate(notebooks or NOTEBOOKS):
                if i and fresh_kernels:
                    km.restart_kernel(now=True)  # same env and cwd
                elif i:
                    _reset_namespace(km, timeout)
                nb = nbformat.read(NOTEBOOK_DIR / name, as_version=4)
                client = NotebookClient(nb, km=km, timeout=timeout)
                try:
                    client.execute()
                except CellExecutionError:
                    nbformat.write(nb, out_dir / name)
                    raise
                finally:
                    if client.kc is not None:
                        client.kc.stop_channels()
                nbformat.write(nb, out_dir / name)
                written.append(out_dir / name)
        finally:
            km.shutdown_kernel(now=True)
    return written


def _reset_namespace(km: Any, timeout: int) -> None:
    kc = km.blocking_client()
    kc.start_channels()
    try:
        kc.wait_for_ready(timeout=timeout)
        reply = kc.execute_interactive("%reset -f", timeout=timeout, output_hook=lambda msg: None)
        if reply["content"]["status"] != "ok":
            raise RuntimeError(f"could not reset the kernel between notebooks: {reply['content']}")
    finally:
        kc.stop_channels()


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m orchestrator.analysis notebooks --study smoke``: run every notebook headless against a study in
    MLflow (``MLFLOW_TRACKING_URI``, else the SQLite store under ``--storage``, else under the storage the study
    ran with, remembered, else under ``runs``). No store, or no such study in it: one line, exit 2."""
    import argparse
    import sys

    from orchestrator.analysis.store import StoreNotFound, store_uri
    from orchestrator.cli_help import HelpFormatter

    p = argparse.ArgumentParser(prog="python -m orchestrator.analysis", formatter_class=HelpFormatter)
    sub = p.add_subparsers(dest="command", required=True)
    nb = sub.add_parser(
        "notebooks", help="execute the analysis notebooks headless", formatter_class=HelpFormatter
    )
    nb.add_argument("--study", default=os.environ.get("STUDY", "smoke"))
    nb.add_argument(
        "--out", help="where the executed copies and figures go (default: <storage>/<study>/notebooks)"
    )
    nb.add_argument(
        "--storage",
        help="the study's storage, when MLFLOW_TRACKING_URI is unset (default: the one the study ran with)",
    )
    args = p.parse_args(argv)
    try:
        uri = store_uri(args.study, args.storage)
    except StoreNotFound as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    out = Path(args.out) if args.out else _default_out(uri, args.study)
    for path in run_notebooks(out, args.study, uri):
        print(f"executed {path}")
    return 0


def _default_out(uri: str, study: str) -> Path:
    if uri.startswith("sqlite:///"):  # <storage>/mlflow/mlflow.db -> <storage>/<study>/notebooks
        return Path(uri.removeprefix("sqlite:///")).parent.parent / study / "notebooks"
    return Path("runs") / "notebooks"
