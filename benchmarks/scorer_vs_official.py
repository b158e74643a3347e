"""Our line-level scorer against fuzzywuzzy itself, per sample, as CodeXGLUE's evaluator calls it.

CodeXGLUE's ``Code-Code/CodeCompletion-line/evaluator/evaluator.py`` scores a sample with fuzzywuzzy's
``fuzz.ratio`` after its ``post_process``; which ratio that is depends on what is installed beside fuzzywuzzy
(python-Levenshtein 0.12 in 2021, >= 0.20 today, or none: difflib). This writes hand-made tricky cases and 30,000
seeded random pairs, scores them in each reference interpreter with the evaluator's per-sample steps (its
``post_process``, ``pred.strip()``, ``fuzz.ratio``, ``split()`` equality) and with each of our ES backends, and
prints one JSON object: per reference and backend, how many samples differ, and the mean ES/EM.

Reference interpreters (pip needs the network once):

    python3 -m venv /tmp/ref-lev  && /tmp/ref-lev/bin/pip install fuzzywuzzy==0.18.0 python-Levenshtein==0.27.5
    python3 -m venv /tmp/ref-2021 && /tmp/ref-2021/bin/pip install fuzzywuzzy==0.18.0 python-Levenshtein==0.12.2
    python3 -m venv /tmp/ref-difflib && /tmp/ref-difflib/bin/pip install fuzzywuzzy==0.18.0

    python benchmarks/scorer_vs_official.py --work /tmp/scorer-cases \\
        --reference lev=/tmp/ref-lev/bin/python --reference 2021=/tmp/ref-2021/bin/python \\
        --reference difflib=/tmp/ref-difflib/bin/python
"""

from __future__ import annotations

import json
import random
import subprocess
from pathlib import Path

from tasks.cli_errors import OneLineArgumentParser
from tasks.completion.scorer import ES_BACKENDS, edit_sim, post_process

# The evaluator's per-sample steps, run by the reference interpreter (only fuzzywuzzy and the standard library).
REFERENCE = r"""
import json, re, sys, warnings
warnings.simplefilter("ignore")
from fuzzywuzzy import fuzz
from importlib import metadata
try:
    lev = metadata.version("python-Levenshtein")
except metadata.PackageNotFoundError:
    lev = None
def post_process(code):
    code = code.replace("<NUM_LIT>", "0").replace("<STR_LIT>", "").replace("<CHAR_LIT>", "")
    for kind, value in re.findall(re.compile(r"<(STR|NUM|CHAR)_LIT:(.*?)>", re.S), code):
        code = code.replace(f"<{kind}_LIT:{value}>", value)
    return code
preds = open(sys.argv[2]).readlines()
gts = [json.loads(line)["gt"] for line in open(sys.argv[1])]
out = []
for pred, gt in zip(preds, gts):
    pred, gt = post_process(pred.strip()), post_process(gt)
    out.append([fuzz.ratio(pred, gt), int(pred.split() == gt.split())])
print(json.dumps({"python_levenshtein": lev, "per_sample": out}))
"""

HAND = [
    ("", ""),
    ("x = 1", ""),
    ("", "x = 1"),
    ("   ", ""),
    ("  x = 1  ", "x = 1"),
    ("x  =  1", "x = 1"),
    ("x\t=\t1", "x = 1"),
    ("self . x", "self.x"),
    ('print ( "<STR_LIT>" )', 'print ( "" )'),
    ("x = <NUM_LIT>", "x = 0"),
    ("x = <NUM_LIT:1>", "x = 1"),
    ("open ( f , '<STR_LIT:r>' )", "open ( f , 'r' )"),
    ("x = '<STR_LIT:U+0020>'", "x = ' '"),
    ("<STR_LIT:<NUM_LIT>>", "<STR_LIT:0>"),
    ("<CHAR_LIT:a>", "a"),
    ("return x <EOL>", "return x"),
    ("return x </s>", "return x"),
    ("é = 'ü'", "e = 'u'"),
    ("名前 = 1", "名前 = 2"),
    ("x = '😀'", "x = '😀😀'"),
    ("a\u0301", "\u00e1"),
    ("x\u00a0= 1", "x = 1"),
    ("\u3000x", "x"),
    ("a", "a" + "b" * 14),
    ("a" * 5000, "a" * 4999 + "b"),
    ("xabcyab", "abyabcx"),
    ("a" * 17 + "b" * 23, "a" * 17 + "c" * 23),
    ("a" * 3 + "b" * 37, "a" * 3 + "c" * 37),  # exact halves
]


def write_cases(work: Path, pairs: int, seed: int) -> tuple[Path, Path]:
    """answers.json (JSON lines with ``gt``) and predictions.txt: the hand cases, then seeded random pairs over a
    small code-like alphabet (half of them near misses of their gt), so per-sample rounding shows."""
    rng, alphabet = random.Random(seed), "ab c()._=<>:"
    cases = list(HAND)
    for _ in range(pairs):
        gt = "".join(rng.choice(alphabet) for _ in range(rng.randint(1, 120))).strip() or "g"
        pred = list(gt)
        if rng.random() < 0.5:
            for _ in range(rng.randint(1, 6)):
                k = rng.randrange(len(pred) + 1)
                if rng.random() < 0.5:
                    pred.insert(k, rng.choice(alphabet))
                elif pred:
                    pred.pop(min(k, len(pred) - 1))
        else:
            pred = [rng.choice(alphabet) for _ in range(rng.randint(1, 120))]
        cases.append(("".join(pred).strip() or "z", gt))
    work.mkdir(parents=True, exist_ok=True)
    answers, predictions = work / "answers.json", work / "predictions.txt"
    answers.write_text("".join(json.dumps({"id": i, "gt": g}) + "\n" for i, (_, g) in enumerate(cases)))
    predictions.write_text("".join(p + "\n" for p, _ in cases))
    return answers, predictions


def ours(answers: Path, predictions: Path, backend: str) -> list[list[int]]:
    gts = [json.loads(line)["gt"] for line in answers.read_text().splitlines()]
    out = []
    for pred, gt in zip(predictions.read_text().splitlines(), gts):
        p, g = post_process(pred.strip()), post_process(gt)
        out.append([edit_sim(p, g, backend), int(p.split() == g.split())])
    return out


def main(argv: list[str] | None = None) -> None:
    parser = OneLineArgumentParser(
        prog="python benchmarks/scorer_vs_official.py", description=__doc__.splitlines()[0]
    )
    parser.add_argument("--work", type=Path, required=True, help="folder for the case files")
    parser.add_argument("--reference", action="append", default=[], metavar="NAME=PYTHON",
                        help="an interpreter with fuzzywuzzy installed (repeat)")  # fmt: skip
    parser.add_argument("--pairs", type=int, default=30_000)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    if args.work.exists() and not args.work.is_dir():
        parser.error(f"--work {args.work}: a file; give a folder for the case files")
    if args.pairs < 0:
        parser.error(f"--pairs must be >= 0, got {args.pairs}")
    for ref in args.reference:
        name, sep, python = ref.partition("=")
        if not (name and sep and Path(python).is_file()):
            parser.error(
                f"--reference {ref!r}: expects NAME=PYTHON, PYTHON an interpreter file (see the header)"
            )
    answers, predictions = write_cases(args.work, args.pairs, args.seed)
    mine = {b: ours(answers, predictions, b) for b in ES_BACKENDS}
    report: dict = {"samples": len(mine["levenshtein"]), "hand_cases": len(HAND), "references": {}}
    for name, python in (r.split("=", 1) for r in args.reference):
        run = subprocess.run([python, "-c", REFERENCE, str(answers), str(predictions)],
                             capture_output=True, text=True, check=True)  # fmt: skip
        ref = json.loads(run.stdout)
        per = ref["per_sample"]
        report["references"][name] = {
            "python_levenshtein": ref["python_levenshtein"],
            "ES": round(sum(e for e, _ in per) / len(per), 2),
            "EM": round(100 * sum(m for _, m in per) / len(per), 2),
            "differing_samples": {b: sum(x != y for x, y in zip(per, m)) for b, m in mine.items()},
        }
    report["ours"] = {
        b: {
            "ES": round(sum(e for e, _ in m) / len(m), 2),
            "EM": round(100 * sum(x for _, x in m) / len(m), 2),
        }
        for b, m in mine.items()
    }
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
