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


class NotApplicable(AssertionError):
    """A notebook's question has no rows in this study (an FT-only pilot has no KD-vs-FT comparison): the notebook
    says so and stops, and the command goes on with the others."""


def require(condition: object, why: str) -> None:
    """The last cell of a notebook: ``NotApplicable(why)`` when ``condition`` is falsy (no rows to answer with)."""
    if not condition:
        raise NotApplicable(why)


# A completion study (DISTIL-CodeGPT) answers its questions in 08; the classification notebooks' RQ1-RQ4,
# efficiency, behaviour and Figure 2 have no rows for it (three of them stop on an assertion saying so).
COMPLETION_NOTEBOOKS: tuple[str, ...] = ("08_completion.ipynb",)


def notebooks_for(study: str, tracking_uri: str) -> tuple[str, ...]:
    """The notebooks that answer ``study``: ``COMPLETION_NOTEBOOKS`` when its parent run is tagged
    ``task=completion``, else every notebook (08 says a classification study has no completion runs)."""
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri)
    experiment = client.get_experiment_by_name(study)
    if experiment is None:  # the notebooks' loader names the studies there are
        return NOTEBOOKS
    parents = client.search_runs([experiment.experiment_id], "tags.stage = 'study'", max_results=1)
    completion = bool(parents) and parents[0].data.tags.get("task") == "completion"
    return COMPLETION_NOTEBOOKS if completion else NOTEBOOKS


def run_notebooks(
    out_dir: Path,
    study: str,
    tracking_uri: str,
    notebooks: Sequence[str] | None = None,
    figures_dir: Path | None = None,
    timeout: int = 600,
    fresh_kernels: bool = False,
    failures: list[Any] | None = None,
) -> list[Path]:
    """Execute the analysis notebooks headless (nbclient) against ``study`` at ``tracking_uri`` and write the
    executed copies into ``out_dir`` (the sources in notebooks/ stay output-free). Figures go to
    ``figures_dir`` (default ``out_dir/figures``).

    The kernel runs this very interpreter (a private ``python3`` kernelspec written by ipykernel for
    sys.executable), so the notebooks see the packages this process sees whatever kernelspecs the machine
    has. One kernel serves all notebooks, its namespace cleared (``%reset -f``) before each, so none can lean
    on another's variables while the imports are paid once; ``fresh_kernels`` restarts it instead. A failing
    cell raises nbclient's CellExecutionError after the partly executed notebook has been written; with a
    ``failures`` list the error is appended there (``notebook`` and ``executed_copy`` set) and the next notebook
    runs (the command: a notebook that cannot answer leaves the others to answer theirs)."""
    import nbformat
    from ipykernel.kernelspec import write_kernel_spec
    from jupyter_client.kernelspec import KernelSpecManager
    from jupyter_client.manager import KernelManager
    from nbclient import NotebookClient
    from nbclient.exceptions import CellExecutionError

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    # absolute: the kernel runs in the notebooks folder, so a relative --out would put the figures there
    figures = (Path(figures_dir) if figures_dir is not None else out_dir / "figures").resolve()
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
                except CellExecutionError as err:
                    nbformat.write(nb, out_dir / name)
                    err.notebook, err.executed_copy = name, out_dir / name  # for the command's one line
                    if failures is None:
                        raise
                    failures.append(err)
                    continue
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


def default_out(uri: str, study: str) -> Path:
    """Where the executed notebooks go without ``--out``: beside the study's store, else ``runs/notebooks``."""
    if uri.startswith("sqlite:///"):  # <storage>/mlflow/mlflow.db -> <storage>/<study>/notebooks
        return Path(uri.removeprefix("sqlite:///")).parent.parent / study / "notebooks"
    return Path("runs") / "notebooks"
