"""The defect and clone proxies of the local data builder: C (or Java) functions with one injected bug, and
Java methods paired with renamed, re-laid-out copies of themselves or of a neighbour (see tasks/build_local.py)."""

from __future__ import annotations

import ast
import random
import sys
from collections.abc import Callable

from tasks.examples import SPLITS
from tasks.extract import Function, parse_python
from tasks.local_pool import Pool, fill, needed_functions, normalise, seeded_rng
from tasks.local_sources import Sources, function_stream
from tasks.transform import abstract_signature, declared_names, inject_bug, rename_and_relayout
from tasks.transform_python import inject_python_bug, python_rename_and_relayout


def _code_languages(task: str, sources: Sources) -> list[str]:
    if task == "defect":
        order = ["c"] if sources.c_files else []
    else:
        order = (["java"] if sources.java_zips else []) + (["c"] if sources.c_files else [])
    return order + ["python"]


_LANGUAGE_NAMES = {"c": "C", "java": "Java", "python": "Python"}


def _pool_for(
    task: str,
    sizes: dict[str, int],
    sources: Sources,
    seed: int,
    accept_for: Callable[[str], Callable[[Function], str | None]],
) -> tuple[Pool, str]:
    """Fill a pool from the first language that yields any function; warn when falling back to Python."""
    languages = _code_languages(task, sources)
    for language in languages:
        pool = Pool(needed_functions(sizes))
        fill(pool, function_stream(language, sources, seed), accept_for(language))
        if any(pool.items[s] for s in SPLITS):
            if language != languages[0] or language == "python":
                wanted = "C" if task == "defect" else "Java"
                print(
                    f"warning: tasks.build_local: no {wanted} sources found on this machine; the {task} data are "
                    f"built from {_LANGUAGE_NAMES[language]} functions instead",
                    file=sys.stderr,
                )
            return pool, language
    raise RuntimeError(
        f"tasks.build_local: no usable function found for task '{task}' in {sources.describe()}"
    )


def build_defect(sizes: dict[str, int], sources: Sources, seed: int) -> tuple[dict[str, list[dict]], dict]:
    def accept_for(language: str) -> Callable[[Function], str | None]:
        def accept(fn: Function) -> str | None:
            if language == "python":
                ok = inject_python_bug(fn.text, seeded_rng(seed, "probe", fn.key)) is not None
            else:
                ok = inject_bug(fn.text, language, seeded_rng(seed, "probe", fn.key)) is not None
            return normalise(fn.text) if ok else None

        return accept

    pool, language = _pool_for("defect", sizes, sources, seed, accept_for)
    out: dict[str, list[dict]] = {}
    for split in SPLITS:
        samples: list[dict] = []
        for _, fn in pool.draw(split, seed, "defect"):
            rng = seeded_rng(seed, "defect", fn.key, normalise(fn.text))
            if language == "python":
                clean, buggy, kind = inject_python_bug(fn.text, rng)
            else:
                buggy, kind = inject_bug(fn.text, language, rng)
                clean = fn.text
            where = f"{fn.path}:{fn.line}"
            samples.append({"func": clean, "target": False, "project": where, "mutation": "none"})
            samples.append({"func": buggy, "target": True, "project": where, "mutation": kind})
        seeded_rng(seed, "defect", split, "order").shuffle(samples)
        samples = samples[: sizes[split]]
        out[split] = [{"id": i, **s} for i, s in enumerate(samples)]
    return out, {"language": language, "files_read": pool.files_read}


def _abstract_signature(fn: Function, language: str) -> str:
    """The function with every non-keyword identifier replaced: equal for functions that are clones of each other."""
    if language == "python":
        tree = parse_python(fn.text)
        if tree is None:
            return normalise(fn.text)
        for node in ast.walk(tree):
            if isinstance(node, ast.Name):
                node.id = "ID"
            elif isinstance(node, ast.arg):
                node.arg = "ID"
            elif isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                node.name = "ID"
        return ast.unparse(tree)
    return abstract_signature(fn.text, language)


def _clone_copy(fn: Function, language: str, rng: random.Random) -> str | None:
    if language == "python":
        return python_rename_and_relayout(fn.text, rng)
    return rename_and_relayout(fn.text, language, rng)


def build_clone(sizes: dict[str, int], sources: Sources, seed: int) -> tuple[dict[str, list[dict]], dict]:
    def accept_for(language: str) -> Callable[[Function], str | None]:
        def accept(fn: Function) -> str | None:
            # A function with no parameter or local to rename would make a positive pair whose two sides are
            # the same text once whitespace is normalised: a give-away, so such functions are left out.
            if language == "python":
                if python_rename_and_relayout(fn.text, random.Random(0)) is None:
                    return None
            elif not declared_names(fn.text, language):
                return None
            return _abstract_signature(fn, language)

        return accept

    pool, language = _pool_for("clone", sizes, sources, seed, accept_for)
    out: dict[str, list[dict]] = {}
    for split in SPLITS:
        chosen = [fn for _, fn in pool.draw(split, seed, "clone")]
        # Negatives pair a function with a neighbour in length order, so length alone does not give the class.
        chosen.sort(key=lambda f: (len(normalise(f.text)), f.key, f.text))
        samples: list[dict] = []
        for j, fn in enumerate(chosen):
            rng = seeded_rng(seed, "clone", fn.key, normalise(fn.text))
            copy = _clone_copy(fn, language, rng)
            if copy is None:
                continue
            pos = {"id1": j, "id2": j, "func1": fn.text, "func2": copy, "label": True}
            samples.append({**pos, "source1": f"{fn.path}:{fn.line}", "source2": f"{fn.path}:{fn.line}"})
            offsets = [d for d in (1, 2, 3, -1, -2, -3) if 0 <= j + d < len(chosen)]
            rng.shuffle(offsets)
            for d in offsets:
                other = chosen[j + d]
                other_copy = _clone_copy(other, language, rng)
                if other_copy is None or normalise(other.text) == normalise(fn.text):
                    continue
                neg = {"id1": j, "id2": j + d, "func1": fn.text, "func2": other_copy, "label": False}
                samples.append(
                    {**neg, "source1": f"{fn.path}:{fn.line}", "source2": f"{other.path}:{other.line}"}
                )
                break
        seeded_rng(seed, "clone", split, "order").shuffle(samples)
        samples = samples[: sizes[split]]
        out[split] = [{"id": i, **s} for i, s in enumerate(samples)]
    return out, {"language": language, "files_read": pool.files_read}
