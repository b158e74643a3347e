"""Pull whole functions out of C, Java and Python source text, for the local data builder.

C and Java are cut out by brace matching on a *masked* copy of the text (comments, string and character
literals and, for C, preprocessor lines blanked to spaces with the newlines kept), so offsets in the mask are
offsets in the original and a brace inside a string or comment never counts. This is rough on purpose (no real
parser for either language is installed); the length filter and the C++ filter drop what it gets wrong.
Python functions come from ``ast``: the text from the ``def`` line to the node's end, as
``ast.get_source_segment`` gives it, with the ``def`` line's indentation removed.
"""

from __future__ import annotations

import ast
import re
import warnings
from dataclasses import dataclass

MIN_LINES = 3
MAX_LINES = 80

# Java text blocks first: a plain string pattern would read `"""` as an empty string and an opening quote.
_MASK_COMMON = r'"""[\s\S]*?"""|//[^\n]*|/\*[\s\S]*?\*/|"(?:\\.|[^"\\\n])*"|\'(?:\\.|[^\'\\\n])*\''
_MASK_C = re.compile(r"(?m:^[ \t]*#(?:[^\n]*\\\n)*[^\n]*)|" + _MASK_COMMON)
_MASK_JAVA = re.compile(_MASK_COMMON)

C_KEYWORDS = frozenset(
    "if else for while do switch case default return goto break continue sizeof typedef struct union enum "
    "static extern const volatile register inline auto signed unsigned void char short int long float double "
    "_Bool restrict __inline __inline__ __attribute__ __declspec defined".split()
)
JAVA_KEYWORDS = frozenset(
    "abstract assert boolean break byte case catch char class const continue default do double else enum "
    "extends final finally float for goto if implements import instanceof int interface long native new "
    "package private protected public return short static strictfp super switch synchronized this throw "
    "throws transient try void volatile while var yield record sealed permits non-sealed true false null".split()
)
# Words that only C++ has: a header function containing one is C++, not the C the defect task stands for.
_CPP_WORDS = frozenset(
    "template namespace class nullptr constexpr static_cast reinterpret_cast const_cast dynamic_cast operator "
    "decltype noexcept typename virtual std".split()
)
_CPP_REFERENCE = re.compile(r"&\s+[A-Za-z_]")  # `T& x`: a reference declarator
_CPP_GENERIC_CALL = re.compile(r"<\w+>\s*\(")  # `f<T>(`
_WORD = re.compile(r"[A-Za-z_]\w*")
_JAVA_ANNOTATION = re.compile(r"@[\w.]+(?:\s*\([^()]*\))?")
_C_PRELUDE = re.compile(r"^[\s\w\*]+$")
_JAVA_PRELUDE = re.compile(r"^[\s\w<>\[\],.?]+$")
_BRACES = re.compile(r"[{}]")
_LINE = re.compile(r"[^\n]*\n|[^\n]+\Z")
_BODY_OPEN_C = re.compile(r"\)\s*\{")
_BODY_OPEN_JAVA = re.compile(r"\)\s*(?:throws\s+[\w.<>,\s]+?)?\s*\{")


@dataclass(frozen=True)
class Function:
    """One function cut out of a file. ``key`` groups copies of the same function (it picks the split)."""

    text: str
    name: str
    path: str  # where it came from, for provenance (a file path, or `zip!member`)
    line: int  # 1-based line of its first line in that file
    key: str


def mask(text: str, language: str) -> str:
    """Same length as ``text``; comments/literals (and C preprocessor lines) become spaces, newlines kept.

    Quotes stay so a masked literal still reads as a literal (e.g. to skip ``"a" + b``).
    """
    pattern = _MASK_C if language == "c" else _MASK_JAVA

    def blank(m: re.Match[str]) -> str:
        s = m.group(0)
        if s[:1] in "\"'" and not s.startswith('"""'):
            return s[0] + re.sub(r"[^\n]", " ", s[1:-1]) + s[-1]
        return re.sub(r"[^\n]", " ", s)

    return pattern.sub(blank, text)


def looks_like_cpp(masked_code: str) -> bool:
    """True when masked code has a construct only C++ has (keywords, ``::``, references, ``f<T>(``)."""
    if "::" in masked_code or not _CPP_WORDS.isdisjoint(_WORD.findall(masked_code)):
        return True
    for m in _CPP_REFERENCE.finditer(masked_code):
        before = masked_code[m.start() - 1 : m.start()]
        if before.isalnum() or before == "_":
            return True
    for m in _CPP_GENERIC_CALL.finditer(masked_code):
        before = masked_code[m.start() - 1 : m.start()]
        if before.isalnum() or before == "_":
            return True
    return False


def match_brace(masked: str, open_pos: int) -> int | None:
    """Index of the ``}`` closing the ``{`` at ``open_pos``, or None when the file ends first."""
    depth = 0
    for m in _BRACES.finditer(masked, open_pos):
        depth += 1 if m.group(0) == "{" else -1
        if depth == 0:
            return m.start()
    return None


def _match_paren_back(masked: str, close_pos: int) -> int | None:
    depth = 0
    for i in range(close_pos, max(-1, close_pos - 4000), -1):
        ch = masked[i]
        if ch == ")":
            depth += 1
        elif ch == "(":
            depth -= 1
            if depth == 0:
                return i
        elif ch in "{};":
            return None
    return None


def _prelude_start(masked: str, name_start: int) -> int:
    """Start of the declaration: just after the previous ``;``, ``{`` or ``}`` (or the file start)."""
    cut = max(masked.rfind(ch, 0, name_start) for ch in ";{}")
    return cut + 1


def extract_braced_functions(text: str, language: str, path: str, key_prefix: str) -> list[Function]:
    """C or Java functions (methods, constructors) of ``MIN_LINES``..``MAX_LINES`` lines, in file order."""
    if language not in ("c", "java"):
        raise ValueError(f"extract_braced_functions: language must be 'c' or 'java', got {language!r}")
    masked = mask(text, language)
    keywords = C_KEYWORDS if language == "c" else JAVA_KEYWORDS
    body_open = _BODY_OPEN_C if language == "c" else _BODY_OPEN_JAVA
    out: list[Function] = []
    pos = 0
    # Line numbers are counted forward from the last function found: counting from the file start each
    # time is quadratic on the 2 MB generated C files.
    line_no, line_pos = 1, 0
    while True:
        m = body_open.search(masked, pos)
        if m is None:
            break
        brace = m.end() - 1
        pos = m.end()
        open_paren = _match_paren_back(masked, m.start())
        if open_paren is None:
            continue
        # Walked back by hand: slicing or regex-searching the prefix would make long files quadratic.
        name_end = open_paren
        while name_end > 0 and masked[name_end - 1].isspace():
            name_end -= 1
        name_start = name_end
        while name_start > 0 and (masked[name_start - 1].isalnum() or masked[name_start - 1] in "_$"):
            name_start -= 1
        name = masked[name_start:name_end]
        if not name or name[0].isdigit() or name in keywords:
            continue
        start = _prelude_start(masked, name_start)
        prelude = masked[start:name_start]
        if language == "java":
            prelude = _JAVA_ANNOTATION.sub(lambda a: " " * len(a.group(0)), prelude)
            words = set(re.findall(r"[A-Za-z_]\w*", prelude))
            if not _JAVA_PRELUDE.fullmatch(prelude) or words & {
                "new",
                "return",
                "else",
                "throw",
                "class",
                "interface",
                "enum",
                "record",
                "case",
            }:
                continue
        else:
            words = set(re.findall(r"[A-Za-z_]\w*", prelude))
            if (
                not prelude.strip()
                or not _C_PRELUDE.fullmatch(prelude)
                or words & {"return", "else", "typedef"}
            ):
                continue
        params = masked[open_paren + 1 : m.start()]
        if "=" in params or ";" in params:
            continue
        close = match_brace(masked, brace)
        if close is None:
            break
        # The masked prelude has comments (and Java's leading annotations) blanked, so its first non-space
        # character is where the declaration proper starts.
        first = start + len(prelude) - len(prelude.lstrip())
        fn_text = text[first : close + 1]
        pos = close + 1
        n_lines = fn_text.count("\n") + 1
        if not (MIN_LINES <= n_lines <= MAX_LINES):
            continue
        if language == "c" and looks_like_cpp(masked[first : close + 1]):
            continue
        line_no += text.count("\n", line_pos, first)
        line_pos = first
        out.append(Function(fn_text, name, path, line_no, f"{key_prefix}:{name}"))
    return out


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


def outer_functions(tree: ast.Module) -> list[tuple[str, ast.FunctionDef | ast.AsyncFunctionDef]]:
    """Module-level functions and methods of module-level classes (with qualnames), not nested ones.

    Nested functions stay inside their outer function, so every handler belongs to exactly one sample.
    """
    found: list[tuple[str, ast.FunctionDef | ast.AsyncFunctionDef]] = []

    def visit(body: list[ast.stmt], prefix: str) -> None:
        for node in body:
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                found.append((prefix + node.name, node))
            elif isinstance(node, ast.ClassDef):
                visit(node.body, f"{prefix}{node.name}.")

    visit(tree.body, "")
    return found


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


def extract_python_functions(text: str, path: str, key_prefix: str) -> list[Function]:
    """Python functions of ``MIN_LINES``..``MAX_LINES`` lines (outer ones only)."""
    tree = parse_python(text)
    if tree is None:
        return []
    lines = source_lines(text)
    out: list[Function] = []
    for qualname, node in outer_functions(tree):
        n_lines = node.end_lineno - node.lineno + 1
        if not (MIN_LINES <= n_lines <= MAX_LINES):
            continue
        src = python_function_source(lines, node)
        if parse_python(src) is None:
            continue
        out.append(Function(src, node.name, path, node.lineno, f"{key_prefix}:{qualname}"))
    return out
