"""The line-level scorer against hand-computed ES/EM (CodeXGLUE evaluator.py's definitions)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tasks.completion.__main__ import main
from tasks.completion.scorer import edit_sim, post_process, score_lines

# (prediction line as written, gt as in answers, ES by hand, EM by hand)
# ES = round(100 * 2 * LCS / (len(pred) + len(gt))) after post_process and pred.strip(); 100 when equal, 0 when
# exactly one side is empty. EM = whitespace-split equality.
CASES = [
    ("def __init__ ( self ) :", "def __init__ ( self ) :", 100, True),
    # strip() and post_process: <NUM_LIT> -> 0 on both sides, then equal strings
    ("  x = <NUM_LIT>  \n", "x = <NUM_LIT>", 100, True),
    # a kept literal is restored: <STR_LIT:utf-8> -> utf-8 ; '<STR_LIT>' -> ''
    ("open ( '<STR_LIT:utf-8>' )", "open ( 'utf-8' )", 100, True),
    ("f ( '<STR_LIT>' )", "f ( '' )", 100, True),
    # "abcd" vs "abce": LCS 3, 2*3/8 = 75
    ("abcd", "abce", 75, False),
    # "ab" vs "abc": 2*2/5 = 80
    ("ab", "abc", 80, False),
    # "a  b" vs "a b": LCS 3, 6/7 = 85.71 -> 86; whitespace-split equal, so EM counts
    ("a  b", "a b", 86, True),
    # "a" vs "a" + 14 b's: LCS 1, 2/16 = 12.5 -> 12 (round half to even, as fuzzywuzzy's int(round()))
    ("a", "a" + "b" * 14, 12, False),
    # empty prediction: 0; empty prediction and empty gt: 100 and EM
    ("", "return", 0, False),
    ("   ", "", 100, True),
    # <NUM_LIT> in the prediction becomes "0": "y = 0" vs "y = 1": LCS 4, 8/10 = 80
    ("y = <NUM_LIT>", "y = <NUM_LIT:1>", 80, False),
]


def test_each_case_by_hand() -> None:
    for pred, gt, es, em in CASES:
        p, g = post_process(pred.strip()), post_process(gt)
        assert edit_sim(p, g) == es, (pred, gt)
        assert (p.split() == g.split()) is em, (pred, gt)


def test_means_and_strict_em() -> None:
    scores = score_lines([c[0] for c in CASES], [c[1] for c in CASES])
    n = len(CASES)
    assert scores.n == n
    assert scores.es == pytest.approx(
        sum(c[2] for c in CASES) / n
    )  # (100*5 + 75 + 80 + 86 + 12 + 0 + 80) / 11
    assert scores.es == pytest.approx(833 / 11)
    assert scores.em == pytest.approx(100 * 6 / 11)
    # strict (run_lm.py's own log): raw equality after post_process; "a  b" != "a b"
    assert scores.em_strict == pytest.approx(100 * 5 / 11)


def test_post_process_matches_the_evaluator() -> None:
    assert post_process("<NUM_LIT> <STR_LIT> <CHAR_LIT>") == "0  "
    assert post_process('x = "<STR_LIT:U+0020>" + <NUM_LIT:0.5>') == 'x = "U+0020" + 0.5'  # U+0020 stays
    assert post_process("a <EOL> b") == "a <EOL> b"


def test_difflib_backend_differs_where_fuzzywuzzy_without_levenshtein_does() -> None:
    # pred "xabcyab", gt "abyabcx" (14 characters together). difflib takes the longest common block that starts
    # first in pred, "abc", and finds nothing left of it ("x" / "aby") or right of it ("yab" / "x"): 2*3/14 = 42.86
    # -> 43. The longest common subsequence is "abyab" (5): 2*5/14 = 71.43 -> 71.
    assert edit_sim("xabcyab", "abyabcx", "difflib") == 43
    assert edit_sim("xabcyab", "abyabcx") == 71
    with pytest.raises(ValueError, match="valid"):
        edit_sim("a", "b", "jaro")


def test_exact_halves_round_as_each_python_levenshtein_did() -> None:
    # 17 common characters out of 80: 100 * 34 / 80 = 42.5 exactly. python-Levenshtein 0.12 (2021) computes
    # (80 - 46) / 80 = 0.425 -> 42.5 -> 42 (half to even), as difflib's 2 * 17 / 80 does; >= 0.20 and rapidfuzz
    # compute 1 - 46 / 80 = 0.42500000000000004 -> 43. 3 of 80: 7.5 -> 8 against 7.4999... -> 7.
    for common, today, then in ((17, 43, 42), (3, 7, 8)):
        pred, gt = "a" * common + "b" * (40 - common), "a" * common + "c" * (40 - common)
        assert edit_sim(pred, gt) == today
        assert edit_sim(pred, gt, "levenshtein-0.12") == then == edit_sim(pred, gt, "difflib")
    for pred, gt, es, _ in CASES:  # elsewhere the two forms agree
        p, g = post_process(pred.strip()), post_process(gt)
        assert edit_sim(p, g, "levenshtein-0.12") == es


def test_score_command_prints_json_last(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    answers = tmp_path / "answers.json"
    answers.write_text(
        "".join(json.dumps({"id": i, "input": "<s>", "gt": c[1]}) + "\n" for i, c in enumerate(CASES))
    )
    preds = tmp_path / "predictions.txt"
    preds.write_text("".join(c[0].replace("\n", "") + "\n" for c in CASES))
    assert main(["score", "--answers", str(answers), "--predictions", str(preds)]) == 0
    last = capsys.readouterr().out.strip().splitlines()[-1]
    assert json.loads(last) == {"ES": round(833 / 11, 2), "EM": round(600 / 11, 2)}
    preds.write_text("one line\n")
    with pytest.raises(SystemExit) as exit_info:
        main(["score", "--answers", str(answers), "--predictions", str(preds)])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert "not equal, 1: 11" in err and err.count("\n") == 1
