"""A study YAML file read once, and a pydantic validation error turned into lines naming the file, the line and the
key (``path:line: key: message``), so every error a user can make in a study file points at its place."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import yaml

from orchestrator.core.errors import StudyError

DECLARED_AT = re.compile(r"(custom_tasks|tasks)\[(\d+)\]: ")  # the prefix a task declaration gives its errors


def read_yaml(path: Path) -> tuple[yaml.Node | None, dict[str, Any]]:
    """(the YAML node tree, for line numbers; the mapping) of a study file; StudyError unless it is a mapping."""
    text = path.read_text()
    try:
        node, raw = yaml.compose(text), yaml.safe_load(text)
    except yaml.YAMLError as err:
        raise StudyError(f"{path}: invalid YAML: {err}") from None
    if not isinstance(raw, dict):
        raise StudyError(f"{path}: a study is a YAML mapping (name, tasks, teachers, students, methods, ...)")
    return node, raw


def line_of(node: yaml.Node | None, loc: tuple[Any, ...]) -> int | None:
    """The 1-based line of the YAML node at pydantic's error location ``loc``."""
    line = node.start_mark.line + 1 if node is not None else None
    for part in loc:
        if isinstance(node, yaml.MappingNode):
            match = next((v for k, v in node.value if k.value == part), None)
            if match is None:
                key = next((k for k, _ in node.value if k.value == part), None)
                return key.start_mark.line + 1 if key is not None else line
            node = match
        elif isinstance(node, yaml.SequenceNode) and isinstance(part, int) and part < len(node.value):
            node = node.value[part]
        else:
            break
        line = node.start_mark.line + 1
    return line


def invalid_study(err: Any, node: yaml.Node | None, path: Path) -> StudyError:
    """A pydantic ``ValidationError`` as one StudyError with a ``path:line: key: message`` line per problem."""
    lines = []
    for e in err.errors():
        loc = tuple(e["loc"])
        msg = e["msg"].removeprefix("Value error, ")
        declared = DECLARED_AT.match(msg) if not loc else None
        if declared:  # a task declaration's error (custom_tasks.py): point at its entry
            loc, msg = (declared[1], int(declared[2])), msg[declared.end() :]
        where = ".".join(str(p) for p in loc) or "(top level)"
        line = line_of(node, loc)
        if e["type"] == "extra_forbidden":
            msg = "unknown key"
        lines.append(f"{path}:{line}: {where}: {msg}" if line else f"{path}: {where}: {msg}")
    return StudyError("invalid study:\n  " + "\n  ".join(lines))
