"""Edits on the tree-sitter syntax tree that turn real C and Java functions into task samples: injected bugs
(defect) and renamed, re-laid-out copies (clone).

Bug sites are syntax-tree nodes: ``binary_expression`` operators (comparisons, equality, ``&&``/``||``,
``+``/``-``), ``if`` statements that only leave (guards), statements that free or close something, and
subscripts indexed by a variable. A clone renames only the names the grammar declares inside the function
(parameters, locals, loop and catch variables, lambda parameters) at their identifier nodes, so fields, methods,
types, labels and macros keep their names; it then prints the tokens (comments dropped, preprocessor lines kept
verbatim) in another layout. Offsets are UTF-8 byte offsets into the function's text, as tree-sitter counts.
Every choice goes through the ``random.Random`` passed in, so a build is reproducible. Python has its own
module on ``ast`` (``tasks.transform_python``).
"""

from __future__ import annotations

import random
import re
from collections.abc import Iterator
from dataclasses import dataclass
from functools import cache

import tree_sitter

from tasks.extract import JAVA_WRAP, function_node, language, parse_function
from tasks.layout import Token, layout

_BLOCKS = frozenset(("compound_statement", "block", "case_statement", "switch_block_statement_group"))
_JUMPS = frozenset(("return_statement", "goto_statement", "break_statement", "continue_statement"))
_JUMPS_JAVA = _JUMPS | {"throw_statement"}
_SIMPLE_STATEMENTS = frozenset(("expression_statement", "declaration", "local_variable_declaration"))
_FREE_C = frozenset(
    "free PyMem_Free PyMem_RawFree PyMem_DEL PyObject_Free PyObject_GC_Del Py_DECREF Py_XDECREF Py_CLEAR "
    "fclose close munmap g_free sqlite3_free".split()
)
_RELEASE_JAVA = frozenset("close release unlock dispose".split())
_SWAPS = {
    "off_by_one": {"<": "<=", "<=": "<", ">": ">=", ">=": ">"},
    "flipped_equality": {"==": "!=", "!=": "=="},
    "swapped_and_or": {"&&": "||", "||": "&&"},
    "swapped_plus_minus": {"+": "-", "-": "+"},
}
_STRINGS = frozenset(
    (
        "string_literal",
        "concatenated_string",
        "char_literal",
        "character_literal",
        "text_block",
        "system_lib_string",
    )
)
_COMMENTS = frozenset(("comment", "line_comment", "block_comment"))
_IDENTIFIERS = frozenset(("identifier", "type_identifier", "field_identifier", "statement_identifier"))
# The nodes bug sites and declared names are looked for in; a query finds them without walking the tree in Python.
_QUERIES = {
    ("c", "sites"): "[(binary_expression) (subscript_expression) (if_statement) (expression_statement)] @n",
    ("java", "sites"): "[(binary_expression) (array_access) (if_statement) (expression_statement)] @n",
    ("c", "declared"): "[(parameter_declaration) (declaration)] @n",
    ("java", "declared"): "[(formal_parameter) (catch_formal_parameter) (enhanced_for_statement) (resource) "
    "(local_variable_declaration) (spread_parameter) (lambda_expression)] @n",
}


@dataclass(frozen=True)
class Edit:
    start: int  # byte offsets into the function's UTF-8 text
    end: int
    replacement: str


def apply_edit(text: str, edit: Edit) -> str:
    raw = text.encode()
    return (raw[: edit.start] + edit.replacement.encode() + raw[edit.end :]).decode(errors="replace")


@cache
def _query(lang: str, what: str) -> tree_sitter.Query:
    return tree_sitter.Query(language(lang), _QUERIES[lang, what])


def _find(node: tree_sitter.Node, lang: str, what: str) -> list[tree_sitter.Node]:
    """The nodes the ``what`` query matches under ``node``, in document order (outer before inner)."""
    found = tree_sitter.QueryCursor(_query(lang, what)).captures(node).get("n", [])
    return sorted(found, key=lambda n: (n.start_byte, -n.end_byte))


def _function(text: str, lang: str) -> tuple[bytes, tree_sitter.Node, int]:
    """(parsed bytes, function node, offset of the function's text in those bytes)."""
    if lang not in ("c", "java"):
        raise ValueError(f"tasks.transform: language must be 'c' or 'java', got {lang!r}")
    source, tree = parse_function(text, lang)
    node = function_node(tree, lang)
    if node is None:
        raise ValueError(f"tasks.transform: the text is not one {lang} function")
    return source, node, len(JAVA_WRAP[0].encode()) if lang == "java" else 0


# ---------------------------------------------------------------------------------------------- bug sites


def _whole_lines(src: bytes, start: int, end: int) -> tuple[int, int]:
    """Widen [start, end) to whole lines when it is alone on them, so a removal leaves no blank line."""
    line_start = src.rfind(b"\n", 0, start) + 1
    line_end = src.find(b"\n", end)
    line_end = len(src) if line_end == -1 else line_end
    if src[line_start:start].strip() or src[end:line_end].strip():
        return start, end
    return line_start, min(len(src), line_end + 1)


def _is_guard(node: tree_sitter.Node, jumps: frozenset[str]) -> bool:
    """``if (cond) return/goto/break/continue/throw ...;`` or a braced block of at most two simple statements
    ending so, with no ``else``: the NULL, bounds and error checks a removal turns into a bug."""
    if node.child_by_field_name("alternative") is not None:
        return False
    body = node.child_by_field_name("consequence")
    if body is None:
        return False
    if body.type in jumps:
        return True
    if body.type not in ("compound_statement", "block"):
        return False
    statements = [c for c in body.named_children if c.type not in _COMMENTS]
    return (
        0 < len(statements) <= 2
        and statements[-1].type in jumps
        and all(s.type in _SIMPLE_STATEMENTS for s in statements[:-1])
    )


def _released(node: tree_sitter.Node, lang: str) -> bool:
    """An expression statement that frees, closes or releases something (``free(p);``, ``in.close();``)."""
    call = node.named_children[0] if node.named_children else None
    if call is None:
        return False
    if lang == "c":
        fn = call.child_by_field_name("function") if call.type == "call_expression" else None
        return fn is not None and fn.type == "identifier" and fn.text.decode() in _FREE_C
    if call.type != "method_invocation" or call.child_by_field_name("object") is None:
        return False
    args = call.child_by_field_name("arguments")
    name = call.child_by_field_name("name")
    return name.text.decode() in _RELEASE_JAVA and args is not None and not args.named_children


def bug_sites(text: str, lang: str) -> dict[str, list[Edit]]:
    """Every place a bug of each kind could go in a C or Java function (kinds with no site are left out)."""
    src, fn, off = _function(text, lang)
    spaced = re.search(r"\w \+ \w", text) is not None
    kinds: dict[str, list[Edit]] = {
        k: []
        for k in (
            "off_by_one",
            "removed_guard",
            "dropped_release",
            "swapped_plus_minus",
            "wrong_index",
            "swapped_and_or",
            "flipped_equality",
        )
    }
    jumps = _JUMPS_JAVA if lang == "java" else _JUMPS
    for node in _find(fn, lang, "sites"):
        parent = node.parent
        if node.type == "binary_expression":
            op = node.child_by_field_name("operator")
            sides = (node.child_by_field_name("left"), node.child_by_field_name("right"))
            for kind, swap in _SWAPS.items():
                if op.type not in swap:
                    continue
                if kind == "swapped_plus_minus" and any(s is not None and s.type in _STRINGS for s in sides):
                    continue  # Java string concatenation: `-` would not compile at all
                kinds[kind].append(Edit(op.start_byte - off, op.end_byte - off, swap[op.type]))
        elif node.type in ("subscript_expression", "array_access"):
            index = node.child_by_field_name("index")
            if index is not None and index.type == "identifier" and not index.text[:1].isupper():
                kinds["wrong_index"].append(
                    Edit(index.end_byte - off, index.end_byte - off, " + 1" if spaced else "+1")
                )
        elif parent is not None and parent.type in _BLOCKS:
            # Only statements directly in a block: removing the body of `for (...) if (x) continue;` would
            # leave a loop without a body.
            if (node.type == "if_statement" and _is_guard(node, jumps)) or (
                node.type == "expression_statement" and _released(node, lang)
            ):
                kind = "removed_guard" if node.type == "if_statement" else "dropped_release"
                start, end = _whole_lines(src, node.start_byte, node.end_byte)
                kinds[kind].append(Edit(start - off, end - off, ""))
    return {kind: sites for kind, sites in kinds.items() if sites}


def inject_bug(text: str, lang: str, rng: random.Random) -> tuple[str, str] | None:
    """(buggy text, bug kind): a kind drawn uniformly among those with a site, then one site; None if none."""
    sites = bug_sites(text, lang)
    if not sites:
        return None
    kind = rng.choice(sorted(sites))
    return apply_edit(text, rng.choice(sites[kind])), kind


# ------------------------------------------------------------------------------------------------ tokens


def _leaf_kind(node: tree_sitter.Node) -> str:
    if node.type in _STRINGS:
        return "str"
    if node.type in _IDENTIFIERS:
        return "id"
    first = node.text[:1].decode(errors="replace")
    if first.isalnum() or first in "_$" or (first == "." and node.text[1:2].isdigit()):
        return "word" if node.is_named else "kw"
    return "op"


def _leaf_nodes(fn: tree_sitter.Node) -> Iterator[tree_sitter.Node]:
    """Leaves in order, a string literal as one leaf, comments and zero-width (MISSING-free) tokens left out."""
    stack = [fn]
    while stack:
        n = stack.pop()
        if n.type in _COMMENTS:
            continue
        if n.type in _STRINGS or not n.child_count:
            if n.end_byte > n.start_byte:
                yield n
            continue
        stack.extend(reversed(n.children))


def _leaves(text: str, lang: str) -> list[tuple[Token, tree_sitter.Node]]:
    """The function's tokens in order, with their nodes: comments dropped, string literals whole, and each
    preprocessor line (with its continuations) one ``pp`` token holding its original text."""
    src, fn, _ = _function(text, lang)
    out: list[tuple[Token, tree_sitter.Node]] = []
    skip_until = -1
    for node in _leaf_nodes(fn):
        if node.start_byte < skip_until:
            continue  # the rest of a preprocessor line, already taken whole
        if (node.text.startswith(b"#") and not node.is_named) or node.type == "preproc_directive":
            nl = src.find(b"\n", node.start_byte)
            while nl != -1 and src[nl - 1 : nl] == b"\\":
                nl = src.find(b"\n", nl + 1)
            nl = len(src) if nl == -1 else nl
            out.append((Token("pp", src[node.start_byte : nl].decode(errors="replace")), node))
            skip_until = nl + 1
            continue
        out.append((Token(_leaf_kind(node), node.text.decode(errors="replace")), node))
    return out


def tokenize(text: str, lang: str) -> list[Token]:
    """C/Java tokens of a function without comments; a C preprocessor line stays one ``pp`` token."""
    return [tok for tok, _ in _leaves(text, lang)]


def abstract_signature(text: str, lang: str) -> str:
    """The tokens with every identifier replaced: equal for functions that are clones of each other."""
    return " ".join("ID" if t.kind == "id" else t.text for t in tokenize(text, lang))


# ------------------------------------------------------------------------------------------------ renaming


def _declared(node: tree_sitter.Node, lang: str) -> Iterator[tree_sitter.Node]:
    """The identifier nodes a declaration node declares (none for other nodes)."""
    t = node.type
    if lang == "c":
        if t == "parameter_declaration" or t == "declaration":
            for decl in node.children_by_field_name("declarator"):
                while decl is not None and decl.type != "identifier":
                    if decl.type == "function_declarator":
                        decl = None  # a local prototype names a function defined elsewhere
                        break
                    inner = decl.child_by_field_name("declarator")
                    decl = (
                        inner
                        if inner is not None
                        else next(
                            (
                                c
                                for c in decl.named_children
                                if c.type.endswith("declarator") or c.type == "identifier"
                            ),
                            None,
                        )
                    )
                if decl is not None:
                    yield decl
        return
    if t in ("formal_parameter", "catch_formal_parameter", "enhanced_for_statement", "resource"):
        name = node.child_by_field_name("name")
        if (
            name is not None
            and name.type == "identifier"
            and (t != "resource" or node.child_by_field_name("type"))
        ):
            yield name
    elif t in ("local_variable_declaration", "spread_parameter"):
        for decl in node.named_children:
            if decl.type == "variable_declarator":
                name = decl.child_by_field_name("name")
                if name is not None and name.type == "identifier":
                    yield name
    elif t == "lambda_expression":
        params = node.child_by_field_name("parameters")
        if params is not None and params.type == "identifier":
            yield params
        elif params is not None and params.type == "inferred_parameters":
            yield from (p for p in params.named_children if p.type == "identifier")


def _is_reference(node: tree_sitter.Node, lang: str) -> bool:
    """True for an identifier node that can name a local: not a Java field (``a.x``) or method name."""
    if node.type != "identifier":
        return False
    parent = node.parent
    if lang == "java" and parent is not None:
        if parent.type == "field_access" and parent.child_by_field_name("field") == node:
            return False
        if (
            parent.type in ("method_invocation", "method_reference")
            and parent.child_by_field_name("name") == node
        ):
            return False
        if parent.type in ("scoped_identifier", "marker_annotation", "annotation", "labeled_statement"):
            return False
    return True


def declared_names(text: str, lang: str) -> list[str]:
    """The names a C or Java function declares (parameters and locals), in order of first declaration."""
    _, fn, _ = _function(text, lang)
    names: list[str] = []
    for node in _find(fn, lang, "declared"):
        for ident in _declared(node, lang):
            name = ident.text.decode()
            if name not in names:
                names.append(name)
    return names


_NAME_POOL = (
    "value result item count index buffer node key entry temp data elem pos length acc cur next_item prev obj arg "
    "total size offset limit flag state target source dest output input handle ctx info label token part chunk "
    "step width height start stop first last left right head tail ptr ref slot bucket field name text line"
).split()


def fresh_names(old: list[str], taken: set[str], rng: random.Random) -> dict[str, str]:
    """A new name for each of ``old``, drawn from a shuffled pool, clashing with nothing in ``taken``."""
    pool = list(_NAME_POOL)
    rng.shuffle(pool)
    mapping: dict[str, str] = {}
    used = set(taken)
    for i, name in enumerate(old):
        base = pool[i % len(pool)]
        candidate, n = base, 2
        while candidate in used:
            candidate, n = f"{base}{n}", n + 1
        used.add(candidate)
        mapping[name] = candidate
    return mapping


def rename_and_relayout(text: str, lang: str, rng: random.Random) -> str:
    """A type-2 clone of a C or Java function: parameters and locals renamed, comments dropped, layout changed."""
    leaves = _leaves(text, lang)
    mapping = fresh_names(
        declared_names(text, lang), {t.text for t, _ in leaves if t.kind in ("id", "word", "kw")}, rng
    )
    renamed = [
        Token("id", mapping[tok.text]) if tok.text in mapping and _is_reference(node, lang) else tok
        for tok, node in leaves
    ]
    return layout(renamed, compact=rng.random() < 0.5)
