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
        if "%(default)" in text or not action.option_strings:
            return action.help
        return f"{text} (default: %(default)s)".lstrip()

    def add_argument(self, action: argparse.Action) -> None:
        # argparse prints no help line (so no default) for an option without help text: give it one
        shown = action.default not in (None, False, [], argparse.SUPPRESS)
        if not action.help and action.option_strings and shown:
            action.help = "(default: %(default)s)"
        super().add_argument(action)
