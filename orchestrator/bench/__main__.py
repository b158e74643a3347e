"""``python -m orchestrator.bench overhead ...``"""

from orchestrator.bench.overhead import main

raise SystemExit(main())
