"""Line-level scoring exactly as CodeXGLUE's ``CodeCompletion-line/evaluator/evaluator.py`` (since 2021-07-30).

Per sample: ``pred = post_process(pred.strip())``, ``gt = post_process(gt)``;
ES = fuzzywuzzy's ``fuzz.ratio(pred, gt)``, EM = ``pred.split() == gt.split()``; the run's ES is the mean of
the per-sample ES, its EM the percentage of matches; both on 0-100.

``fuzz.ratio`` details that change numbers: it returns 100 when the strings are equal (both empty included), 0
when exactly one is empty, else ``int(round(100 * ratio))`` per sample (Python's round: half to even). We use
rapidfuzz's ``fuzz.ratio`` for the ratio itself (backend ``levenshtein``, the default): the normalised InDel
similarity, the same quantity as fuzzywuzzy with python-Levenshtein installed. fuzzywuzzy without it falls back
to difflib's ``SequenceMatcher`` (Ratcliff/Obershelp matching blocks, not a longest common subsequence), which
gives a different per-sample ratio on about one line in ten; backend ``difflib`` reproduces that variant.

The ratio's floating-point form decides exact halves. python-Levenshtein >= 0.20 (and rapidfuzz) compute
``1 - d / L`` (``d`` the InDel distance, ``L`` the two lengths summed), python-Levenshtein 0.12 (what fuzzywuzzy
used in 2020-21, when CodeXGLUE's baselines were scored) ``(L - d) / L``: where ``100 * ratio`` is exactly x.5 the
two can round to neighbouring integers (34 / 80: 42.50000000000001 -> 43 against 42.5 -> 42; about 1 pair in
2,300 of random short strings). ``levenshtein`` is today's form, ``levenshtein-0.12`` the 2021 one.
docs/COMPLETION_TASK.md has the measured agreement with the official script under each.
"""

from __future__ import annotations

import difflib
import json
import re
from dataclasses import dataclass
from pathlib import Path

from rapidfuzz import fuzz
from rapidfuzz.distance import Indel

_LIT = re.compile(r"<(STR|NUM|CHAR)_LIT:(.*?)>", re.S)


def post_process(code: str) -> str:
    """Restore literals as the evaluator does: ``<NUM_LIT>`` -> 0, ``<STR_LIT>``/``<CHAR_LIT>`` -> '',
    ``<STR_LIT:v>`` -> v (``U+0020``/``U+002C`` stay as written, ``<EOL>`` is not touched)."""
    code = code.replace("<NUM_LIT>", "0").replace("<STR_LIT>", "").replace("<CHAR_LIT>", "")
    # Same order and str.replace as theirs: each kept literal found is replaced everywhere it occurs.
    for kind, value in _LIT.findall(code):
        code = code.replace(f"<{kind}_LIT:{value}>", value)
    return code


ES_BACKENDS = ("levenshtein", "levenshtein-0.12", "difflib")


def edit_sim(pred: str, gt: str, backend: str = "levenshtein") -> int:
    """fuzzywuzzy's ``fuzz.ratio``: an int in 0..100."""
    if pred == gt:
        return 100
    if not pred or not gt:
        return 0
    if backend == "levenshtein":
        return int(round(fuzz.ratio(pred, gt)))
    if backend == "levenshtein-0.12":
        total = len(pred) + len(gt)
        return int(round(100 * ((total - Indel.distance(pred, gt)) / total)))
    if backend == "difflib":
        return int(round(100 * difflib.SequenceMatcher(None, pred, gt).ratio()))
    raise ValueError(f"unknown ES backend {backend!r}; valid: {list(ES_BACKENDS)}")


@dataclass(frozen=True)
class LineScores:
    es: float  # mean per-sample edit similarity, 0-100
    em: float  # percentage of whitespace-token exact matches, 0-100
    em_strict: float  # percentage of raw string equality after post_process and strip (run_lm.py's own log)
    n: int

    def as_json(self) -> dict[str, float]:
        # The official evaluator logs round(x, 2); the command prints the same.
        return {"ES": round(self.es, 2), "EM": round(self.em, 2)}


def score_lines(predictions: list[str], gts: list[str], backend: str = "levenshtein") -> LineScores:
    """Score raw predictions against raw ground truths (both before post_process)."""
    if backend not in ES_BACKENDS:
        raise ValueError(f"unknown ES backend {backend!r}; valid: {list(ES_BACKENDS)}")
    if len(predictions) != len(gts):
        raise ValueError(f"samples of predictions and answers are not equal, {len(predictions)}: {len(gts)}")
    if not gts:
        raise ValueError("no samples to score")
    es = em = strict = 0
    for raw_pred, raw_gt in zip(predictions, gts):
        pred = post_process(raw_pred.strip())
        gt = post_process(raw_gt)
        es += edit_sim(pred, gt, backend)
        em += pred.split() == gt.split()
        strict += pred == gt.strip()
    n = len(gts)
    return LineScores(es=es / n, em=100.0 * em / n, em_strict=100.0 * strict / n, n=n)


def read_answers(path: Path) -> list[str]:
    """The ``gt`` of every line of an answers file (JSON lines, as CodeXGLUE's answers.json / test.json)."""
    gts = []
    with Path(path).open(encoding="utf-8-sig") as f:  # a byte-order mark skipped (Windows editors write one)
        for n, line in enumerate(f, 1):  # readlines' splitting, not str.splitlines'
            if not line.strip():  # as load_line_test, so generate and score count the same samples
                continue
            try:
                rec = json.loads(line)
            except json.JSONDecodeError as exc:
                raise ValueError(f"{path}:{n}: not JSON ({exc.msg})") from None
            if not isinstance(rec, dict) or not isinstance(rec.get("gt"), str):
                raise ValueError(f"{path}:{n}: needs a string field 'gt'")
            gts.append(rec["gt"])
    return gts


def read_predictions(path: Path) -> list[str]:
    """One prediction per line, read as the evaluator does (``open().readlines()``: universal newlines); a
    byte-order mark is skipped (the evaluator would score it as part of the first prediction)."""
    with Path(path).open(encoding="utf-8-sig") as f:
        return f.readlines()


def score_files(answers: Path, predictions: Path, backend: str = "levenshtein") -> LineScores:
    for p in (answers, predictions):
        if Path(p).is_dir():
            raise ValueError(f"{p}: a folder, not a file")
        if not Path(p).is_file():
            raise ValueError(f"{p}: no such file")
    return score_lines(read_predictions(predictions), read_answers(answers), backend)
