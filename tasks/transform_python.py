"""Python edits for the local data builder's fallback (no C or Java on the machine): bugs and renamed copies.

These stay on ``ast`` rather than tree-sitter: both print the result with ``ast.unparse``, which gives the clean
and the buggy (or the original and the renamed) text one layout, and Python's own parser is the reference for
what is a local name (``ast.Store`` contexts, ``global``/``nonlocal``). Every choice goes through the
``random.Random`` passed in, so a build is reproducible.
"""

from __future__ import annotations

import ast
import random

from tasks.transform import fresh_names

_PY_COMPARE_SWAP: dict[type, type] = {
    ast.Lt: ast.LtE,
    ast.LtE: ast.Lt,
    ast.Gt: ast.GtE,
    ast.GtE: ast.Gt,
    ast.Eq: ast.NotEq,
    ast.NotEq: ast.Eq,
    ast.Is: ast.IsNot,
    ast.IsNot: ast.Is,
    ast.In: ast.NotIn,
    ast.NotIn: ast.In,
}


def _python_bug_sites(tree: ast.AST) -> dict[str, list[tuple[str, ast.AST, object]]]:
    found: dict[str, list[tuple[str, ast.AST, object]]] = {
        "off_by_one": [],
        "flipped_equality": [],
        "swapped_plus_minus": [],
        "swapped_and_or": [],
        "wrong_index": [],
        "removed_guard": [],
    }
    for node in ast.walk(tree):
        if isinstance(node, ast.Compare):
            for i, op in enumerate(node.ops):
                kind = (
                    "off_by_one"
                    if isinstance(op, ast.Lt | ast.LtE | ast.Gt | ast.GtE)
                    else "flipped_equality"
                )
                if type(op) in _PY_COMPARE_SWAP:
                    found[kind].append(("compare", node, i))
        elif isinstance(node, ast.BinOp) and isinstance(node.op, ast.Add | ast.Sub):
            found["swapped_plus_minus"].append(("binop", node, None))
        elif isinstance(node, ast.BoolOp):
            found["swapped_and_or"].append(("boolop", node, None))
        elif isinstance(node, ast.Subscript) and isinstance(node.slice, ast.Name):
            found["wrong_index"].append(("subscript", node, None))
        for field in ("body", "orelse", "finalbody"):
            stmts = getattr(node, field, None)
            if not isinstance(stmts, list):
                continue
            for j, stmt in enumerate(stmts):
                if (
                    isinstance(stmt, ast.If)
                    and not stmt.orelse
                    and len(stmt.body) == 1
                    and isinstance(stmt.body[0], ast.Return | ast.Raise | ast.Continue | ast.Break)
                ):
                    found["removed_guard"].append(("drop", node, (field, j)))
    return {kind: sites for kind, sites in found.items() if sites}


def inject_python_bug(source: str, rng: random.Random) -> tuple[str, str, str] | None:
    """(clean text, buggy text, kind) for a Python function, both printed by ``ast.unparse``.

    The clean one is re-printed too, so layout cannot tell the two classes apart.
    """
    try:
        tree = ast.parse(source)
    except SyntaxError:
        return None
    clean = ast.unparse(tree)
    sites = _python_bug_sites(tree)
    if not sites:
        return None
    kind = rng.choice(sorted(sites))
    what, node, arg = rng.choice(sites[kind])
    if what == "compare":
        node.ops[arg] = _PY_COMPARE_SWAP[type(node.ops[arg])]()
    elif what == "binop":
        node.op = ast.Sub() if isinstance(node.op, ast.Add) else ast.Add()
    elif what == "boolop":
        node.op = ast.Or() if isinstance(node.op, ast.And) else ast.And()
    elif what == "subscript":
        node.slice = ast.BinOp(left=node.slice, op=ast.Add(), right=ast.Constant(1))
    else:
        field, j = arg
        stmts = getattr(node, field)
        del stmts[j]
        if not stmts:
            stmts.append(ast.Pass())
    buggy = ast.unparse(ast.fix_missing_locations(tree))
    if buggy == clean:
        return None
    return clean, buggy, kind


class _PythonRenamer(ast.NodeTransformer):
    def __init__(self, mapping: dict[str, str]) -> None:
        self.mapping = mapping

    def visit_Name(self, node: ast.Name) -> ast.Name:
        node.id = self.mapping.get(node.id, node.id)
        return node

    def visit_arg(self, node: ast.arg) -> ast.arg:
        node.arg = self.mapping.get(node.arg, node.arg)
        return node


def python_rename_and_relayout(source: str, rng: random.Random) -> str | None:
    """A type-2 clone of a Python function: parameters and assigned locals renamed, printed by ``ast.unparse``.

    None when the source is not one function or has nothing to rename.
    """
    try:
        tree = ast.parse(source)
    except SyntaxError:
        return None
    if not tree.body or not isinstance(tree.body[0], ast.FunctionDef | ast.AsyncFunctionDef):
        return None
    fn = tree.body[0]
    declared: list[str] = []
    shared: set[str] = {"self", "cls"}
    for node in ast.walk(fn):
        if isinstance(node, ast.Global | ast.Nonlocal):
            shared.update(node.names)
    for node in ast.walk(fn):
        name = None
        if isinstance(node, ast.arg):
            name = node.arg
        elif isinstance(node, ast.Name) and isinstance(node.ctx, ast.Store):
            name = node.id
        if name and name not in shared and name not in declared:
            declared.append(name)
    taken = {n.id for n in ast.walk(fn) if isinstance(n, ast.Name)} | {
        n.arg for n in ast.walk(fn) if isinstance(n, ast.arg)
    }
    if not declared:
        return None  # nothing to rename: the copy would differ from the original by layout alone
    mapping = fresh_names(declared, taken, rng)
    return ast.unparse(_PythonRenamer(mapping).visit(tree)) + "\n"
