"""The exception task of the local data builder, built the way CuBERT built its ETH Py150 exception set: one
``except T:`` handler per sample masked as ``__HOLE__`` in a Python function of this machine (tasks/build_local.py)."""

from __future__ import annotations

import ast
import random
import re
from collections.abc import Callable

from tasks.examples import SPLITS
from tasks.exception import EXCEPTION_LABELS
from tasks.extract import parse_python, python_function_source, source_lines
from tasks.local_pool import Pool, normalise, seeded_rng, split_of
from tasks.local_sources import Sources, python_files, read_text

HOLE = "__HOLE__"
# At most this many samples from one function (each masks a different handler): more would be near-copies.
MAX_HOLES_PER_FUNCTION = 3
_HANDLER_HINT = re.compile(r"except\s+[\w.]*(?:" + "|".join(EXCEPTION_LABELS) + r")\b")


def exception_type_name(node: ast.expr | None) -> str | None:
    """``ValueError`` for ``except ValueError``/``except errors.ValueError``; None for tuples and the like."""
    if isinstance(node, ast.Name):
        return node.id
    if isinstance(node, ast.Attribute):
        return node.attr
    return None


_DEF_LINE = re.compile(r"[ \t]*(?:async[ \t]+)?def[ \t]+(\w+)")
_CLASS_LINE = re.compile(r"[ \t]*class[ \t]+(\w+)")


def _indent(line: str) -> int:
    return len(line) - len(line.lstrip(" \t"))


def _is_filler(line: str) -> bool:
    """Blank, comment, or a closing bracket line (black's `):`): none of them ends or opens a block."""
    s = line.strip()
    return not s or s[0] in "#)]}"


def _outer_def(lines: list[str], i: int) -> tuple[int, str] | None:
    """(line index, qualname) of the function holding line ``i`` when it is a module-level function or a method
    of a module-level class (what ``outer_functions`` yields), found by indentation alone."""
    cur = _indent(lines[i])
    outer: int | None = None
    names: list[str] = []
    valid = False
    for j in range(i - 1, -1, -1):
        line = lines[j]
        if _is_filler(line) or _indent(line) >= cur:
            continue
        cur = _indent(line)
        d = _DEF_LINE.match(line)
        c = _CLASS_LINE.match(line)
        if d:
            outer, names, valid = j, [d.group(1)], True
        elif c and outer is not None:
            names.insert(0, c.group(1))
        else:
            valid = False
        if cur == 0:
            break
    if outer is None or not valid or cur != 0:
        return None
    return outer, ".".join(names)


def _def_block(lines: list[str], start: int) -> list[str]:
    """The lines from a ``def`` to the next line indented no deeper, with the ``def``'s indentation removed."""
    indent = lines[start][: _indent(lines[start])]
    end = start + 1
    while end < len(lines) and (_is_filler(lines[end]) or _indent(lines[end]) > len(indent)):
        end += 1
    return [line[len(indent) :] if line.startswith(indent) else line for line in lines[start:end]]


def mask_handlers(text: str, key_prefix: str, rng_for: Callable[[str], random.Random]) -> list[dict]:
    """CuBERT exception samples from one Python file's text.

    For every module-level function or method (3 to 80 lines) with ``except T`` handlers, ``T`` one of the 20
    types, up to ``MAX_HOLES_PER_FUNCTION`` of those handlers (drawn with ``rng_for(key)``) each give one sample
    in which that handler's type, and only it, is replaced by ``__HOLE__``. Returns dicts with ``key`` (file key
    and qualname), ``function``, ``label`` and ``line`` (the function's first line in the file).

    Only the functions around a textual ``except T`` are parsed, not the whole file: parsing whole files was
    most of the build time. A function the indentation scan cuts wrongly fails to parse and is skipped.
    """
    lines = source_lines(text)
    starts: dict[int, str] = {}
    line_no, pos = 0, 0
    for m in _HANDLER_HINT.finditer(text):
        line_no += text.count("\n", pos, m.start())
        pos = m.start()
        found = _outer_def(lines, line_no)
        if found is not None:
            starts[found[0]] = found[1]
    samples: list[dict] = []
    for start in sorted(starts):
        block = _def_block(lines, start)
        tree = parse_python("".join(block))
        if (
            tree is None
            or not tree.body
            or not isinstance(tree.body[0], ast.FunctionDef | ast.AsyncFunctionDef)
        ):
            continue
        fn = tree.body[0]
        if not (3 <= fn.end_lineno - fn.lineno + 1 <= 80):
            continue
        handlers = [
            h
            for h in ast.walk(fn)
            if isinstance(h, ast.ExceptHandler)
            and exception_type_name(h.type) in EXCEPTION_LABELS
            and h.type.lineno == h.type.end_lineno
            # On the function's last line the edit would shift the end column the function is cut at.
            and h.type.lineno != fn.end_lineno
        ]
        key = f"{key_prefix}:{starts[start]}"
        rng = rng_for(key)
        for handler in rng.sample(handlers, min(len(handlers), MAX_HOLES_PER_FUNCTION)):
            t = handler.type
            line = block[t.lineno - 1]
            raw = line.encode()
            # AST columns count UTF-8 bytes; the text is indexed by characters.
            c0 = len(raw[: t.col_offset].decode(errors="replace"))
            c1 = len(raw[: t.end_col_offset].decode(errors="replace"))
            masked = list(block)
            masked[t.lineno - 1] = line[:c0] + HOLE + line[c1:]
            function = python_function_source(masked, fn)
            if function.count(HOLE) != 1 or parse_python(function) is None:
                continue
            samples.append(
                {"key": key, "function": function, "label": exception_type_name(t), "line": start + 1}
            )
    return samples


def build_exception(sizes: dict[str, int], sources: Sources, seed: int) -> tuple[dict[str, list[dict]], dict]:
    pool = Pool(dict(sizes))
    for i, (root, path) in enumerate(python_files(sources, seed)):
        pool.files_read = i + 1
        text = read_text(path)
        if text is None:
            continue
        rel = str(path.relative_to(root))
        for s in mask_handlers(text, rel, lambda key: seeded_rng(seed, "exception", key)):
            sample = {"function": s["function"], "label": s["label"], "info": f"{path}:{s['line']}"}
            pool.add(split_of(s["key"], sizes), normalise(s["function"]), (s["key"], sample))
        if pool.full():
            break
    out: dict[str, list[dict]] = {}
    for split in SPLITS:
        samples = [sample for _, sample in pool.draw(split, seed, "exception")]
        seeded_rng(seed, "exception", split, "order").shuffle(samples)
        out[split] = samples
    return out, {"language": "python", "files_read": pool.files_read}
