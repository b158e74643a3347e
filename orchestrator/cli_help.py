"""One argparse help formatter for the commands: the module docstring as written, and each option's default (also
for options without a help text; left out where it says nothing: None, or False of an on/off flag)."""

from __future__ import annotations

import argparse


class HelpFormatter(argparse.RawDescriptionHelpFormatter):
    def _get_help_string(self, action: argparse.Action) -> str | None:
        text = action.help or ""
        default = action.default
        if default is None or default is False or default == [] or default is argparse.SUPPRESS:
            return action.help
        if (
            "%(default)" in text or "default:" in text or not action.option_strings
        ):  # said in the help already
            return action.help
        return f"{text} (default: %(default)s)".lstrip()

    def add_argument(self, action: argparse.Action) -> None:
        # argparse prints no help line (so no default) for an option without help text: give it one
        shown = action.default not in (None, False, [], argparse.SUPPRESS)
        if not action.help and action.option_strings and shown:
            action.help = "(default: %(default)s)"
        super().add_argument(action)


# The classification students and methods, for the commands' --student/--method choices without importing torch
# (models/ and kd_methods/ register them at import). tests/test_startup.py checks these against the registries:
# a new student or method is added there too.
STUDENT_NAMES = (
    "bigru-1.5m",
    "bigru-30m",
    "bigru-7m",
    "bigru-tiny",
    "roberta-0.6m",
    "roberta-1.5m",
    "roberta-124m",
    "roberta-30m",
    "roberta-7m",
    "roberta-tiny",
)
METHOD_NAMES = ("ckd", "dist", "ft", "kd", "pkd")  # distil is the completion study's (causal LMs)


class OneLineParser(argparse.ArgumentParser):
    """An ArgumentParser whose usage errors (an unknown option, a missing value) are one line on stderr,
    ``error: ...`` naming the command and pointing at ``--help``, with exit status 2 (argparse's own status), instead
    of the usage block followed by the message."""

    def error(self, message: str) -> None:  # type: ignore[override]
        import sys

        sys.stderr.write(f"error: {self.prog}: {message} (see {self.prog} --help)\n")
        raise SystemExit(2)
