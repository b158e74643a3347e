"""tasks/extract.py and tasks/transform.py on tree-sitter: per language, every function extracted from real
source on this machine parses back without errors, its edits parse too, and a renamed clone keeps the syntax
tree's shape (the sequence of node types) of its original."""

from __future__ import annotations

import ast
import random
import zipfile
from collections.abc import Iterator
from pathlib import Path

import pytest
import tree_sitter

from tasks import extract_stats
from tasks import local_sources as bl
from tasks.extract import Function, extract_functions, parse_function, parses_cleanly
from tasks.transform import bug_sites, declared_names, inject_bug, rename_and_relayout, tokenize
from tasks.transform_python import inject_python_bug, python_rename_and_relayout

# Per language: enough for a few hundred functions, seconds on one core (most C files are headers with none).
FILES = {"c": 500, "java": 40, "python": 40}
COMMENTS = ("comment", "line_comment", "block_comment")


def _texts(language: str) -> Iterator[tuple[str, str]]:
    """(path, text) of the first ``FILES[language]`` files the builder would read for ``language`` with seed 0."""
    sources = bl.Sources.discover()
    if language == "c":
        paths = bl._shuffled(list(sources.c_files), 0, "c")[: FILES[language]]
        yield from ((str(p), t) for p in paths if (t := bl.read_text(p)) is not None)
    elif language == "java":
        assert sources.java_zips, "this test reads the JDK's lib/src.zip, as the clone task does"
        with zipfile.ZipFile(sources.java_zips[0]) as z:
            names = bl._shuffled(sorted(n for n in z.namelist() if n.endswith(".java")), 0, "java")[
                : FILES[language]
            ]
            yield from ((n, bl.decode_source(z.read(n))) for n in names)
    else:
        for _, p in bl.python_files(sources, 0)[: FILES[language]]:
            if (t := bl.read_text(p)) is not None:
                yield str(p), t


def _functions(language: str) -> list[Function]:
    found = [f for path, text in _texts(language) for f in extract_functions(text, language, path, path)]
    assert len(found) >= 20, (language, len(found))
    return found


def _shape(text: str, language: str) -> list[str]:
    """Named node types in document order, comments left out."""
    _, tree = parse_function(text, language)
    out: list[str] = []
    stack = [tree.root_node]
    while stack:
        node: tree_sitter.Node = stack.pop()
        if node.type in COMMENTS:
            continue
        if node.is_named:
            out.append(node.type)
        stack.extend(reversed(node.children))
    return out


@pytest.mark.parametrize("language", ["c", "java", "python"])
def test_every_extracted_function_parses_back(language: str) -> None:
    for fn in _functions(language):
        assert parses_cleanly(fn.text, language), (fn.path, fn.line)
        assert 3 <= fn.text.count("\n") + 1 <= 80
        assert fn.key.endswith(fn.name)
        if language == "python":
            assert isinstance(ast.parse(fn.text).body[0], ast.FunctionDef | ast.AsyncFunctionDef)


@pytest.mark.parametrize("language", ["c", "java"])
def test_bugs_parse_and_clones_keep_the_tree_shape(language: str) -> None:
    renamed = 0
    kinds: set[str] = set()
    for i, fn in enumerate(_functions(language)[:300]):
        rng = random.Random(i)
        bug = inject_bug(fn.text, language, rng)
        if bug is not None:
            buggy, kind = bug
            kinds.add(kind)
            assert buggy != fn.text and parses_cleanly(buggy, language), (fn.path, fn.line, kind)
        names = declared_names(fn.text, language)
        copy = rename_and_relayout(fn.text, language, rng)
        assert parses_cleanly(copy, language), (fn.path, fn.line, copy)
        assert _shape(copy, language) == _shape(fn.text, language), (fn.path, fn.line)
        before, after = tokenize(fn.text, language), tokenize(copy, language)
        changed = {(a.text, b.text) for a, b in zip(before, after, strict=True) if a.text != b.text}
        # Only declared names change, each to one new name, and none of them is left as it was.
        assert {a for a, _ in changed} <= set(names)
        assert len({a for a, _ in changed}) == len(changed)
        renamed += bool(changed)
    assert renamed >= 20 and len(kinds) >= 4, (renamed, kinds)


def test_python_clones_keep_the_ast_shape_and_bugs_parse() -> None:
    """Python's edits run on ``ast`` (see tasks/transform_python.py), so its shape is compared on ``ast``."""
    renamed = 0
    for i, fn in enumerate(_functions("python")[:200]):
        copy = python_rename_and_relayout(fn.text, random.Random(i))
        bug = inject_python_bug(fn.text, random.Random(i))
        if bug is not None:
            assert parses_cleanly(bug[1], "python")
        if copy is None:
            continue
        renamed += 1
        assert parses_cleanly(copy, "python")
        shape = [type(n).__name__ for n in ast.walk(ast.parse(fn.text))]
        assert [type(n).__name__ for n in ast.walk(ast.parse(copy))] == shape


JAVA = """class A {
    private int count;
    A(int count) {
        this.count = count;
    }
    int add(int[] xs, java.util.List<String> names) {
        int total = count;
        for (int i = 0; i < xs.length; i++) { total += xs[i]; }
        names.forEach(n -> System.out.println(n + total));
        try (java.io.Reader in = open()) { in.close(); } catch (java.io.IOException e) { return -1; }
        if (names == null) return 0;
        return total - count();
    }
}
"""


def test_java_renames_only_locals_and_finds_syntax_sites() -> None:
    ctor, add = extract_functions(JAVA, "java", "A.java", "A")
    assert ctor.name == "A" and declared_names(ctor.text, "java") == ["count"]
    copy = rename_and_relayout(ctor.text, "java", random.Random(0))
    texts = [t.text for t in tokenize(copy, "java")]
    new = texts[3]
    assert new != "count" and texts == [
        "A",
        "(",
        "int",
        new,
        ")",
        "{",
        "this",
        ".",
        "count",
        "=",
        new,
        ";",
        "}",
    ]
    assert declared_names(add.text, "java") == ["xs", "names", "total", "i", "n", "in", "e"]
    copy = rename_and_relayout(add.text, "java", random.Random(1))
    words = {t.text for t in tokenize(copy, "java")}
    # The field `count`, the method `count()`, `length` and `close` keep their names; the locals do not.
    assert {"count", "length", "close", "forEach", "println"} <= words
    assert not {"xs", "names", "total", "in", "e"} & words
    sites = bug_sites(add.text, "java")
    assert set(sites) == {
        "off_by_one",
        "flipped_equality",
        "swapped_plus_minus",
        "removed_guard",
        "wrong_index",
        "dropped_release",
    }
    # `n + total` is string concatenation only when a side is a literal: here both sides may be numbers.
    assert len(sites["swapped_plus_minus"]) == 2


def test_c_preprocessor_lines_and_macros_are_kept() -> None:
    src = "int f(int n)\n{\n    int k = 0;\n#ifdef DEBUG\n    k = n;\n#endif\n    free(buf);\n    return k;\n}\n"
    assert parses_cleanly(src, "c")
    assert [t.text for t in tokenize(src, "c") if t.kind == "pp"] == ["#ifdef DEBUG", "#endif"]
    copy = rename_and_relayout(src, "c", random.Random(0))
    assert (
        "#ifdef DEBUG\n" in copy
        and "free(" in copy.replace(" ", "")
        and _shape(copy, "c") == _shape(src, "c")
    )
    assert "dropped_release" in bug_sites(src, "c")
    # What tree-sitter cannot read is not extracted: an unknown macro before the return type.
    assert extract_functions("static MY_INLINE int g(int a)\n{\n    return a;\n}\n", "c", "m.c", "m") == []


def test_extract_stats_counts_functions_per_tree(tmp_path: Path) -> None:
    good = "static int twice(int a)\n{\n    return a + a;\n}\n"
    unreadable = "static MY_INLINE int g(int a)\n{\n    return a;\n}\n"
    (tmp_path / "a.c").write_text(good + unreadable, encoding="utf-8")
    (tmp_path / "b.c").write_text(good.replace("twice", "thrice"), encoding="utf-8")
    sources = bl.Sources(c_files=(tmp_path / "a.c", tmp_path / "b.c"))
    row = extract_stats.measure("c", sources)
    assert {k: row[k] for k in ("files", "functions", "parse_clean", "share_clean")} == {
        "files": 2,
        "functions": 2,
        "parse_clean": 2,
        "share_clean": 1.0,
    }


def test_compact_layout_keeps_binary_plus_before_a_number() -> None:
    # Printed as `sizeof(long)+2`, tree-sitter would read `+2` as a signed literal and the sizeof as a cast.
    src = "int f(int n)\n{\n    long a[N / sizeof(long) + 2];\n    return n - 1 + a[0];\n}\n"
    layouts = set()
    for seed in range(6):
        copy = rename_and_relayout(src, "c", random.Random(seed))
        layouts.add("\t" in copy)
        assert _shape(copy, "c") == _shape(src, "c"), copy
    assert layouts == {True, False}  # both styles were drawn
