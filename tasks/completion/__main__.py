"""``python -m tasks.completion`` commands.

* ``score --answers ANSWERS --predictions PREDICTIONS``: CodeXGLUE line-level ES/EM; the last line printed is
  ``{"ES": ..., "EM": ...}`` (0-100, rounded to 2 places as the official evaluator logs them). Answers: JSON lines
  with ``gt`` (CodeXGLUE's answers.json / test.json, or our line_test.json); predictions: one line per sample.
* ``generate --model DIR --answers line_test.json --predictions OUT [--beam 5 --batch-size 8 --compat --device]``: one
  predicted line per sample with an HF causal LM saved in DIR (its tokenizer beside it), as CodeXGLUE decodes.
* ``make-line-test --data DIR [--samples 10000 --cut anywhere --seed 0]``: cut a line-level test set from your own
  ``DIR/test.txt`` (one cut per file per round, as the offline proxy does) and write it as ``DIR/line_test.json``
  (``--out`` elsewhere; an existing file is kept unless ``--overwrite``).
* ``prepare-py150 --py150 DIR --out DIR --line-test test.json``: py150 as CodeXGLUE's preprocess.py prepares
  it (train = python100k_train.txt[:-5000], validation = the last 5000, test = python50k_eval.txt), written as
  ``train.txt``/``validation.txt``/``test.txt`` plus ``version.json`` (``codexglue-2021``), and CodeXGLUE's
  line-level test.json as ``line_test.json`` (a study needs it; without ``--line-test`` a warning says so).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import random
import shutil
import sys
from pathlib import Path

from tasks.cli_errors import OneLineArgumentParser, fail, output_file_problem
from tasks.completion.data import (
    LINE_TEST_2021_BLOB,
    LINE_TEST_FILE,
    VERSION_FILE,
    VERSIONS,
    codexglue_version,
    load_line_test,
    py150_advice,
    write_version,
)
from tasks.completion.preprocess import normalise_newlines, preprocess_file
from tasks.completion.proxy import CUT_RULES
from tasks.completion.scorer import ES_BACKENDS, score_files


def _score(args: argparse.Namespace) -> int:
    scores = score_files(args.answers, args.predictions, args.es_backend)
    print(f"samples: {scores.n}, em_strict: {scores.em_strict:.2f}", file=sys.stderr)
    print(json.dumps(scores.as_json()))
    return 0


def _check_output(path: Path, flag: str) -> None:
    if problem := output_file_problem(path, flag):
        raise ValueError(problem)


def _generate(args: argparse.Namespace) -> int:
    from transformers import AutoModelForCausalLM, AutoTokenizer  # heavy: only for this command

    from tasks.completion.data import load_line_test
    from tasks.completion.generate import GenerationSettings, complete_lines

    samples = load_line_test(args.answers)
    if not Path(args.model).is_dir():
        raise ValueError(f"{args.model}: not a model folder (save_pretrained output with its tokenizer)")
    _check_output(args.predictions, "--predictions")  # before generating, which can take hours
    from orchestrator.core.device import device_problem, resolve_device

    if problem := device_problem(
        args.device
    ):  # auto: a GPU when there is one (beam search on a CPU takes hours)
        raise ValueError(problem)
    device = resolve_device(args.device)
    tokenizer = AutoTokenizer.from_pretrained(args.model, trust_remote_code=False)
    model = AutoModelForCausalLM.from_pretrained(args.model, trust_remote_code=False, use_safetensors=True)
    model.to(device)
    settings = GenerationSettings(
        beam_size=args.beam,
        batch_size=args.batch_size,
        max_new_tokens=args.max_new_tokens,
        codexglue_compat=args.compat,
    )
    preds = complete_lines(model, tokenizer, [r["input"] for r in samples], settings)
    # One line per sample even if a model emits a raw newline piece: the evaluator splits on \n and \r.
    lines = (p.replace("\r", " ").replace("\n", " ") for p in preds)
    Path(args.predictions).write_text("".join(f"{line}\n" for line in lines), encoding="utf-8", newline="\n")
    print(f"{len(preds)} predictions -> {args.predictions}")
    return 0


def _make_line_test(args: argparse.Namespace) -> int:
    from tasks.completion.data import load_split
    from tasks.completion.proxy import ProxySettings, line_samples, write_lines

    if args.samples < 1:
        raise ValueError(f"--samples must be at least 1, got {args.samples}")
    settings = ProxySettings(line_samples=args.samples, cut=args.cut, seed=args.seed)
    # One space between tokens, as CodeXGLUE's text has (a file written by hand may have runs of spaces).
    files = [" ".join(text.split()) for text in load_split(args.data, "test")]
    out = args.out or args.data / LINE_TEST_FILE
    _check_output(out, "--out")
    if out.exists() and not args.overwrite:
        raise ValueError(f"{out}: exists; pass --overwrite to replace it, or --out another file")
    # Files in a seeded random order: line_samples takes them in order, and a test.txt sorted by project would
    # otherwise give a set from its first projects only when it holds more files than samples.
    random.Random(f"line-test:{args.seed}").shuffle(files)
    samples = line_samples(files, settings)
    if not samples:
        raise ValueError(f"{args.data}: no code token to cut at in its test split ({len(files)} files)")
    write_lines(out, (json.dumps(r, ensure_ascii=False) for r in samples))
    if out.resolve() == (args.data / LINE_TEST_FILE).resolve():
        _mark_own_line_test(args, len(samples))
    short = f" (all the test split has: {len(files)} files)" if len(samples) < args.samples else ""
    print(f"{len(samples)} line samples{short}, cut {args.cut}, seed {args.seed} -> {out}")
    return 0


def _mark_own_line_test(args: argparse.Namespace, samples: int) -> None:
    """``version.json`` says the folder's line set is ours (``own``; a proxy stays ``local-proxy``), so its runs are
    never tagged, or set beside published figures, as CodeXGLUE's set; what the folder held before is kept."""
    old = {}
    if (args.data / VERSION_FILE).is_file():
        codexglue_version(args.data)  # CompletionDataError for a malformed file, before it is rewritten
        old = json.loads((args.data / VERSION_FILE).read_text(encoding="utf-8"))
    before = old.pop("codexglue_version", None)
    if before == "own":  # a set cut again: the token text is still what it was
        before = old.pop("token_text", None)
    for replaced in ("line_test", "line_test_blob"):  # the set this one replaces
        old.pop(replaced, None)
    made = {"command": "make-line-test", "samples": samples, "cut": args.cut, "seed": args.seed}
    name = "local-proxy" if before == "local-proxy" else "own"
    write_version(args.data, name, **old, **({"token_text": before} if before else {}), line_test=made)


def _git_blob_sha1(path: Path) -> str:
    data = path.read_bytes()
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


def _listed(list_file: Path, base: Path) -> list[Path]:
    """The files a py150 list names, each inside ``base`` (ValueError, by line, for one that leaves it)."""
    root, out = base.resolve(), []
    for n, rel in enumerate(list_file.read_text(encoding="utf-8-sig").splitlines(), 1):
        path = (base / rel.strip()).resolve()  # a blank entry is the folder: unreadable, "<s> </s>" as theirs
        if not path.is_relative_to(root):
            raise ValueError(f"{list_file}:{n}: {rel.strip()!r} leaves --py150 {base}; list paths inside it")
        out.append(path)
    return out


def _prepare(args: argparse.Namespace) -> int:
    base, out = Path(args.py150), Path(args.out)
    lists = {name: base / name for name in ("python100k_train.txt", "python50k_eval.txt")}
    for path in lists.values():
        if not path.is_file():
            raise ValueError(
                f"{path}: missing; extract {VERSIONS['codexglue-2021'].token_source.split(' ')[0]}"
            )
    if args.line_test:  # checked first: preparing py150 takes hours
        load_line_test(args.line_test)  # a file of line samples (CompletionDataError: which line is wrong)
    if args.validation_files < 1:
        raise ValueError(f"--validation-files must be at least 1, got {args.validation_files}")
    if not args.line_test:
        # A warning, not a refusal: the token-level text is useful alone (and the line set can be added later,
        # as the advice says), but a completion study scores on line_test.json, so say so before the long run.
        print(
            f"warning: no --line-test: {out} will have no {LINE_TEST_FILE}, which a completion study needs; "
            f"{py150_advice(out, [LINE_TEST_FILE])}",
            file=sys.stderr,
        )
    if sys.version_info >= (3, 12):
        print(
            "warning: Python >= 3.12 rejects much Python 2 code that 3.11's tokenizer accepted; py150 prepared "
            "here will differ from the official files (use Python <= 3.11)",
            file=sys.stderr,
        )
    listed = {name: _listed(path, base) for name, path in lists.items()}
    train_all, held = listed["python100k_train.txt"], args.validation_files
    if len(train_all) <= held:  # CodeXGLUE holds the last 5,000 of py150's 100k out for validation
        raise ValueError(
            f"{lists['python100k_train.txt']} lists {len(train_all)} files and the last {held} are held out for "
            "validation, which leaves none to train on: pass a smaller --validation-files"
        )
    splits = {
        "train": train_all[:-held],
        "validation": train_all[-held:],
        "test": listed["python50k_eval.txt"],
    }
    out.mkdir(parents=True, exist_ok=True)
    for split, files in splits.items():
        unread = 0
        with (out / f"{split}.txt").open("w", encoding="utf-8", newline="\n") as f:
            for path in files:
                try:
                    code = normalise_newlines(path.read_text(encoding="utf-8"))
                except (OSError, UnicodeDecodeError):
                    code, unread = "", unread + 1  # theirs: any exception -> "<s> </s>"
                f.write(preprocess_file(code) + "\n")
        print(f"{split}: {len(files)} files -> {out / f'{split}.txt'}")
        if unread:
            print(
                f"warning: {split}: {unread} of {len(files)} files missing or not UTF-8 -> '<s> </s>'",
                file=sys.stderr,
            )
    extra: dict[str, object] = {"python": f"{sys.version_info.major}.{sys.version_info.minor}"}
    if args.line_test:
        blob = _git_blob_sha1(Path(args.line_test))
        if blob != LINE_TEST_2021_BLOB:
            print(f"warning: {args.line_test}: not the pinned 2021 test.json (blob {blob})", file=sys.stderr)
        extra["line_test_blob"] = blob
        shutil.copyfile(args.line_test, out / LINE_TEST_FILE)
    write_version(out, "codexglue-2021", **extra)
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = OneLineArgumentParser(prog="python -m tasks.completion", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("score", help="ES/EM as CodeXGLUE's line-level evaluator")
    p.add_argument("--answers", "-a", required=True, type=Path, help="JSON lines with 'gt'")
    p.add_argument("--predictions", "-p", required=True, type=Path, help="one prediction per line")
    p.add_argument(
        "--es-backend",
        choices=ES_BACKENDS,
        default="levenshtein",
        help="fuzzywuzzy's ratio with python-Levenshtein >= 0.20 (default; = rapidfuzz), with python-Levenshtein "
        "0.12 (2021: exact halves round to even), or its pure-Python difflib fallback",
    )
    p.set_defaults(func=_score)
    p = sub.add_parser("generate", help="predict each line-level sample with a causal LM")
    p.add_argument(
        "--model", required=True, type=Path, help="folder with the model (safetensors) and tokenizer"
    )
    p.add_argument("--answers", required=True, type=Path, help="line-level samples (JSON lines with 'input')")
    p.add_argument("--predictions", required=True, type=Path, help="output: one line per sample")
    p.add_argument("--beam", type=int, default=5)
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--max-new-tokens", type=int, default=100)
    p.add_argument("--compat", action="store_true", help="reproduce run_lm.py's strip('<EOL>') bug")
    p.add_argument("--device", default="auto", help="auto (a GPU when there is one), cpu, cuda or cuda:N")
    p.set_defaults(func=_generate)
    p = sub.add_parser("make-line-test", help="cut a line-level test set from a data folder's test.txt")
    p.add_argument("--data", required=True, type=Path, help="data folder with test.txt (token text)")
    p.add_argument("--out", type=Path, help=f"output file (default: DATA/{LINE_TEST_FILE})")
    p.add_argument(
        "--samples", type=int, default=10_000, help="line samples (CodeXGLUE's set: 10,000, one per file)"
    )
    p.add_argument(
        "--cut", choices=CUT_RULES, default="anywhere",
        help="where a sample is cut: anywhere in a line (its rest non-empty) or at a line start",
    )  # fmt: skip
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--overwrite", action="store_true", help="replace an existing output file")
    p.set_defaults(func=_make_line_test)
    p = sub.add_parser("prepare-py150", help="py150 -> CodeXGLUE token text")
    p.add_argument("--py150", required=True, type=Path, help="extracted py150_files folder")
    p.add_argument("--out", required=True, type=Path)
    p.add_argument(
        "--line-test",
        type=Path,
        help="CodeXGLUE's line_completion/test.json, copied as line_test.json (a study needs it; "
        f"{VERSIONS['codexglue-2021'].line_test_url})",
    )
    p.add_argument(
        "--validation-files", type=int, default=5000,
        help="the last N files of python100k_train.txt held out for validation (CodeXGLUE: 5000)",
    )  # fmt: skip
    p.set_defaults(func=_prepare)
    args = parser.parse_args(argv)
    try:
        return args.func(args)
    except (ValueError, OSError) as exc:  # OSError: CompletionDataError, unreadable files, model folders
        fail(exc)


if __name__ == "__main__":
    raise SystemExit(main())
