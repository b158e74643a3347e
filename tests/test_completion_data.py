"""The completion task's data side: CodeXGLUE preprocessing, the offline proxy, the loaders (all fast, offline)."""

from __future__ import annotations

import json
import tokenize
from pathlib import Path

import pytest

from tasks.build_local import Sources, build_local
from tasks.build_local import main as build_local_main
from tasks.completion import codexglue_version, load_line_test, load_split
from tasks.completion.__main__ import main as cli_main
from tasks.completion.data import VERSIONS, CompletionDataError
from tasks.completion.preprocess import (
    PreprocessError,
    code_tokens,
    fold_fstrings,
    preprocess_file,
    special_tokens,
)
from tasks.completion.proxy import ProxySettings, build_completion_proxy

SOURCE = '''#!/usr/bin/env python
"""Doc string."""
import os


def f(x, y=3):  # comment
    s = 'utf-8' + rb"raw bytes" + ", "
    t = R"x" + f"{y}"
    return x[0] + 1.5 + 1 + 0x10
'''
# By hand from CodeXGLUE's rules: the docstring body "Doc string." is not a kept literal; 'utf-8', "x" and ", "
# (written U+002CU+0020) are; 3, 0 and 1 are kept numbers, 1.5 and 0x10 are not; the shebang comment's NL gives a
# leading <EOL> that is dropped, blank lines add no second <EOL>; qualifiers (rb, R, f) stay outside the quotes.
EXPECTED = (
    '<s> """<STR_LIT>""" <EOL> import os <EOL> def f ( x , y = <NUM_LIT:3> ) : <EOL> '
    's = \'<STR_LIT:utf-8>\' + rb"<STR_LIT>" + "<STR_LIT:U+002CU+0020>" <EOL> '
    't = R"<STR_LIT:x>" + f"<STR_LIT>" <EOL> '
    "return x [ <NUM_LIT:0> ] + <NUM_LIT> + <NUM_LIT:1> + <NUM_LIT> </s>"
)


def test_preprocess_follows_codexglue_rules() -> None:
    assert preprocess_file(SOURCE) == EXPECTED
    assert preprocess_file(SOURCE.replace("\n", "\r\n")) == EXPECTED
    # A file that fails to tokenize is "<s> </s>" as in theirs; strict mode (the proxy) says why instead.
    broken = "x = (\n"
    assert preprocess_file(broken) == "<s> </s>"
    assert preprocess_file("# only a comment\n") == "<s> </s>"
    with pytest.raises(PreprocessError):
        code_tokens(broken, strict=True)
    # 3.11's tokenizer emits an ERRORTOKEN for '$' where 3.12's raises: strict rejects it on both.
    assert "$" in preprocess_file("a = $b\n")
    with pytest.raises(PreprocessError, match="error token"):
        code_tokens("a = $b\n", strict=True)


def test_special_tokens_match_run_lm() -> None:
    toks = special_tokens()
    assert toks[:3] == ["<STR_LIT>", "<NUM_LIT>", "<CHAR_LIT>"]
    assert len(toks) == 3 + 200 + 30 and "<STR_LIT:__main__>" in toks and toks[-1] == "<NUM_LIT:0.>"


def _tok(kind: int, text: str, start: tuple[int, int], end: tuple[int, int], line: str) -> tokenize.TokenInfo:
    return tokenize.TokenInfo(kind, text, start, end, line)


def test_fstring_tokens_of_python_312_fold_into_one_string() -> None:
    # The token stream Python 3.12 gives for `x = f"a{f'{b}'}c"` (FSTRING_* types stood in by fake numbers, as
    # 3.11 has none): folding must return the f-string's source text as one STRING, which 3.11 yields natively.
    S, M, E = 1001, 1002, 1003
    line = "x = f\"a{f'{b}'}c\"\n"
    OP, NAME = tokenize.OP, tokenize.NAME
    stream = [
        _tok(NAME, "x", (1, 0), (1, 1), line),
        _tok(OP, "=", (1, 2), (1, 3), line),
        _tok(S, 'f"', (1, 4), (1, 6), line),
        _tok(M, "a", (1, 6), (1, 7), line),
        _tok(OP, "{", (1, 7), (1, 8), line),
        _tok(S, "f'", (1, 8), (1, 10), line),
        _tok(OP, "{", (1, 10), (1, 11), line),
        _tok(NAME, "b", (1, 11), (1, 12), line),
        _tok(OP, "}", (1, 12), (1, 13), line),
        _tok(E, "'", (1, 13), (1, 14), line),
        _tok(OP, "}", (1, 14), (1, 15), line),
        _tok(M, "c", (1, 15), (1, 16), line),
        _tok(E, '"', (1, 16), (1, 17), line),
        _tok(tokenize.NEWLINE, "\n", (1, 17), (1, 18), line),
    ]
    folded = list(fold_fstrings(stream, [line], frozenset({S}), frozenset({E})))
    assert folded == [(NAME, "x"), (OP, "="), (tokenize.STRING, "f\"a{f'{b}'}c\""), (tokenize.NEWLINE, "\n")]
    native = [(t.type, t.string) for t in tokenize.generate_tokens(iter([line]).__next__)][:4]
    if not hasattr(tokenize, "FSTRING_START"):  # Python <= 3.11: the native stream is the folded one
        assert native == folded


def _write_sources(root: Path, n: int = 160) -> None:
    for i in range(n):
        body = "\n".join(f"    v{j} = w{i} * {j} + f(x, '{i}-{j}')" for j in range(i % 7 + 2))
        (root / f"mod_{i:03d}.py").write_text(f"import os\n\n\ndef fn_{i}(x):\n{body}\n    return v0\n")
    # Duplicates: a byte copy in a subfolder, and a copy that differs only in comments and blank lines.
    (root / "sub").mkdir()
    (root / "sub" / "mod_000.py").write_bytes((root / "mod_000.py").read_bytes())
    (root / "mod_001_commented.py").write_text("# a comment\n" + (root / "mod_001.py").read_text() + "\n\n")
    (root / "broken.py").write_text("def broken(:\n")
    (root / "latin1.py").write_bytes("s = 'caf\xe9'\n".encode("latin-1"))


def test_proxy_is_deterministic_deduplicated_and_split_by_file(tmp_path: Path) -> None:
    src = tmp_path / "src"
    src.mkdir()
    _write_sources(src)
    settings = ProxySettings(max_mb=1.0, line_samples=40, seed=3)
    a = build_local(
        tmp_path / "a", tasks=["completion"], sources=Sources(python_roots=(src,)), completion=settings
    )
    # The same files seen through another root (another listing order, a root listed twice): same bytes.
    b_dir = tmp_path / "b" / "completion"
    build_completion_proxy([src / "sub", src, src], b_dir, settings)
    names = ["train.txt", "validation.txt", "test.txt", "line_test.json"]
    for name in names:
        assert (a["completion"] / name).read_bytes() == (b_dir / name).read_bytes(), name
    info = json.loads((a["completion"] / "version.json").read_text())
    assert info["codexglue_version"] == "local-proxy" and codexglue_version(a["completion"]) == "local-proxy"
    assert (
        info["files_duplicate_tokens"] == 1 and info["files_failed"] == 2
    )  # commented copy; broken + latin-1
    splits = {s: load_split(a["completion"], s) for s in ("train", "validation", "test")}
    assert load_split(a["completion"], "valid") == splits["validation"]
    everything = [t for s in splits.values() for t in s]
    assert len(everything) == len(set(everything)) == sum(info["counts"][s] for s in splits)
    assert all(splits[s] for s in splits) and len(everything) == 160  # every unique file once
    # Line-level samples: input + gt is a prefix of a test file that ends at a line end; gt non-empty.
    samples = load_line_test(a["completion"])
    assert len(samples) == 40 and [r["id"] for r in samples] == list(range(40))
    for r in samples:
        assert r["input"].startswith("<s>") and r["gt"] and "<EOL>" not in r["gt"] and "</s>" not in r["gt"]
        joined = f"{r['input']} {r['gt']} "
        assert any(
            (t + " ").startswith(joined) and t[len(joined) :].startswith(("<EOL>", "</s>"))
            for t in splits["test"]
        )
    # Another seed moves the cuts, not the files.
    c = build_completion_proxy([src], tmp_path / "c", ProxySettings(max_mb=1.0, line_samples=40, seed=4))
    assert (tmp_path / "c" / "test.txt").read_bytes() == (b_dir / "test.txt").read_bytes()
    assert load_line_test(tmp_path / "c") != samples and c["counts"]["line_test"] == 40


def test_loaders_fail_fast_with_one_line(tmp_path: Path) -> None:
    with pytest.raises(CompletionDataError) as err:
        load_split(tmp_path, "train")
    assert "\n" not in str(err.value) and "build_local --tasks completion" in str(err.value)
    assert VERSIONS["codexglue-2021"].line_test_url in str(err.value)
    with pytest.raises(ValueError, match="valid"):
        load_split(tmp_path, "dev2")
    (tmp_path / "dev.txt").write_text("<s> a <EOL> b </s>\n")  # CodeXGLUE's file name for validation
    assert load_split(tmp_path, "validation") == ["<s> a <EOL> b </s>"]
    (tmp_path / "test.txt").write_text("def f(): pass\n")
    with pytest.raises(CompletionDataError, match=r"test.txt:1: not a preprocessed file"):
        load_split(tmp_path, "test")
    (tmp_path / "line_test.json").write_text('{"input": "<s> x =", "gt": "<NUM_LIT:1>"}\n{"input": "<s>"}\n')
    with pytest.raises(CompletionDataError, match=r"line_test.json:2: needs string fields"):
        load_line_test(tmp_path)
    (tmp_path / "line_test.json").write_text('{"input": "<s> x =", "gt": "<NUM_LIT:1>"}\n')
    assert codexglue_version(tmp_path) == "codexglue-2021"
    (tmp_path / "line_test.json").write_text('{"input": "<s> x =", "gt": "1"}\n')
    assert codexglue_version(tmp_path) == "codexglue-2020"
    assert VERSIONS["codexglue-2021"].baseline_em == 42.18 and VERSIONS["codexglue-2020"].baseline_es == 69.69


def test_proxy_respects_its_size_budget(tmp_path: Path) -> None:
    src = tmp_path / "src"
    src.mkdir()
    _write_sources(src)
    info = build_completion_proxy([src], tmp_path / "out", ProxySettings(max_mb=0.02, line_samples=5))
    total = sum((tmp_path / "out" / f"{s}.txt").stat().st_size for s in ("train", "validation", "test"))
    # Each split stops at the first file past its share, so it overshoots by less than one file (< 600 bytes).
    assert (
        0.02e6 <= total < 0.02e6 + 3 * 600
        and sum(info["counts"][s] for s in ("train", "validation", "test")) < 150
    )


def test_prepare_py150_splits_as_codexglue(tmp_path: Path) -> None:
    # py150's layout: file lists + the files. Train = python100k_train.txt[:-5000], validation = its last 5000.
    base = tmp_path / "py150"
    (base / "data").mkdir(parents=True)
    (base / "data" / "a.py").write_text(SOURCE)
    (base / "data" / "b.py").write_text("print 'py2'\n")
    (base / "data" / "bad.py").write_text("x = (\n")
    (base / "python100k_train.txt").write_text("data/a.py\ndata/b.py\n" + "data/bad.py\n" * 5000)
    (base / "python50k_eval.txt").write_text("data/b.py\ndata/missing.py\n")
    out = tmp_path / "out"
    assert cli_main(["prepare-py150", "--py150", str(base), "--out", str(out)]) == 0
    assert load_split(out, "train") == [EXPECTED, "<s> print '<STR_LIT>' </s>"]
    validation = load_split(out, "validation")
    assert len(validation) == 5000 and set(validation) == {"<s> </s>"}
    assert load_split(out, "test") == ["<s> print '<STR_LIT>' </s>", "<s> </s>"]
    assert json.loads((out / "version.json").read_text())["codexglue_version"] == "codexglue-2021"


def test_cli_rejects_bad_settings_in_one_line(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    with pytest.raises(SystemExit) as exit_info:
        build_local_main(["--out", str(tmp_path), "--tasks", "completion", "--completion-mb", "0"])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err.strip()
    assert "--completion-mb must be above 0, got 0.0" in err and "\n" not in err
    with pytest.raises(SystemExit):
        cli_main(["prepare-py150", "--py150", str(tmp_path / "nope"), "--out", str(tmp_path / "o")])
    assert "python100k_train.txt: missing" in capsys.readouterr().err


def test_line_start_cuts_begin_a_line(tmp_path: Path) -> None:
    src = tmp_path / "src"
    src.mkdir()
    _write_sources(src, n=60)
    settings = ProxySettings(max_mb=1.0, line_samples=30, cut="line_start")
    build_completion_proxy([src], tmp_path / "out", settings)
    samples = load_line_test(tmp_path / "out")
    assert len(samples) == 30
    assert all(r["input"] == "<s>" or r["input"].endswith(" <EOL>") for r in samples)
    with pytest.raises(ValueError, match="unknown cut rule 'middle'"):
        ProxySettings(cut="middle")
