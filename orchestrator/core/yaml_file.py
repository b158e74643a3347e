"""A study YAML file read once, and a pydantic validation error turned into lines naming the file, the line and the
key (``path:line: key: message``), so every error a user can make in a study file points at its place."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import yaml

from orchestrator.core.errors import StudyError

DECLARED_AT = re.compile(r"(custom_tasks|tasks)\[(\d+)\]: ")  # the prefix a task declaration gives its errors


class DuplicateKeyError(yaml.YAMLError):
    """A mapping that holds one key twice (PyYAML would keep the last silently)."""

    def __init__(self, key: Any, line: int, first: int) -> None:
        super().__init__(f"{line}: key {key!r} appears twice (first at line {first})")
        self.key, self.line, self.first = key, line, first


class UniqueKeyLoader(yaml.SafeLoader):
    """PyYAML's SafeLoader, refusing a key repeated in one mapping at any depth (``<<`` merges may still be
    overridden: only the keys written in the mapping itself count)."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen: dict[Any, int] = {}
        for key_node, _ in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge":
                continue
            key, line = self.construct_object(key_node, deep=True), key_node.start_mark.line + 1
            try:
                if key in seen:
                    raise DuplicateKeyError(key, line, seen[key])
                seen[key] = line
            except TypeError:  # an unhashable key: SafeLoader says so itself
                continue
        return super().construct_mapping(node, deep)


def _text(path: Path) -> str:
    """The file's text; StudyError for a folder, an unreadable file or one that is not UTF-8 (its line, column)."""
    if path.is_dir():
        raise StudyError(f"{path} is a folder, not a study YAML file")
    try:
        data = path.read_bytes()
    except OSError as err:
        raise StudyError(f"{path}: cannot read it ({err.strerror})") from None
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as err:
        line = data.count(b"\n", 0, err.start) + 1
        column = len(data[data.rfind(b"\n", 0, err.start) + 1 : err.start].decode("utf-8", "replace")) + 1
        raise StudyError(
            f"{path}:{line}: not UTF-8 (byte 0x{data[err.start]:02x} at column {column}); save the file as UTF-8"
        ) from None


def load_unique(text: str) -> tuple[yaml.Node | None, Any]:
    """(the node tree, the data) of one YAML document, parsed once; DuplicateKeyError for a repeated key."""
    loader = UniqueKeyLoader(text)
    try:
        node = loader.get_single_node()
        return node, (loader.construct_document(node) if node is not None else None)
    finally:
        loader.dispose()


def read_yaml(path: Path) -> tuple[yaml.Node | None, dict[str, Any]]:
    """(the YAML node tree, for line numbers; the mapping) of a study file; StudyError unless it is a UTF-8 file
    holding a mapping without a repeated key."""
    node, raw = parse_yaml(path)
    if not isinstance(raw, dict):
        raise StudyError(f"{path}: a study is a YAML mapping (name, tasks, teachers, students, methods, ...)")
    return node, raw


def parse_yaml(path: Path) -> tuple[yaml.Node | None, Any]:
    """(the node tree, the data) of a YAML file (a study, a ``--task-file``); StudyError, one line naming the line
    and column, for a file that is not UTF-8, not YAML, or repeats a key."""
    text = _text(path)
    try:
        node, raw = load_unique(text)
    except DuplicateKeyError as err:
        raise StudyError(f"{path}:{err}") from None
    except yaml.MarkedYAMLError as err:  # the line and column where the parser stopped, on one line
        mark, what = err.problem_mark, ", ".join(p for p in (err.context, err.problem) if p)
        if mark is None:
            raise StudyError(f"{path}: invalid YAML: {what}") from None
        raise StudyError(f"{path}:{mark.line + 1}: invalid YAML: {what} (column {mark.column + 1})") from None
    except yaml.YAMLError as err:
        raise StudyError(f"{path}: invalid YAML: {err}") from None
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
