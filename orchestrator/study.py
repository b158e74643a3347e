"""``python -m orchestrator.study``: run, plan or inspect a study. The code lives in ``orchestrator/sweep/``."""

from orchestrator.sweep.driver import main, run_study, status

__all__ = ["main", "run_study", "status"]

if __name__ == "__main__":
    raise SystemExit(main())
