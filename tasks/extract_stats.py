"""How much code the local data builder can use: functions extracted per source tree, and the share of them that
tree-sitter parses back without an error (by construction all of them, since ``tasks.extract`` keeps only those).

    python -m tasks.extract_stats --out stats.json [--languages c java python]

Reads the files the builder reads with seed 0, up to its per-language caps (``MAX_FILES``): the C files found,
the first ``.java`` members of the JDK's ``src.zip``, the first ``.py`` files. The figures before tree-sitter
(brace matching and ``ast``) are in ``docs/benchmarks/extract_cpu.json``, measured with this script's logic on
the commit before it.
"""

from __future__ import annotations

import json
import time
import zipfile
from collections.abc import Iterator
from pathlib import Path

from tasks import local_sources as bl
from tasks.extract import LANGUAGES, extract_functions, parses_cleanly


def source_files(language: str, sources: bl.Sources, seed: int = 0) -> Iterator[tuple[str, str, str]]:
    """(path, text, key prefix) of the files the builder reads for ``language``, in its order."""
    if language == "c":
        for p in bl._shuffled(list(sources.c_files), seed, "c")[: bl.MAX_FILES["c"]]:
            if (text := bl.read_text(p)) is not None:
                yield str(p), text, p.name
    elif language == "java":
        members = []
        for z in sources.java_zips:
            with zipfile.ZipFile(z) as zf:
                members += [(z, n) for n in zf.namelist() if n.endswith(".java")]
        opened: dict[Path, zipfile.ZipFile] = {}  # one open per zip: its central directory is large
        try:
            for z, name in bl._shuffled(sorted(members), seed, "java")[: bl.MAX_FILES["java"]]:
                if z not in opened:
                    opened[z] = zipfile.ZipFile(z)
                zf = opened[z]
                yield f"{z}!{name}", bl.decode_source(zf.read(name)), name
        finally:
            for zf in opened.values():
                zf.close()
    else:
        for root, p in bl.python_files(sources, seed):
            if (text := bl.read_text(p)) is not None:
                yield str(p), text, str(p.relative_to(root))


def measure(language: str, sources: bl.Sources) -> dict[str, object]:
    start = time.perf_counter()
    files = functions = clean = 0
    for path, text, key in source_files(language, sources):
        files += 1
        for fn in extract_functions(text, language, path, key):
            functions += 1
            clean += parses_cleanly(fn.text, language)
    return {
        "files": files,
        "functions": functions,
        "parse_clean": clean,
        "share_clean": round(clean / max(functions, 1), 5),
        "seconds": round(time.perf_counter() - start, 1),
    }


def main(argv: list[str] | None = None) -> int:
    from tasks.cli_errors import OneLineArgumentParser, output_file_problem

    parser = OneLineArgumentParser(prog="python -m tasks.extract_stats", description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", required=True, type=Path, help="JSON file to write")
    parser.add_argument("--languages", nargs="+", choices=LANGUAGES, default=list(LANGUAGES))
    args = parser.parse_args(argv)
    if problem := output_file_problem(args.out):  # checked before minutes of parsing, not after
        parser.error(problem)
    sources = bl.Sources.discover()
    result = {lang: measure(lang, sources) for lang in args.languages}
    args.out.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    for lang, row in result.items():
        print(f"{lang}: {row}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
