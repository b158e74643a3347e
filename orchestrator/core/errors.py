"""How the command line reports an error the user can cause: one line ``error: ...`` on stderr, exit status 2, no
traceback (``--debug`` prints it too). Anything else is a bug and keeps its traceback."""

from __future__ import annotations

import os
import re
import shutil
import sys
import traceback
from collections.abc import Callable, Iterator
from pathlib import Path

USER_ERROR = 2


class StudyError(ValueError):
    """A study file, profile or setting is invalid; the message names the place."""


def one_line(message: str) -> str:
    """A multi-line message (e.g. every invalid key of a study file) as one line."""
    parts = [p.strip() for p in message.splitlines() if p.strip()]
    if len(parts) > 1 and parts[0].endswith(":"):
        return parts[0] + " " + "; ".join(parts[1:])
    return "; ".join(parts)


def user_error_of(err: BaseException) -> BaseException | None:
    """The error the user can fix that ``err`` is (or, raised in a Ray task, wraps as its ``cause``): a
    ``StudyError``, or any error whose class says ``user_error = True``. The ``tasks`` and ``models`` folders mark
    theirs that way (``CompletionDataError``, ``HubUnavailableError``, ``ModelNotAvailableError``) without importing
    this ground floor; None when ``err`` is a bug."""
    for e in (err, getattr(err, "cause", None)):
        if isinstance(e, StudyError) or (
            isinstance(e, BaseException) and getattr(e, "user_error", False) is True
        ):
            return e
    return None


def run_guarded(
    command: Callable[[], int], debug: bool = False, user_error: Callable[[BaseException], bool] | None = None
) -> int:
    """``command()``, with a user's error (``user_error_of``, or one ``user_error`` says the user caused) as one
    line."""
    try:
        return command()
    except Exception as err:
        found = user_error_of(err) or (err if user_error is not None and user_error(err) else None)
        if found is None:
            raise
        if debug:
            traceback.print_exc()
        print(f"error: {one_line(str(found))}", file=sys.stderr)
        return USER_ERROR


# How a full disk (or an exhausted quota) reads in the errors of the writers a study uses: an OSError's errno, a short
# write of numpy's (errno unset), safetensors' Rust io error, SQLite (the MLflow store).
_FULL_ERRNOS = (28, 122)  # ENOSPC, EDQUOT
_FULL_TEXT = re.compile(
    r"No space left on device|Disk quota exceeded|StorageFull|QuotaExceeded|database or disk is full"
    r"|\d+ requested and \d+ written"
)


def _chain(err: BaseException) -> Iterator[BaseException]:
    """``err`` and what it wraps: causes, contexts, and a Ray task error's ``cause`` (a fault in a Ray task nested
    in another arrives wrapped twice)."""
    seen: set[int] = set()
    todo = [err]
    while todo:
        e = todo.pop()
        if e is None or id(e) in seen:
            continue
        seen.add(id(e))
        yield e
        todo += [getattr(e, "cause", None), e.__cause__, e.__context__]


def disk_full(err: BaseException, storage: str | Path) -> StudyError | None:
    """A full disk anywhere in ``err`` as the user's one line (naming the file being written when known, else the
    storage), or None when ``err`` is something else."""
    for e in _chain(err):
        if isinstance(e, OSError) and e.errno in _FULL_ERRNOS:
            what = os.strerror(e.errno)
        elif isinstance(e, BaseException) and _FULL_TEXT.search(str(e)):
            what = "No space left on device"
        else:
            continue
        where = f"writing {e.filename}" if getattr(e, "filename", None) else f"under {storage}"
        free = shutil.disk_usage(storage).free if Path(storage).exists() else 0
        return StudyError(
            f"storage: the disk is full ({what}) {where}, {free / 2**20:.1f} MiB free; make room there (or pass "
            "another --storage) and run the same command again"
        )
    return None
