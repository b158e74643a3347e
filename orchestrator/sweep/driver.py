"""Run a study: the whole grid as one resumable Ray Tune sweep, every unit recorded in MLflow.

    python -m orchestrator.study smoke              # run (or resume) a profile: smoke, local, full, completion-smoke, ...
    python -m orchestrator.study my_study.yaml      # or a YAML file
    python -m orchestrator.study smoke --plan [--json] [--calibrate]
    python -m orchestrator.study smoke --status [--json]

A classification study: tokenizers -> teacher fine-tuning per (teacher, task) -> teacher cache per (teacher, task)
-> (tuning) -> student trials. A completion study (task: completion): teachers -> teacher caches -> trials. A stage
whose output exists is skipped; a trial whose trial_key has a FINISHED MLflow run is not rerun. When
MLFLOW_TRACKING_URI is unset the study starts its own MLflow server on 127.0.0.1 (SQLite under the storage path).
With RAY_ADDRESS (or --address) it joins that cluster; otherwise it starts Ray on this machine.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from typing import TYPE_CHECKING, Any

from orchestrator.cli_help import HelpFormatter, OneLineParser

if TYPE_CHECKING:  # pydantic, MLflow, torch and Ray load where a command needs them: --help stays instant
    from orchestrator.sweep.context import StudyOutcome


def run_study(
    spec: Any, address: str | None = None, wait: bool = False, study_arg: str | None = None
) -> StudyOutcome:
    """Run (or resume) a study of either kind (``sweep/run.py``)."""
    from orchestrator.sweep.run import run_study as run

    return run(spec, address, wait, study_arg)


def status(spec: Any) -> dict[str, Any]:
    """Done, running, orphaned, failed and remaining trials (``sweep/status.py``)."""
    from orchestrator.sweep.status import status as study_status

    return study_status(spec)


def _parser() -> OneLineParser:
    p = OneLineParser(prog="python -m orchestrator.study", description=__doc__, formatter_class=HelpFormatter)
    p.add_argument("study", help="a profile (smoke, local, full, completion-smoke, ...) or a study YAML file")
    p.add_argument("--plan", action="store_true", help="print what the study would run, run nothing")
    p.add_argument(
        "--status", action="store_true", help="done / running / failed / remaining trials from MLflow"
    )
    p.add_argument(
        "--calibrate", action="store_true", help="time its units here first; --plan then uses that"
    )
    p.add_argument("--json", action="store_true", help="with --plan or --status: print JSON")
    p.add_argument(
        "--storage",
        help="where caches, checkpoints, MLflow (if started here), Ray's temp files and results live "
        "(default: the study's `storage:`, runs)",
    )
    p.add_argument("--address", help="Ray cluster address (default: RAY_ADDRESS, else start Ray here)")
    p.add_argument(
        "--wait",
        action="store_true",
        help="when another driver runs this study, wait for it instead of stopping (README: two drivers)",
    )
    p.add_argument("--debug", action="store_true", help="print the traceback of an error, too")
    p.add_argument(
        "--verbose", action="store_true", help="also print MLflow's run links and Ray Tune's tables"
    )
    return p


def _parse(argv: list[str] | None) -> argparse.Namespace:
    """The arguments; a combination that means nothing is a usage error before anything runs: ``--json`` alone
    would run the whole study, ``--status`` with ``--plan`` (or ``--calibrate``) would ignore ``--status``, and
    ``--wait`` would be ignored by all three."""
    p = _parser()
    args = p.parse_args(argv)
    if args.json and not (args.plan or args.status or args.calibrate):
        p.error("--json needs --plan or --status (without them the study runs)")
    if args.wait and (
        args.plan or args.status or args.calibrate
    ):  # they run nothing, so there is nothing to wait for
        given = "--plan" if args.plan else "--status" if args.status else "--calibrate"
        p.error(f"--wait applies to running the study; {given} runs nothing (leave --wait out)")
    if args.status and (args.plan or args.calibrate):
        p.error(
            f"--status cannot be combined with {'--plan' if args.plan else '--calibrate'}; run them one at a time"
        )
    return args


def main(argv: list[str] | None = None) -> int:
    args = _parse(argv)
    from orchestrator.core.errors import run_guarded
    from orchestrator.core.log import set_verbosity
    from orchestrator.core.process import study_env

    study_env(args.address)  # before anything imports ray: a Ray started here listens on loopback only
    set_verbosity(args.verbose)
    try:
        # StudyError, and the errors marked user_error (a missing model, hub dataset or completion data file)
        return run_guarded(lambda: _command(args), args.debug)
    except KeyboardInterrupt:  # Ctrl-C: what ran is recorded KILLED; nothing of the study is left running
        print("interrupted: the study stopped; run the same command to resume it", file=sys.stderr)
        return 130


def _command(args: argparse.Namespace) -> int:
    from orchestrator.design.data_source import resolve_spec_data
    from orchestrator.design.study import load_spec
    from orchestrator.design.validate import check_study
    from orchestrator.sweep import report

    storage = args.storage
    if storage is None and (args.status or args.plan or args.calibrate):
        storage = report.remembered_for(args.study)  # where it ran, so --status needs no --storage
    spec = load_spec(args.study, {"storage": storage} if storage else None)
    if args.plan or args.calibrate:
        # the data as a run resolves it (the default is built under storage); a plan alone needs no data yet
        check_study(resolve_spec_data(spec), planning=not args.calibrate)
        return report.plan_command(spec, args.json, args.calibrate, args.plan)
    if args.status:
        from orchestrator.sweep.status import status_lines

        st = status(spec)
        print(json.dumps(st, indent=2) if args.json else "\n".join(status_lines(st)))
        return 0
    start = time.time()
    outcome = run_study(spec, args.address, wait=args.wait, study_arg=args.study)
    from orchestrator.core.log import log
    from orchestrator.sweep.scores import study_score_lines

    for line in report.summary_lines(outcome, spec.storage, time.time() - start, args.study):
        log(line)
    for line in study_score_lines(spec.storage, outcome):  # how well, not only that it ran
        log(line)
    return 0 if outcome.complete else 1


if __name__ == "__main__":
    raise SystemExit(main())
