"""``python -m orchestrator.analysis notebooks --study smoke``: the analysis command line.

Every mistake a user can make (an unknown option, a study that is not in the store or was deleted there, no store
at all or an empty file in its place, an ``MLFLOW_TRACKING_URI`` that is unreachable, answers 5xx, or is no store
the analysis reads: a file store, a plain path, an unknown scheme; an output folder that cannot be written) is one
line ``error: ...`` on stderr with exit status 2, before any notebook runs (``store.py``). A notebook that fails on the study's runs (e.g. a study without KD
runs has no KD-vs-FT table) is one line naming the notebook, the error and the executed copy that holds the
traceback, exit status 1. ``--debug`` shows the traceback instead.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Sequence
from pathlib import Path


def _parser() -> object:
    from orchestrator.cli_help import HelpFormatter, OneLineParser

    p = OneLineParser(
        prog="python -m orchestrator.analysis", description=__doc__, formatter_class=HelpFormatter
    )
    sub = p.add_subparsers(dest="command", required=True, parser_class=OneLineParser)
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
    nb.add_argument("--debug", action="store_true", help="print the traceback of an error, too")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    """Run the notebooks against a study in MLflow (``MLFLOW_TRACKING_URI``, else the SQLite store under
    ``--storage``, else under the storage the study ran with, remembered, else under ``runs``)."""
    args = _parser().parse_args(argv)  # type: ignore[attr-defined]
    try:
        return _notebooks(args.study, args.storage, args.out)
    except KeyboardInterrupt:
        print("error: interrupted", file=sys.stderr)
        return 130
    except Exception as err:  # noqa: BLE001 - every error ends as one line; --debug shows where it came from
        if args.debug:
            raise
        line, status = _one_line(err)
        print(f"error: {line}", file=sys.stderr)
        return status


def _notebooks(study: str, storage: str | None, out_arg: str | None) -> int:
    from orchestrator.analysis.notebooks import default_out, notebooks_for, run_notebooks
    from orchestrator.analysis.store import store_uri

    uri = store_uri(study, storage)
    out = Path(out_arg) if out_arg else default_out(uri, study)
    try:
        out.mkdir(parents=True, exist_ok=True)
        probe = out / ".kdstudy-write-test"
        probe.touch()
        probe.unlink()
    except OSError as err:
        raise UsageError(f"--out {out}: cannot write there ({err.strerror or err})") from None
    failures: list = []
    for path in run_notebooks(out, study, uri, notebooks_for(study, uri), failures=failures):
        print(f"executed {path}")
    return settle(failures)


def settle(failures: list) -> int:
    """After every notebook has run: a notebook whose question the study cannot answer (``NotApplicable``: an
    FT-only pilot has no KD-vs-FT comparison) is said on a line of its own; the first other failure is raised,
    naming the rest, for the command's one line."""
    for err in failures:
        if err.ename == "NotApplicable":
            print(
                f"not applicable to this study: {err.notebook}: {err.evalue} (written: {err.executed_copy})"
            )
    failed = [err for err in failures if err.ename != "NotApplicable"]
    if failed:
        failed[0].also = [err.notebook for err in failed[1:]]  # named in the one line too
        raise failed[0]
    return 0


class UsageError(ValueError):
    """A user's mistake found by the command itself (exit status 2)."""


def _one_line(err: BaseException) -> tuple[str, int]:
    """The message and exit status of an error: 2 for the user's mistakes, 1 for a notebook that failed."""
    from orchestrator.analysis.store import StoreNotFound

    if isinstance(err, (StoreNotFound, UsageError)):
        return str(err), 2
    try:
        from nbclient.exceptions import CellExecutionError
    except ImportError:  # pragma: no cover - nbclient is a dependency
        CellExecutionError = ()  # type: ignore[assignment,misc]  # noqa: N806
    if isinstance(err, CellExecutionError):
        name = getattr(err, "notebook", None) or "a notebook"
        where = getattr(err, "executed_copy", None)
        copy = f"; its executed copy, with the traceback: {where}" if where else ""
        also = getattr(err, "also", None)
        more = f"; also failed: {', '.join(also)}" if also else ""
        return f"{name} failed: {err.ename}: {err.evalue}{copy}{more}", 1
    return f"{type(err).__name__}: {err}".splitlines()[0], 1
