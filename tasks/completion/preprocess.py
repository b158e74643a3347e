"""Python source -> CodeXGLUE's token-level py150 text (``<s> tok tok <EOL> ... </s>``).

Our own code, written to reproduce ``Code-Code/CodeCompletion-token/dataset/py150/preprocess.py`` of
microsoft/CodeXGLUE as it stands since 2022-03-01 (qualifier regex ``^[a-zA-Z]+``; the literal lists of
2021-07-30, shipped beside this file as ``literals.json``, MIT-licensed data of Microsoft). Rules, as theirs:

* ``tokenize`` over the UTF-8 bytes; every token value has its whitespace runs collapsed to one space;
* strings become ``<qualifier><quote><STR_LIT><quote>``, or ``<STR_LIT:body>`` when the body (spaces and commas
  written ``U+0020``/``U+002C``) is one of the 200 kept strings; docstrings included;
* numbers become ``<NUM_LIT>``, or ``<NUM_LIT:v>`` for the 30 kept numbers;
* NEWLINE/NL become one ``<EOL>`` (never two in a row; none first or last); comments, INDENT, DEDENT (empty),
  ENCODING and ENDMARKER are dropped;
* ``<s>`` and ``</s>`` around the file; a file that fails to tokenize is ``<s> </s>`` (theirs catches every
  exception).

Python-version notes (why :func:`code_tokens` differs from a bare copy of their loop):

* Python >= 3.12 splits f-strings into FSTRING_START/MIDDLE/END plus the tokens of each ``{...}``; their loop would
  leak those verbatim. We fold the whole f-string back into one STRING token (its exact source text), which is what
  Python <= 3.11 yields, so ``f"..."`` still becomes ``f"<STR_LIT>"`` on every version (same for 3.14 t-strings).
* ``strict=True`` (the offline proxy) rejects a file when the tokenizer reports an ERRORTOKEN: 3.11's pure-Python
  tokenizer emits those (e.g. for a stray ``$`` or ``?``) where 3.12's C tokenizer raises, so only files both
  accept get through and the output does not depend on the version. ``strict=False`` (py150 as CodeXGLUE ran it)
  keeps ERRORTOKEN values as tokens the way theirs did. Python 2 code (most of py150) tokenizes on <= 3.11 but
  often fails on >= 3.12 (``0777``, ``10L``), so prepare py150 on Python <= 3.11 to match the official files.
"""

from __future__ import annotations

import io
import json
import re
import token as token_module
import tokenize
from collections.abc import Iterable, Iterator
from functools import cache
from pathlib import Path

LITERALS_PATH = Path(__file__).with_name("literals.json")
BOS, EOS, EOL, PAD = "<s>", "</s>", "<EOL>", "<pad>"
UNK = "<|UNKNOWN|>"  # run_lm.py's unk_token
PLACEHOLDERS = ("<STR_LIT>", "<NUM_LIT>", "<CHAR_LIT>")
_QUALIFIER = re.compile(r"^[a-zA-Z]+")
_QUOTES = ("'''", '"""', "'", '"')
_SPECIAL_CHARS = {" ": "U+0020", ",": "U+002C"}
_DROPPED = {tokenize.COMMENT, tokenize.INDENT, tokenize.ENCODING, tokenize.ENDMARKER}
# 3.12 adds FSTRING_*, 3.14 TSTRING_*; absent names are simply not folded (getattr keeps 3.10/3.11 working).
_FOLD_STARTS = {
    getattr(token_module, n) for n in ("FSTRING_START", "TSTRING_START") if hasattr(token_module, n)
}
_FOLD_ENDS = {getattr(token_module, n) for n in ("FSTRING_END", "TSTRING_END") if hasattr(token_module, n)}


class PreprocessError(ValueError):
    """The file cannot be turned into tokens (tokenizer error, or an ERRORTOKEN under ``strict``)."""


@cache
def literals() -> dict[str, tuple[str, ...]]:
    """CodeXGLUE's kept literals: ``{"str": 200 strings, "num": 30 numbers, "char": ()}`` in their file order."""
    raw = json.loads(LITERALS_PATH.read_text(encoding="utf-8"))
    return {k: tuple(raw.get(k, ())) for k in ("str", "num", "char")}


@cache
def _kept() -> tuple[frozenset[str], frozenset[str]]:
    lits = literals()
    return frozenset(lits["str"]), frozenset(lits["num"])


def special_tokens() -> list[str]:
    """The added tokens of CodeXGLUE's ``run_lm.py`` (``get_special_tokens``), in their order."""
    lits = literals()
    return [
        *PLACEHOLDERS,
        *(f"<STR_LIT:{v}>" for v in lits["str"]),
        *(f"<NUM_LIT:{v}>" for v in lits["num"]),
        *(f"<CHAR_LIT:{v}>" for v in lits["char"]),
    ]


def process_string(tok: str) -> str:
    """One STRING token (whitespace already collapsed) -> its placeholder form."""
    match = _QUALIFIER.search(tok)
    qualifier = match[0] if match else ""
    body = _QUALIFIER.sub("", tok)
    start = end = ""
    for q in _QUOTES:
        if body.startswith(q):
            start, body = q, body[len(q) :]
            if body.endswith(q):
                end, body = q, body[: -len(q)]
            break
    for ch, code in _SPECIAL_CHARS.items():
        body = body.replace(ch, code)
    kept_str, _ = _kept()
    inner = f"<STR_LIT:{body}>" if body in kept_str else "<STR_LIT>"
    return f"{qualifier}{start}{inner}{end}"


def process_number(tok: str) -> str:
    _, kept_num = _kept()
    return f"<NUM_LIT:{tok}>" if tok in kept_num else "<NUM_LIT>"


def _source_slice(lines: list[str], start: tuple[int, int], end: tuple[int, int]) -> str:
    (r0, c0), (r1, c1) = start, end
    if r0 == r1:
        return lines[r0 - 1][c0:c1]
    return lines[r0 - 1][c0:] + "".join(lines[r0 : r1 - 1]) + lines[r1 - 1][:c1]


def fold_fstrings(
    tokens: Iterable[tokenize.TokenInfo],
    lines: list[str],
    starts: frozenset[int] = _FOLD_STARTS,
    ends: frozenset[int] = _FOLD_ENDS,
) -> Iterator[tuple[int, str]]:
    """(type, value) pairs with every 3.12+ f-string (nested ones too) folded into one STRING token."""
    depth, first, pieces = 0, None, []
    for tok in tokens:
        if tok.type in starts:
            if depth == 0:
                first, pieces = tok, []
            depth += 1
        if depth:
            pieces.append(tok.string)
            if tok.type in ends:
                depth -= 1
                if depth == 0:
                    text = _source_slice(lines, first.start, tok.end)
                    # Columns are character offsets; should a version ever disagree, fall back to the pieces.
                    if not (text.startswith(first.string) and text.endswith(tok.string)):
                        text = "".join(pieces)
                    yield tokenize.STRING, text
            continue
        yield tok.type, tok.string


def normalise_newlines(code: str) -> str:
    """What their ``open(path).read()`` did to line ends (universal newlines)."""
    return code.replace("\r\n", "\n").replace("\r", "\n")


def code_tokens(code: str, *, strict: bool = False) -> list[str]:
    """The code tokens of one file, without ``<s>``/``</s>``; PreprocessError when it cannot be tokenized."""
    code = normalise_newlines(code)
    lines = code.splitlines(keepends=True)
    out: list[str] = []
    prev_eol = False
    try:
        stream = tokenize.tokenize(io.BytesIO(code.encode("utf-8")).readline)
        for toknum, raw in fold_fstrings(stream, lines):
            if strict and toknum == tokenize.ERRORTOKEN:
                raise PreprocessError(f"error token {raw!r}")
            tokval = " ".join(raw.split())
            if toknum == tokenize.STRING:
                out.append(process_string(tokval))
                prev_eol = False
            elif toknum == tokenize.NUMBER:
                out.append(process_number(tokval))
                prev_eol = False
            elif toknum in (tokenize.NEWLINE, tokenize.NL):
                if not prev_eol:
                    out.append(EOL)
                    prev_eol = True
            elif toknum in _DROPPED or not tokval:
                continue
            else:
                out.append(tokval)
                prev_eol = False
    except PreprocessError:
        raise
    except Exception as exc:  # theirs: any exception -> empty file; ours says why
        raise PreprocessError(f"{type(exc).__name__}: {exc}") from None
    if out and out[0] == EOL:
        out = out[1:]
    if out and out[-1] == EOL:
        out = out[:-1]
    if not out:
        # Their loop indexes out_tokens[0], so an empty file also ended as "<s> </s>".
        raise PreprocessError("no code tokens")
    return out


def preprocess_file(code: str, *, strict: bool = False) -> str:
    """One file as CodeXGLUE's train/dev/test.txt line: ``"<s> ... </s>"`` (``"<s> </s>"`` when it fails)."""
    try:
        toks = code_tokens(code, strict=strict)
    except PreprocessError:
        if strict:
            raise
        toks = []
    return " ".join([BOS, *toks, EOS])
