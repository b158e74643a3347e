"""``python -m orchestrator.bench overhead|transfer ...``"""

from orchestrator.bench.cli import main

raise SystemExit(main())
