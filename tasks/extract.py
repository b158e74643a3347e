"""Pull whole functions out of C, Java and Python source text with tree-sitter, for the local data builder.

Each file is parsed once with the language's tree-sitter grammar (the ``tree-sitter-c``/``-java``/``-python``
wheels) and a query picks the function nodes: C ``function_definition``, Java method and constructor
declarations, Python ``function_definition`` at module level or in module-level classes. A function is kept only
when its node has no parse error and its text, cut out alone, parses again without one (Java inside a wrapper
class, since a lone constructor is not a compilation unit). That one rule replaces the brace matching, the
C++ filter and the macro guesses the builder had before: whatever the grammar cannot read is left out.

The Python helpers at the end (``parse_python``, ``source_lines``, ``python_function_source``) stay on ``ast``:
the exception task masks handler types by AST position and Python's own parser is the reference there.
"""

from __future__ import annotations

import ast
import re
import warnings
from dataclasses import dataclass
from functools import cache

import tree_sitter
import tree_sitter_c
import tree_sitter_java
import tree_sitter_python

MIN_LINES = 3
MAX_LINES = 80
LANGUAGES = ("c", "java", "python")
_GRAMMARS = {"c": tree_sitter_c, "java": tree_sitter_java, "python": tree_sitter_python}
# A Java method alone is not a compilation unit: it is parsed (and edited) inside this class.
JAVA_WRAP = ("class _Wrap {\n", "\n}\n")
_QUERIES = {
    "c": "(function_definition type: (_) declarator: (_) body: (compound_statement)) @fn",
    "java": "[(method_declaration body: (block)) (constructor_declaration) (compact_constructor_declaration)] @fn",
    "python": "(function_definition) @fn",
}
_JAVA_FUNCTIONS = frozenset(
    ("method_declaration", "constructor_declaration", "compact_constructor_declaration")
)
_ANNOTATIONS = frozenset(("annotation", "marker_annotation", "comment", "line_comment", "block_comment"))
_LINE = re.compile(r"[^\n]*\n|[^\n]+\Z")


@dataclass(frozen=True)
class Function:
    """One function cut out of a file. ``key`` groups copies of the same function (it picks the split)."""

    text: str
    name: str
    path: str  # where it came from, for provenance (a file path, or `zip!member`)
    line: int  # 1-based line of its first line in that file
    key: str


@cache
def language(name: str) -> tree_sitter.Language:
    if name not in _GRAMMARS:
        raise ValueError(f"tasks.extract: unknown language '{name}'; valid: {list(LANGUAGES)}")
    return tree_sitter.Language(_GRAMMARS[name].language())


@cache
def parser(name: str) -> tree_sitter.Parser:
    return tree_sitter.Parser(language(name))


@cache
def _query(name: str) -> tree_sitter.Query:
    return tree_sitter.Query(language(name), _QUERIES[name])


def function_source(text: str, lang: str) -> bytes:
    """The bytes a function's text is parsed as: itself, or for Java itself inside ``JAVA_WRAP``."""
    if lang == "java":
        return (JAVA_WRAP[0] + text + JAVA_WRAP[1]).encode()
    return text.encode()


def function_node(tree: tree_sitter.Tree, lang: str) -> tree_sitter.Node | None:
    """The function node of a tree parsed from ``function_source`` (None when it is not one function)."""
    root = tree.root_node
    if lang == "java":
        cls = root.named_children[0] if root.named_children else None
        body = cls.child_by_field_name("body") if cls is not None else None
        nodes = [n for n in body.named_children if n.type in _JAVA_FUNCTIONS] if body is not None else []
    else:
        wanted = "function_definition"
        nodes = [n for n in root.named_children if n.type == wanted]
    return nodes[0] if len(nodes) == 1 else None


def parse_function(text: str, lang: str) -> tuple[bytes, tree_sitter.Tree]:
    source = function_source(text, lang)
    return source, parser(lang).parse(source)


def parses_cleanly(text: str, lang: str) -> bool:
    """True when tree-sitter reads the function text with no ERROR or MISSING node."""
    _, tree = parse_function(text, lang)
    return not tree.root_node.has_error and function_node(tree, lang) is not None


def _declarator_name(node: tree_sitter.Node) -> tree_sitter.Node | None:
    """The identifier a C declarator declares, through pointer/array/function/parenthesised declarators."""
    while node is not None and node.type not in ("identifier", "field_identifier"):
        inner = node.child_by_field_name("declarator")
        if inner is None:
            inner = next((c for c in node.named_children if c.type.endswith("declarator")), None)
        node = inner
    return node


def _java_start(node: tree_sitter.Node) -> tree_sitter.Node | None:
    """The first child a Java method's text starts at: leading annotations are not part of the sample."""
    mods = node.named_children[0] if node.named_children else None
    if mods is None or mods.type != "modifiers":
        return None
    for child in mods.children:
        if child.type not in _ANNOTATIONS:
            return child
    return mods.next_sibling


def _python_outer(node: tree_sitter.Node) -> str | None:
    """The qualname of a module-level function or method of a module-level class, else None (nested ones stay
    inside their outer function, so every handler belongs to exactly one sample)."""
    names = [node.child_by_field_name("name").text.decode()]
    parent = node.parent
    while parent is not None and parent.type != "module":
        if parent.type == "class_definition":
            names.insert(0, parent.child_by_field_name("name").text.decode())
        elif parent.type not in ("block", "decorated_definition"):
            return None
        parent = parent.parent
    return ".".join(names)


def _name_of(node: tree_sitter.Node, lang: str) -> str | None:
    if lang == "c":
        ident = _declarator_name(node.child_by_field_name("declarator"))
        return ident.text.decode() if ident is not None else None
    if lang == "python":
        return _python_outer(node)
    name = node.child_by_field_name("name")
    return name.text.decode() if name is not None else None


def _dedent_python(src: bytes, start: int, end: int) -> str:
    """The function from ``def`` on, with the ``def`` line's indentation removed from lines starting with it
    (``textwrap.dedent`` would give up on a multi-line string flush left, leaving text that does not parse)."""
    line_start = src.rfind(b"\n", 0, start) + 1
    indent = src[line_start:start]
    if indent.strip():
        return ""  # `def` after other code on its line (`if x: def f(): ...`): not a whole-line function
    lines = _LINE.findall(src[start:end].decode(errors="replace"))
    pad = indent.decode()
    return "".join([lines[0]] + [ln[len(pad) :] if ln.startswith(pad) else ln for ln in lines[1:]])


def extract_functions(text: str, lang: str, path: str, key_prefix: str) -> list[Function]:
    """Functions of ``MIN_LINES``..``MAX_LINES`` lines that tree-sitter parses cleanly, in file order.

    C: every function definition; Java: methods (with a body) and constructors, not those of classes declared
    inside another method; Python: outer functions (``key`` ends with the qualname).
    """
    src = text.encode()
    tree = parser(lang).parse(src)
    nodes = tree_sitter.QueryCursor(_query(lang)).captures(tree.root_node).get("fn", [])
    kept: list[tree_sitter.Node] = []
    for node in sorted(nodes, key=lambda n: n.start_byte):
        if kept and node.start_byte < kept[-1].end_byte:
            continue  # inside a function already taken (a method of an anonymous or local class)
        kept.append(node)
    out: list[Function] = []
    for node in kept:
        if node.has_error:
            continue
        name = _name_of(node, lang)
        if not name:
            continue
        first = (_java_start(node) if lang == "java" else None) or node
        start = first.start_byte
        if lang == "python":
            fn_text = _dedent_python(src, start, node.end_byte)
        else:
            fn_text = src[start : node.end_byte].decode(errors="replace")
        n_lines = fn_text.count("\n") + 1
        if not fn_text or not (MIN_LINES <= n_lines <= MAX_LINES) or not parses_cleanly(fn_text, lang):
            continue
        if lang == "python" and parse_python(fn_text) is None:
            continue  # the Python edits run on `ast`: the text must read under this interpreter too
        short = name.rsplit(".", 1)[-1]
        out.append(Function(fn_text, short, path, first.start_point.row + 1, f"{key_prefix}:{name}"))
    return out


# ------------------------------------------------------------------------- Python via ast (exception task)


def source_lines(text: str) -> list[str]:
    r"""Lines with their ``\n``, split only where Python's tokenizer splits (``str.splitlines`` also splits at
    form feeds and other separators, which would shift AST line numbers)."""
    return _LINE.findall(text)


def parse_python(text: str) -> ast.Module | None:
    """The module's AST, or None when it does not parse under this interpreter (Python 2 files and the like)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            return ast.parse(text)
        except (SyntaxError, ValueError, RecursionError, MemoryError):
            return None


def python_function_source(lines: list[str], node: ast.AST) -> str:
    """The function's text from ``def`` to its end, with the ``def`` line's indentation removed.

    Only that indentation is removed, and only where a line starts with it: ``textwrap.dedent`` would give up
    on a function whose multi-line string has a line flush left, leaving text that no longer parses.
    """
    segment = lines[node.lineno - 1 : node.end_lineno]
    if not segment:
        return ""
    # end_col_offset counts UTF-8 bytes, not characters.
    segment[-1] = segment[-1].encode()[: node.end_col_offset].decode(errors="replace")
    indent = segment[0][: len(segment[0]) - len(segment[0].lstrip())]
    return "".join(line[len(indent) :] if line.startswith(indent) else line for line in segment)
