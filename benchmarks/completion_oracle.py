"""What a perfect model would score: each line-level sample's reference tokens decoded as a prediction.

For every sample of a line test, the tokens its reference line adds after its context (``input + gt + <EOL>``
encoded, the context's tokens cut off) go through ``generate.decode_ids`` and the scorer. Anything under ES 100 /
EM 100 is lost by tokenizing and decoding alone, before any model: a tokenizer that keeps the spaces beside
CodeXGLUE's specials lost 0.32 ES on the proxy this way.

    python benchmarks/completion_oracle.py --data runs/data/local/completion            # a BPE trained here
    python benchmarks/completion_oracle.py --data DIR --tokenizer runs/completion-teachers/<teacher folder>
"""

from __future__ import annotations

import json
from pathlib import Path

from tasks.cli_errors import OneLineArgumentParser
from tasks.completion.data import load_line_test, load_split
from tasks.completion.generate import decode_ids
from tasks.completion.preprocess import EOL
from tasks.completion.scorer import score_lines


def main(argv: list[str] | None = None) -> None:
    parser = OneLineArgumentParser(
        prog="python benchmarks/completion_oracle.py", description=__doc__.splitlines()[0]
    )
    parser.add_argument("--data", type=Path, required=True, help="a completion data folder (line_test.json)")
    parser.add_argument(
        "--tokenizer", type=Path, help="a folder with a saved tokenizer (default: train a BPE)"
    )
    parser.add_argument("--vocab", type=int, default=2000, help="the trained BPE's size")
    args = parser.parse_args(argv)
    if not args.data.is_dir():
        parser.error(f"--data {args.data}: no such folder (a completion data folder with line_test.json)")
    if args.tokenizer:
        from transformers import AutoTokenizer

        tok = AutoTokenizer.from_pretrained(args.tokenizer)
    else:
        from tasks.completion.tokenizer import build_bpe_tokenizer

        tok = build_bpe_tokenizer(load_split(args.data, "train"), args.vocab)
    stops = {tok.sep_token_id, tok.eos_token_id}
    preds, gts, off = [], [], []
    for sample in load_line_test(args.data):
        context = tok.encode(sample["input"], add_special_tokens=False)
        full = tok.encode(f"{sample['input']} {sample['gt']} {EOL}", add_special_tokens=False)
        if full[: len(context)] != context:  # the context's last token merges with the line's first
            off.append(sample.get("id"))
        preds.append(decode_ids(full[len(context) :], tok, stops))
        gts.append(sample["gt"])
    scores = score_lines(preds, gts)
    print(json.dumps({
        "data": str(args.data), "tokenizer": str(args.tokenizer or f"BPE {args.vocab} trained on train.txt"),
        "samples": scores.n, "ES": round(scores.es, 2), "EM": round(scores.em, 2),
        "not_exact": sum(p != g for p, g in zip(preds, gts)), "context_not_a_prefix": len(off),
    }, indent=2))  # fmt: skip


if __name__ == "__main__":
    main()
