"""``python -m orchestrator.analysis notebooks ...`` (orchestrator/analysis/cli.py)."""

from orchestrator.analysis.cli import main

raise SystemExit(main())
