"""How the command line reports an error the user can cause: one line ``error: ...`` on stderr, exit status 2, no
traceback (``--debug`` prints it too). Anything else is a bug and keeps its traceback."""

from __future__ import annotations

import sys
import traceback
from collections.abc import Callable

from orchestrator.sweep.spec import StudyError

USER_ERROR = 2


def one_line(message: str) -> str:
    """A multi-line message (e.g. every invalid key of a study file) as one line."""
    parts = [p.strip() for p in message.splitlines() if p.strip()]
    if len(parts) > 1 and parts[0].endswith(":"):
        return parts[0] + " " + "; ".join(parts[1:])
    return "; ".join(parts)


def run_guarded(command: Callable[[], int], debug: bool = False) -> int:
    try:
        return command()
    except StudyError as err:
        if debug:
            traceback.print_exc()
        print(f"error: {one_line(str(err))}", file=sys.stderr)
        return USER_ERROR
