"""The documentation a clone of the repository can follow (issue 24): no pointer outside the repository, no script
that is not in it, the notebooks' list and count as the folder has them. Reads the files; needs nothing installed."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
NUMBERS = {
    w: i for i, w in enumerate("zero one two three four five six seven eight nine ten eleven twelve".split())
}


def _docs() -> list[Path]:
    """Every Markdown file of the repository and the analysis code's docstrings (they point users at docs)."""
    md = [p for p in ROOT.rglob("*.md") if not {".git", ".venv", "node_modules"} & set(p.parts)]
    return sorted(
        md
        + list((ROOT / "orchestrator" / "analysis").glob("*.py"))
        + [ROOT / "notebooks" / "make_notebooks.py"]
    )


def test_no_pointer_outside_the_repository() -> None:
    outside = re.compile(r"(\.\./shared/|/work/|(?<![\w.])shared/(STUDY|COMPLETION|ENVIRONMENT)\.md)")
    # a script that only existed in someone's session
    scratch_script = re.compile(r"/tmp/[\w./-]+\.(py|sh)\b")
    bad = []
    for path in _docs():
        for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
            if outside.search(line) or scratch_script.search(line):
                bad.append(f"{path.relative_to(ROOT)}:{n}: {line.strip()}")
    assert not bad, "\n".join(bad)


def test_docs_paths_named_in_the_docs_exist() -> None:
    named = re.compile(
        r"`((?:docs|notebooks|benchmarks|orchestrator|tasks|kd_methods|models)/[\w./-]+\.(?:md|py|ipynb|json|jsonl|sh|png))`"
    )
    missing = []
    for path in _docs():
        for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
            for ref in named.findall(line):
                if not (ROOT / ref).exists():
                    missing.append(f"{path.relative_to(ROOT)}:{n}: {ref}")
    assert not missing, "\n".join(missing)


def test_the_notebooks_readme_lists_every_notebook_and_no_wrong_count() -> None:
    on_disk = sorted(p.name for p in (ROOT / "notebooks").glob("*.ipynb"))
    readme = (ROOT / "notebooks" / "README.md").read_text(encoding="utf-8")
    listed = sorted(set(re.findall(r"^\| `([\w.-]+\.ipynb)` \|", readme, flags=re.M)))
    assert listed == on_disk
    from orchestrator.analysis.notebooks import NOTEBOOKS  # what the notebooks command executes

    assert sorted(NOTEBOOKS) == on_disk
    count = re.compile(r"\b(\d+|" + "|".join(NUMBERS) + r")\s+(?:analysis\s+)?notebooks\b", re.I)
    for path in (ROOT / "README.md", ROOT / "notebooks" / "README.md"):
        for word in count.findall(path.read_text(encoding="utf-8")):
            stated = int(word) if word.isdigit() else NUMBERS[word.lower()]
            assert stated == len(on_disk), f"{path.name} says {word} notebooks; there are {len(on_disk)}"
    readme_main = (ROOT / "README.md").read_text(encoding="utf-8")
    assert not re.search(r"all (" + "|".join(NUMBERS) + r")\b", readme_main.split("## The answers")[1][:600])


def test_code_names_docs_by_their_path_in_the_repository() -> None:
    """A comment or docstring that sends a reader to a Markdown file names it as the repository has it
    (``docs/<NAME>.md``, not the bare name, nor a design note that is not in the repository), and no code or doc
    names a machine's scratch folders (the shared folder under /work, /tmp's diagnosis folder)."""
    md = re.compile(r"(?<![\w./-])([\w/.-]*[A-Z][A-Z_]+\.md)\b")
    scratch = re.compile("/work/" + "shared|/tmp/" + "diag")  # (spelt in two: this line is not a mention)
    files = [p for p in ROOT.rglob("*") if p.suffix in (".py", ".md", ".yaml", ".yml", ".sh", ".toml")]
    bad = []
    for path in files:
        if {".git", ".venv", "node_modules", "data"} & set(path.relative_to(ROOT).parts):
            continue
        for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
            refs = md.findall(line) if path.suffix == ".py" else []
            for ref in refs:
                if not (ROOT / ref).is_file() and not (path.parent / ref).is_file():
                    bad.append(f"{path.relative_to(ROOT)}:{n}: {ref}")
            if scratch.search(line):
                bad.append(f"{path.relative_to(ROOT)}:{n}: {line.strip()}")
    assert not bad, "\n".join(bad)
