"""``python -m orchestrator.trial``: train and evaluate one student. The code lives in ``orchestrator/train/``."""

from orchestrator.train.trial import main

if __name__ == "__main__":
    raise SystemExit(main())
