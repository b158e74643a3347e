"""``python -m orchestrator.analysis notebooks ...``"""

from orchestrator.analysis.notebooks import main

raise SystemExit(main())
