"""How the ``tasks`` commands (``python -m tasks.build_local``, ``python -m tasks.completion``) report a mistake the
user can make (bad arguments, a missing input, an output they cannot write): one line ``error: ...`` on stderr and
exit status 2, never a traceback, as the study command does (orchestrator/core/errors.py)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import NoReturn

USER_ERROR = 2


class OneLineArgumentParser(argparse.ArgumentParser):
    """argparse whose usage errors are one ``error: ...`` line (the usage stays available with ``--help``)."""

    def error(self, message: str) -> NoReturn:
        self.exit(USER_ERROR, f"error: {self.prog}: {message} (see {self.prog} --help)\n")


def error_line(exc: BaseException) -> str:
    """One line for a user error: an OSError as ``path: reason``, anything else its message's lines joined."""
    if isinstance(exc, OSError) and exc.strerror and exc.filename:
        return f"{exc.filename}: {exc.strerror}"
    return "; ".join(part.strip() for part in str(exc).splitlines() if part.strip()) or type(exc).__name__


def fail(exc: BaseException) -> NoReturn:
    print(f"error: {error_line(exc)}", file=sys.stderr)
    raise SystemExit(USER_ERROR)


def output_file_problem(path: str | Path, flag: str = "--out") -> str | None:
    """Why ``path`` cannot be written as an output file, naming ``flag`` (a folder, a missing or unwritable
    folder), or None: checked before a command's work, which may take hours, not after it."""
    import os

    out = Path(path)
    folder = out.parent if str(out.parent) else Path(".")
    if out.is_dir():
        return f"{flag} {out} is a folder; name the file to write"
    if not folder.is_dir():
        return f"{flag} {out}: its folder {folder} does not exist"
    if not os.access(folder, os.W_OK) or (out.exists() and not os.access(out, os.W_OK)):
        return f"{flag} {out}: not writable"
    return None
