"""Print a function's tokens in a new layout, for the clone task's rewritten copies.

Two styles, drawn per copy: K&R braces, tabs and no optional spaces (compact); or Allman braces, two-space
indents and spaces around operators. Indentation follows the braces; a C preprocessor line is printed alone
on its line, as it was.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Token:
    # id (an identifier node), kw (a keyword), word (other named leaves: types, numbers, true/null),
    # str (a string or character literal), op (punctuation and operators), pp (a C preprocessor line)
    kind: str
    text: str


_BREAKERS = frozenset("(){}[];,.")
_NO_SPACE_BEFORE = frozenset(") ] , ; . -> ::".split())
_NO_SPACE_AFTER = frozenset("( [ . -> :: @ ! ~".split())


def _space_between(prev: Token, tok: Token, compact: bool) -> bool:
    # Two operators side by side keep their space whatever the style: `a + ++i` printed as `a +++i` would lex
    # differently.
    if prev.kind == "op" and tok.kind == "op" and prev.text not in _BREAKERS and tok.text not in _BREAKERS:
        return True
    if prev.text in ("+", "-") and tok.text[:1].isdigit():
        # tree-sitter's C grammar reads `+2` as a signed literal, so `sizeof(long)+2` would become a cast.
        return True
    if compact:
        # Words need a space between them; a word next to an operator or bracket does not.
        return prev.kind != "op" and tok.kind != "op"
    if tok.text in _NO_SPACE_BEFORE or prev.text in _NO_SPACE_AFTER:
        return False
    if tok.text in ("(", "[") and prev.kind != "kw":
        return prev.kind == "op" and prev.text not in (")", "]", ">")
    if tok.text in ("++", "--") and (prev.kind in ("id", "word") or prev.text in (")", "]")):
        return False
    return True


def layout(tokens: list[Token], compact: bool) -> str:
    """The tokens printed in the compact or the spaced style (see the module docstring), ending in a newline."""
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
            and (prev.kind in ("id", "kw", "word") or prev.text == ")")
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
