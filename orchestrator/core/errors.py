"""How the command line reports an error the user can cause: one line ``error: ...`` on stderr, exit status 2, no
traceback (``--debug`` prints it too). Anything else is a bug and keeps its traceback."""

from __future__ import annotations

import sys
import traceback
from collections.abc import Callable

USER_ERROR = 2


class StudyError(ValueError):
    """A study file, profile or setting is invalid; the message names the place."""


def one_line(message: str) -> str:
    """A multi-line message (e.g. every invalid key of a study file) as one line."""
    parts = [p.strip() for p in message.splitlines() if p.strip()]
    if len(parts) > 1 and parts[0].endswith(":"):
        return parts[0] + " " + "; ".join(parts[1:])
    return "; ".join(parts)


def run_guarded(
    command: Callable[[], int], debug: bool = False, user_error: Callable[[BaseException], bool] | None = None
) -> int:
    """``command()``, with a ``StudyError`` (or an error ``user_error`` says the user caused: a missing model) as
    one line."""
    try:
        return command()
    except Exception as err:
        if not (isinstance(err, StudyError) or (user_error is not None and user_error(err))):
            raise
        if debug:
            traceback.print_exc()
        print(f"error: {one_line(str(err))}", file=sys.stderr)
        return USER_ERROR
