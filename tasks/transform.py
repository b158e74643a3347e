"""Edits that turn real functions into task samples: injected bugs (defect) and renamed, re-laid-out copies (clone).

C and Java are edited on the text, with sites found on the masked copy (see ``tasks.extract.mask``) so nothing
inside a string or comment is touched; Python is edited on its AST and printed back with ``ast.unparse``.
Every choice goes through the ``random.Random`` passed in, so a build is reproducible.
"""

from __future__ import annotations

import ast
import random
import re
from dataclasses import dataclass

from tasks.extract import C_KEYWORDS, JAVA_KEYWORDS, mask, match_brace

# ---------------------------------------------------------------------------------------------- bug injection


@dataclass(frozen=True)
class Edit:
    start: int
    end: int
    replacement: str


def apply_edit(text: str, edit: Edit) -> str:
    return text[: edit.start] + edit.replacement + text[edit.end :]


_STATEMENT_STARTS = ";{}:"
# Words after which an identifier or sign is not part of a declaration or a binary expression.
_STATEMENT_WORDS = frozenset(
    "return case goto else sizeof new throw do typedef instanceof assert yield import package default".split()
)
_GUARD_EXITS = re.compile(r"\s*(?:return\b|goto\b|break\b|continue\b|throw\b)")
_FREE_CALLS_C = re.compile(
    r"\b(?:free|PyMem_Free|PyMem_RawFree|PyMem_DEL|PyObject_Free|PyObject_GC_Del|Py_DECREF|Py_XDECREF|Py_CLEAR"
    r"|fclose|close|munmap|g_free|sqlite3_free)\s*\("
)
_FREE_CALLS_JAVA = re.compile(r"\b[A-Za-z_][\w.]*\.(?:close|release|unlock|dispose)\s*\(\s*\)")
_TYPEISH_BEFORE = re.compile(
    r"(?:\b(?:int|char|long|short|float|double|unsigned|signed|void|size_t|\w+_t|[A-Z]\w*)\s*\**\s*\w+\s*|"
    r"\bnew\s+[\w.<>]+\s*)$"
)


def _prev_nonspace(masked: str, pos: int) -> str:
    i = pos - 1
    while i >= 0 and masked[i].isspace():
        i -= 1
    return masked[i] if i >= 0 else ""


def _next_nonspace_index(masked: str, pos: int) -> int:
    i = pos
    while i < len(masked) and masked[i].isspace():
        i += 1
    return i


def _match_paren(masked: str, open_pos: int) -> int | None:
    depth = 0
    for i in range(open_pos, len(masked)):
        if masked[i] == "(":
            depth += 1
        elif masked[i] == ")":
            depth -= 1
            if depth == 0:
                return i
    return None


def _whole_lines(text: str, start: int, end: int) -> tuple[int, int]:
    """Widen [start, end) to whole lines when it is alone on them, so a removal leaves no blank line."""
    line_start = text.rfind("\n", 0, start) + 1
    line_end = text.find("\n", end)
    line_end = len(text) if line_end == -1 else line_end
    if text[line_start:start].strip() or text[end:line_end].strip():
        return start, end
    return line_start, min(len(text), line_end + 1)


def _guard_sites(text: str, masked: str) -> list[Edit]:
    """``if (cond) return ...;`` (or goto/break/continue/throw, or a small braced block ending so) removed."""
    sites: list[Edit] = []
    for m in re.finditer(r"\bif\s*\(", masked):
        if _prev_nonspace(masked, m.start()) not in _STATEMENT_STARTS:
            continue
        close = _match_paren(masked, m.end() - 1)
        if close is None:
            continue
        body = _next_nonspace_index(masked, close + 1)
        if body >= len(masked):
            continue
        if masked[body] == "{":
            end_brace = match_brace(masked, body)
            if end_brace is None:
                continue
            inner = masked[body + 1 : end_brace]
            statements = [s for s in inner.split(";") if s.strip()]
            if (
                "{" in inner
                or len(statements) > 2
                or not statements
                or not _GUARD_EXITS.match(statements[-1])
            ):
                continue
            end = end_brace + 1
        else:
            if not _GUARD_EXITS.match(masked, body):
                continue
            semi = masked.find(";", body)
            if semi == -1 or "{" in masked[body:semi]:
                continue
            end = semi + 1
        after = _next_nonspace_index(masked, end)
        if masked.startswith("else", after):
            continue
        start, stop = _whole_lines(text, m.start(), end)
        sites.append(Edit(start, stop, ""))
    return sites


def _release_sites(text: str, masked: str, language: str) -> list[Edit]:
    """A statement that frees or closes something, removed (a leak or a double use later)."""
    sites: list[Edit] = []
    pattern = _FREE_CALLS_C if language == "c" else _FREE_CALLS_JAVA
    for m in pattern.finditer(masked):
        if _prev_nonspace(masked, m.start()) not in _STATEMENT_STARTS:
            continue
        if language == "c":
            close = _match_paren(masked, m.end() - 1)
            if close is None:
                continue
        else:
            close = m.end() - 1
        semi = _next_nonspace_index(masked, close + 1)
        if semi >= len(masked) or masked[semi] != ";":
            continue
        start, stop = _whole_lines(text, m.start(), semi + 1)
        sites.append(Edit(start, stop, ""))
    return sites


def _plus_minus_sites(masked: str) -> list[Edit]:
    sites: list[Edit] = []
    for m in re.finditer(r"(?<=[\w\)\]])(\s*)([+-])(?![+\-=>])", masked):
        op_pos = m.start(2)
        if op_pos > 0 and masked[op_pos - 1] in "+-":
            continue
        word = re.search(r"[\w.]+$", masked[max(0, m.start() - 40) : m.start()])
        if word and word.group(0)[0].isdigit() and word.group(0)[-1] in "eEpP":
            continue  # an exponent such as 1e-5
        if word and word.group(0) in _STATEMENT_WORDS:
            continue  # `return -1` is a sign, not a subtraction
        nxt = _next_nonspace_index(masked, op_pos + 1)
        if nxt < len(masked) and masked[nxt] in "\"'":
            continue  # Java string concatenation: `-` would not compile at all
        sites.append(Edit(op_pos, op_pos + 1, "-" if m.group(2) == "+" else "+"))
    return sites


def _comparison_sites(masked: str) -> list[Edit]:
    sites: list[Edit] = []
    # A bare `<`/`>` only with spaces both sides: that leaves out generics, shifts, `->` and includes.
    for m in re.finditer(r"(?<=\s)([<>])(?=\s)", masked):
        sites.append(Edit(m.start(), m.end(), m.group(1) + "="))
    for m in re.finditer(r"(?<![<>=!-])([<>])=(?!=)", masked):
        sites.append(Edit(m.start(), m.end(), m.group(1)))
    return sites


def _index_sites(text: str, masked: str) -> list[Edit]:
    spaced = re.search(r"\w \+ \w", masked) is not None
    sites: list[Edit] = []
    for m in re.finditer(r"(?<=[\w\]\)])\[(\s*)([a-z_]\w*)(\s*)\]", masked):
        if m.group(2) in C_KEYWORDS or m.group(2) in JAVA_KEYWORDS:
            continue
        after = _next_nonspace_index(masked, m.end())
        if after < len(masked) and masked[after] == ";":
            continue  # most likely a declaration's size, not an access
        if _TYPEISH_BEFORE.search(masked[max(0, m.start() - 80) : m.start()]):
            continue
        name_end = m.end(2)
        sites.append(Edit(name_end, name_end, " + 1" if spaced else "+1"))
    return sites


def _logic_sites(masked: str) -> list[Edit]:
    return [
        Edit(m.start(), m.end(), "||" if m.group(0) == "&&" else "&&")
        for m in re.finditer(r"&&|\|\|", masked)
    ]


def _equality_sites(masked: str) -> list[Edit]:
    return [
        Edit(m.start(), m.end(), "!=" if m.group(0) == "==" else "==")
        for m in re.finditer(r"(?<![=!<>])(?:==|!=)(?!=)", masked)
    ]


def bug_sites(text: str, language: str) -> dict[str, list[Edit]]:
    """Every place a bug of each kind could go, for C or Java text (kinds with no site are left out)."""
    masked = mask(text, language)
    kinds = {
        "off_by_one": _comparison_sites(masked),
        "removed_guard": _guard_sites(text, masked),
        "dropped_release": _release_sites(text, masked, language),
        "swapped_plus_minus": _plus_minus_sites(masked),
        "wrong_index": _index_sites(text, masked),
        "swapped_and_or": _logic_sites(masked),
        "flipped_equality": _equality_sites(masked),
    }
    return {kind: sites for kind, sites in kinds.items() if sites}


def inject_bug(text: str, language: str, rng: random.Random) -> tuple[str, str] | None:
    """(buggy text, bug kind): a kind drawn uniformly among those with a site, then one site; None if none."""
    sites = bug_sites(text, language)
    if not sites:
        return None
    kind = rng.choice(sorted(sites))
    return apply_edit(text, rng.choice(sites[kind])), kind


# --------------------------------------------------------------------------------------------- Python bugs

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


# ------------------------------------------------------------------------------- renaming and re-layout

_NAME_POOL = (
    "value result item count index buffer node key entry temp data elem pos length acc cur next_item prev obj arg "
    "total size offset limit flag state target source dest output input handle ctx info label token part chunk "
    "step width height start stop first last left right head tail ptr ref slot bucket field name text line"
).split()

_TOKEN = re.compile(
    r'(?P<ws>\s+)|(?P<comment>//[^\n]*|/\*[\s\S]*?\*/)|(?P<str>"""[\s\S]*?"""|"(?:\\.|[^"\\\n])*"|'
    r"'(?:\\.|[^'\\\n])*')|(?P<num>(?:\d[\w.]*(?:[eEpP][+-]\d+)?[\w]*|\.\d[\w]*(?:[eE][+-]\d+)?))"
    r"|(?P<id>[A-Za-z_$][\w$]*)"
    r"|(?P<op>>>>=|<<=|>>=|>>>|\.\.\.|->|::|\+\+|--|&&|\|\||[=!<>+\-*/%&|^]=|<<|>>|\S)"
)
_PREPROCESSOR = re.compile(r"#(?:[^\n]*\\\n)*[^\n]*")
_BREAKERS = frozenset("(){}[];,.")


@dataclass(frozen=True)
class Token:
    kind: str  # id, num, str, op, pp (a C preprocessor line)
    text: str


def tokenize_braced(text: str, language: str) -> list[Token]:
    """C/Java tokens without comments or whitespace; a C preprocessor line stays one ``pp`` token."""
    tokens: list[Token] = []
    pos = 0
    at_line_start = True
    while pos < len(text):
        if language == "c" and at_line_start and text[pos] == "#":
            m = _PREPROCESSOR.match(text, pos)
            tokens.append(Token("pp", m.group(0)))
            pos = m.end()
            continue
        m = _TOKEN.match(text, pos)
        kind = m.lastgroup
        if kind == "ws":
            at_line_start = at_line_start or "\n" in m.group(0)
        else:
            at_line_start = False
            if kind != "comment":
                tokens.append(Token(kind, m.group(0)))
        pos = m.end()
    return tokens


def _declared_names(tokens: list[Token], language: str) -> list[str]:
    """Parameters and locals: an identifier right after a type (a word, ``*``, ``]`` or generic ``>``) and
    right before ``=``, ``;``, ``,``, ``)``, ``:`` or ``[``."""
    keywords = C_KEYWORDS if language == "c" else JAVA_KEYWORDS
    names: list[str] = []
    for i in range(1, len(tokens) - 1):
        tok, prev, nxt = tokens[i], tokens[i - 1], tokens[i + 1]
        if tok.kind != "id" or tok.text in keywords or nxt.text not in ("=", ";", ",", ")", ":", "["):
            continue
        if len(tok.text) > 1 and tok.text.isupper():
            continue  # a macro or constant, not a local
        declared = False
        if prev.kind == "id" and prev.text not in _STATEMENT_WORDS:
            declared = True
        elif prev.text in ("]", "..."):
            declared = True
        elif prev.text == "*" and language == "c":
            j = i - 1
            while j >= 0 and tokens[j].text == "*":
                j -= 1
            type_words = 0
            while j >= 0 and tokens[j].kind == "id" and tokens[j].text not in _STATEMENT_WORDS:
                type_words += 1
                j -= 1
            declared = type_words > 0 and (j < 0 or tokens[j].text in ";{}(,")
        elif prev.text in (">", ">>", ">>>") and language == "java":
            # Only a generic type's closing `>` (walk back to its `<`, which follows a capitalised type name),
            # not the comparison in `a > b)`.
            depth, j = 0, i - 1
            while j >= 0:
                t = tokens[j].text
                if t in (">", ">>", ">>>"):
                    depth += len(t)
                elif t == "<":
                    depth -= 1
                    if depth == 0:
                        break
                elif not (tokens[j].kind == "id" or t in (",", "?", ".", "[", "]", "&")):
                    break
                j -= 1
            declared = (
                depth == 0
                and j > 0
                and tokens[j].text == "<"
                and tokens[j - 1].kind == "id"
                and tokens[j - 1].text[0].isupper()
            )
        if declared and tok.text not in names:
            names.append(tok.text)
    return names


def _fresh_names(old: list[str], taken: set[str], rng: random.Random) -> dict[str, str]:
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


_NO_SPACE_BEFORE = frozenset(") ] , ; . -> ::".split())
_NO_SPACE_AFTER = frozenset("( [ . -> :: @ ! ~".split())
_SPACE_BEFORE_PAREN = C_KEYWORDS | JAVA_KEYWORDS


def _space_between(prev: Token, tok: Token, compact: bool) -> bool:
    # Two operators side by side keep their space whatever the style: `a + ++i` printed as `a +++i` would lex
    # differently.
    if prev.kind == "op" and tok.kind == "op" and prev.text not in _BREAKERS and tok.text not in _BREAKERS:
        return True
    if compact:
        # Words need a space between them; a word next to an operator or bracket does not.
        return prev.kind != "op" and tok.kind != "op"
    if tok.text in _NO_SPACE_BEFORE or prev.text in _NO_SPACE_AFTER:
        return False
    if tok.text in ("(", "[") and prev.text not in _SPACE_BEFORE_PAREN:
        return prev.kind == "op" and prev.text not in (")", "]", ">")
    if tok.text in ("++", "--") and (prev.kind == "id" or prev.text in (")", "]")):
        return False
    return True


def _layout(tokens: list[Token], compact: bool) -> str:
    """Print tokens in one of two styles: K&R braces, tabs and no optional spaces; or Allman braces, two-space
    indents and spaces around operators. Indentation follows the braces."""
    indent_unit = "\t" if compact else "  "
    lines: list[str] = []
    line: list[str] = []
    depth = 0
    paren = 0
    prev: Token | None = None

    def flush() -> None:
        nonlocal line
        if line:
            lines.append(indent_unit * depth + "".join(line))
        line = []

    for tok in tokens:
        if tok.kind == "pp":
            flush()
            lines.append(tok.text)
            prev = None
            continue
        if tok.text == "}":
            flush()
            depth = max(0, depth - 1)
        if (
            tok.text == "{"
            and not compact
            and paren == 0
            and prev is not None
            and (prev.kind == "id" or prev.text == ")")
        ):
            flush()
        if line and prev is not None and _space_between(prev, tok, compact):
            line.append(" ")
        line.append(tok.text)
        if tok.text in ("(", "["):
            paren += 1
        elif tok.text in (")", "]"):
            paren = max(0, paren - 1)
        if tok.text == "{":
            flush()
            depth += 1
        elif tok.text == "}" or (tok.text == ";" and paren == 0):
            flush()
        prev = tok
    flush()
    return "\n".join(lines) + "\n"


def declared_names(text: str, language: str) -> list[str]:
    """The parameters and locals of a C or Java function, as ``rename_and_relayout`` finds them."""
    return _declared_names(tokenize_braced(text, language), language)


def rename_and_relayout(text: str, language: str, rng: random.Random) -> str:
    """A type-2 clone of a C or Java function: parameters and locals renamed, comments dropped, layout changed."""
    tokens = tokenize_braced(text, language)
    names = _declared_names(tokens, language)
    taken = {t.text for t in tokens if t.kind == "id"}
    mapping = _fresh_names(names, taken, rng)
    renamed: list[Token] = []
    for i, tok in enumerate(tokens):
        prev = tokens[i - 1].text if i else ""
        nxt = tokens[i + 1].text if i + 1 < len(tokens) else ""
        # `obj.name`/`p->name` are fields, and in Java `name(` is a method call: neither is the local.
        if (
            tok.kind == "id"
            and tok.text in mapping
            and prev not in (".", "->", "::")
            and not (language == "java" and nxt == "(")
        ):
            renamed.append(Token("id", mapping[tok.text]))
        else:
            renamed.append(tok)
    return _layout(renamed, compact=rng.random() < 0.5)


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
    mapping = _fresh_names(declared, taken, rng)
    return ast.unparse(_PythonRenamer(mapping).visit(tree)) + "\n"
