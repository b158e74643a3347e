"""tasks/: the local data builder, JSON Lines loading and its errors, metrics, the offline hub path."""

from __future__ import annotations

import ast
import json
import random
import re
import sysconfig
import time
from collections import Counter
from pathlib import Path

import numpy as np
import pytest

from tasks import (
    EXCEPTION_LABELS,
    SPLITS,
    TASKS,
    CloneTask,
    ExceptionTask,
    HubUnavailableError,
    get_task,
    load_task_data,
    sample_fraction,
)
from tasks.build_local import HOLE, Sources, build_local, main, mask_handlers
from tasks.extract import extract_functions, source_lines
from tasks.transform import bug_sites, inject_bug, rename_and_relayout, tokenize

SIZES = {"train": 40, "validation": 12, "test": 12}
CODE_FIELDS = {"defect": ("func",), "clone": ("func1", "func2"), "exception": ("function",)}


def _rows(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("local") / "data"
    paths = build_local(out, sizes=SIZES)
    assert paths == {t: out / t for t in ("defect", "clone", "exception")}
    return out


# ------------------------------------------------------------------------------------------------ builder


def test_build_is_deterministic_and_skips_identical_rebuilds(built: Path, tmp_path: Path) -> None:
    again = tmp_path / "again"
    build_local(again, sizes=SIZES)
    files = sorted(p.relative_to(built) for p in built.rglob("*") if p.is_file())
    assert Path("manifest.json") in files and len(files) == 1 + 3 * 3
    for rel in files:
        assert (built / rel).read_bytes() == (again / rel).read_bytes(), rel

    stamps = {p: p.stat().st_mtime_ns for p in again.rglob("*.jsonl")}
    build_local(again, sizes=SIZES)
    assert {p: p.stat().st_mtime_ns for p in again.rglob("*.jsonl")} == stamps

    # Other settings rebuild (here only the asked-for task), and the new seed changes the data.
    before = (again / "exception" / "train.jsonl").read_bytes()
    build_local(again, sizes=SIZES, tasks=["exception"], seed=1)
    assert (again / "exception" / "train.jsonl").read_bytes() != before
    assert (again / "defect" / "train.jsonl").stat().st_mtime_ns == stamps[again / "defect" / "train.jsonl"]
    manifest = json.loads((again / "manifest.json").read_text())
    assert manifest["tasks"]["exception"]["settings"]["seed"] == 1
    assert manifest["tasks"]["defect"]["settings"]["seed"] == 0


def test_splits_are_full_labels_valid_and_balanced(built: Path) -> None:
    manifest = json.loads((built / "manifest.json").read_text())
    assert manifest["tasks"]["defect"]["language"] == "c"
    assert manifest["tasks"]["exception"]["language"] == "python"
    for name, task in TASKS.items():
        data = load_task_data(name, built)
        for split in SPLITS:
            examples = data.split(split)
            # This machine has far more code than these sizes need, so nothing is clamped.
            assert len(examples) == SIZES[split], (name, split)
            assert [ex.idx for ex in examples] == list(range(len(examples)))
            assert all(0 <= ex.label < task.num_labels for ex in examples)
            assert all(ex.code and (ex.code2 is not None) == task.paired for ex in examples)
            if name != "exception":
                counts = Counter(ex.label for ex in examples)
                assert abs(counts[0] - counts[1]) <= 1, (name, split, counts)
        assert manifest["tasks"][name]["counts"] == SIZES


def test_no_source_function_is_in_two_splits(built: Path) -> None:
    provenance = {"defect": ("project",), "clone": ("source1", "source2"), "exception": ("info",)}
    for name, fields in provenance.items():
        sources: dict[str, set[str]] = {}
        codes: dict[str, set[str]] = {}
        for split in SPLITS:
            rows = _rows(built / name / f"{split}.jsonl")
            sources[split] = {r[f] for r in rows for f in fields}
            codes[split] = {" ".join(r[CODE_FIELDS[name][0]].split()) for r in rows}
        for a, b in (("train", "validation"), ("train", "test"), ("validation", "test")):
            assert not sources[a] & sources[b], (name, a, b)
            assert not codes[a] & codes[b], (name, a, b)


def _one_edit(a: str, b: str) -> tuple[str, str]:
    """(what ``a`` has, what ``b`` has) once their common prefix and suffix are cut off."""
    p = 0
    while p < min(len(a), len(b)) and a[p] == b[p]:
        p += 1
    q = 0
    while q < min(len(a), len(b)) - p and a[len(a) - 1 - q] == b[len(b) - 1 - q]:
        q += 1
    return a[p : len(a) - q], b[p : len(b) - q]


def test_defect_bugs_are_single_edits_of_their_clean_twins(built: Path) -> None:
    seen_kinds: set[str] = set()
    for split in SPLITS:
        rows = _rows(built / "defect" / f"{split}.jsonl")
        by_source: dict[str, dict[bool, dict]] = {}
        for r in rows:
            assert (r["mutation"] == "none") == (r["target"] is False)
            by_source.setdefault(r["project"], {})[r["target"]] = r
        pairs = [v for v in by_source.values() if len(v) == 2]
        assert len(pairs) >= len(rows) // 2 - 1
        for pair in pairs:
            kind = pair[True]["mutation"]
            seen_kinds.add(kind)
            was, now = _one_edit(pair[False]["func"], pair[True]["func"])
            if kind == "off_by_one":
                assert was + now == "="
            elif kind == "flipped_equality":
                assert {was, now} == {"=", "!"}
            elif kind == "swapped_plus_minus":
                assert {was, now} == {"+", "-"}
            elif kind == "swapped_and_or":
                assert {was, now} == {"&&", "||"}
            elif kind == "wrong_index":
                assert was == "" and now in (" + 1", "+1")
            else:
                assert kind in ("removed_guard", "dropped_release") and now == "" and was.strip()
    assert len(seen_kinds) >= 4


def test_clone_positives_are_renamed_copies(built: Path) -> None:
    rows = _rows(built / "clone" / "train.jsonl")
    positives = [r for r in rows if r["label"] is True]
    assert positives
    for r in positives:
        assert r["source1"] == r["source2"]
        a, b = tokenize(r["func1"], "java"), tokenize(r["func2"], "java")
        assert [t.kind for t in a] == [t.kind for t in b]
        changed = [(x, y) for x, y in zip(a, b) if x.text != y.text]
        assert changed and all(x.kind == "id" for x, _ in changed)
        # A consistent renaming: no identifier maps to two names.
        renamed = {(x.text, y.text) for x, y in changed}
        assert len({old for old, _ in renamed}) == len(renamed)
    for r in rows:
        assert " ".join(r["func1"].split()) != " ".join(r["func2"].split())


def test_exception_samples_mask_the_labelled_handler(built: Path) -> None:
    for split in SPLITS:
        for r in _rows(built / "exception" / f"{split}.jsonl"):
            fn, label = r["function"], r["label"]
            assert label in EXCEPTION_LABELS and fn.count(HOLE) == 1
            tree = ast.parse(fn)
            holes = [
                h
                for h in ast.walk(tree)
                if isinstance(h, ast.ExceptHandler) and isinstance(h.type, ast.Name) and h.type.id == HOLE
            ]
            assert len(holes) == 1
            # Back in the original file, the hole's place holds exactly the labelled type.
            path, line = r["info"].rsplit(":", 1)
            with open(path, encoding="utf-8", errors="replace") as f:
                lines = source_lines(f.read())[int(line) - 1 :]
            indent = lines[0][: len(lines[0]) - len(lines[0].lstrip())]
            original = "".join(x[len(indent) :] if x.startswith(indent) else x for x in lines)
            before, after = fn.split(HOLE)
            assert original.startswith(before)
            written = re.match(r"[A-Za-z_][\w.]*", original[len(before) :]).group(0)
            assert written.split(".")[-1] == label
            assert original[len(before) + len(written) :].startswith(after)


MODULE = """import json


def load(path):
    try:
        return json.load(open(path))
    except (OSError, ValueError):
        return None


class Store:
    def get(self, key):
        try:
            return self.data[key]
        except KeyError:
            return None

    def size(self):
        return len(self.data)


def fetch(url):
    try:
        return urllib.request.urlopen(url)
    except urllib.error.HTTPError as err:
        return err.code
    except LookupError:
        return None
"""


def test_mask_handlers_on_known_source() -> None:
    samples = mask_handlers(MODULE, "mod.py", lambda key: random.Random(0))
    assert [(s["key"], s["label"], s["line"]) for s in samples] == [
        ("mod.py:Store.get", "KeyError", 12),
        ("mod.py:fetch", "HTTPError", 22),
    ]
    assert samples[0]["function"] == (
        "def get(self, key):\n    try:\n        return self.data[key]\n    except __HOLE__:\n        return None"
    )
    assert "except __HOLE__ as err:" in samples[1]["function"]
    assert "except LookupError:" in samples[1]["function"]


def test_python_fallback_when_no_c_or_java(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    email = Path(sysconfig.get_paths()["stdlib"]) / "email"
    sources = Sources(c_files=(), java_zips=(), python_roots=(email,))
    sizes = {"train": 16, "validation": 6, "test": 6}
    build_local(tmp_path, sizes=sizes, tasks=["defect", "clone"], sources=sources)
    assert "built from Python functions instead" in capsys.readouterr().err
    manifest = json.loads((tmp_path / "manifest.json").read_text())
    assert {t: manifest["tasks"][t]["language"] for t in ("defect", "clone")} == {
        "defect": "python",
        "clone": "python",
    }
    for r in _rows(tmp_path / "defect" / "train.jsonl"):
        ast.parse(r["func"])
        assert str(r["project"]).startswith(str(email))
    for r in _rows(tmp_path / "clone" / "train.jsonl"):
        ast.parse(r["func1"])
        ast.parse(r["func2"])
    data = load_task_data("clone", tmp_path)
    assert [len(data.split(s)) for s in SPLITS] == [16, 6, 6]


def test_cli_writes_asked_tasks_and_rejects_unknown(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "cli"
    argv = ["--out", str(out), "--train", "8", "--validation", "4", "--test", "4", "--tasks", "exception"]
    assert main(argv) == 0
    assert "exception:" in capsys.readouterr().out
    assert sorted(p.name for p in out.iterdir()) == ["exception", "manifest.json"]
    assert len(_rows(out / "exception" / "validation.jsonl")) == 4
    with pytest.raises(SystemExit):
        main(["--out", str(out), "--tasks", "nope"])
    with pytest.raises(ValueError, match=r"unknown split 'dev'.*'validation'"):
        build_local(out, sizes={"dev": 3})
    with pytest.raises(ValueError, match=r"unknown task 'nope'.*'defect'"):
        build_local(out, tasks=["nope"])


# ------------------------------------------------------------------------------------ extraction, edits

C_SOURCE = r"""
#define WRAP(x) { x }
static const char *msg = "int fake(void) { return 1; }";

/* a comment with a brace { */
static int
count_upper(const char *s, size_t n)
{
    size_t i;
    int total = 0;
    if (s == NULL)
        return -1;
    for (i = 0; i < n; i++) {
        if (s[i] >= 'A' && s[i] <= 'Z')
            total += 1;
    }
    return total;
}

int short_one(void) { return 0; }
"""

JAVA_SOURCE = """
class A {
    @Override
    public int size(List<String> items) throws IOException {
        int n = 0;
        for (String s : items) { if (s != null) { n++; } }
        return n;
    }
    void run() {
        Runnable r = new Runnable() {
            public void run() { System.out.println("}"); }
        };
    }
}
"""


def test_extract_functions() -> None:
    c = extract_functions(C_SOURCE, "c", "x.c", "x.c")
    assert [f.name for f in c] == ["count_upper"]  # one-liners fall under the 3-line minimum
    assert c[0].text.startswith("static int\ncount_upper(") and c[0].text.endswith("return total;\n}")
    assert c[0].line == 6 and c[0].key == "x.c:count_upper"
    java = extract_functions(JAVA_SOURCE, "java", "A.java", "A.java")
    assert [f.name for f in java] == ["size", "run"]
    assert java[0].text.startswith("public int size(")  # annotations are not part of the method


def test_bug_injection_and_clone_copy_on_c() -> None:
    fn = extract_functions(C_SOURCE, "c", "x.c", "x.c")[0].text
    sites = bug_sites(fn, "c")
    assert set(sites) == {"off_by_one", "removed_guard", "swapped_and_or", "flipped_equality", "wrong_index"}
    kinds = set()
    for seed in range(40):
        buggy, kind = inject_bug(fn, "c", random.Random(seed))
        kinds.add(kind)
        assert buggy != fn
        assert "'A'" in buggy and "'Z'" in buggy  # literals are never edited
    assert kinds == set(sites)
    guard_removed = bug_sites(fn, "c")["removed_guard"][0]
    assert (
        fn.encode()[guard_removed.start : guard_removed.end].decode().strip()
        == "if (s == NULL)\n        return -1;"
    )

    copy = rename_and_relayout(fn, "c", random.Random(3))
    a, b = tokenize(fn, "c"), tokenize(copy, "c")
    assert len(a) == len(b)
    mapping = {x.text: y.text for x, y in zip(a, b) if x.text != y.text}
    assert set(mapping) == {"s", "n", "i", "total"}
    assert "count_upper" in copy and "NULL" in copy


# ------------------------------------------------------------------------------------------------ loading


def _write(directory: Path, split_lines: dict[str, list[str]]) -> None:
    directory.mkdir(parents=True, exist_ok=True)
    for split, lines in split_lines.items():
        (directory / f"{split}.jsonl").write_text("".join(line + "\n" for line in lines), encoding="utf-8")


GOOD_DEFECT = [
    json.dumps({"func": "int f(int a)\n{  return a; }", "target": True}),
    json.dumps({"func": "x", "target": 0}),
]


def test_load_jsonl_reads_and_normalises(tmp_path: Path) -> None:
    _write(tmp_path / "defect", {s: GOOD_DEFECT for s in SPLITS})
    data = load_task_data("defect", tmp_path)
    assert data.train[0].code == "int f(int a) { return a; }" and data.train[0].label == 1
    assert data.test[1].label == 0 and data.test[1].idx == 1
    assert len(load_task_data("defect", tmp_path, max_samples=1).validation) == 1
    code, code2, label = get_task("clone").preprocess({"func1": "a  b", "func2": "c\n\td", "label": False})
    assert (code, code2, label) == ("a b", "c d", 0)
    assert get_task("exception").preprocess({"function": "f", "label": "KeyError"}) == ("f", None, 1)


@pytest.mark.parametrize(
    ("task", "train_lines", "pattern"),
    [
        ("defect", [*GOOD_DEFECT, '{"func": "x", "target": '], r"train\.jsonl:3: not valid JSON"),
        ("defect", [GOOD_DEFECT[0], json.dumps({"func": "x"})], r"train\.jsonl:2: missing field 'target'"),
        (
            "defect",
            [json.dumps({"func": "x", "target": 2})],
            r"train\.jsonl:1: unknown label 2 in field 'target'",
        ),
        ("defect", [json.dumps({"func": 5, "target": 1})], r"train\.jsonl:1: field 'func' must be a string"),
        ("clone", [json.dumps({"func1": "a", "label": 1})], r"train\.jsonl:1: missing field 'func2'"),
        (
            "exception",
            [
                json.dumps({"function": "f", "label": "KeyError"}),
                json.dumps({"function": "f", "label": "OopsError"}),
            ],
            r"train\.jsonl:2: unknown label 'OopsError' in field 'label'; valid: \['ValueError', 'KeyError'",
        ),
    ],
)
def test_bad_records_name_file_and_line(
    tmp_path: Path, task: str, train_lines: list[str], pattern: str
) -> None:
    good = {
        "defect": GOOD_DEFECT[0],
        "clone": json.dumps({"func1": "a", "func2": "b", "label": True}),
        "exception": json.dumps({"function": "f", "label": "KeyError"}),
    }[task]
    _write(tmp_path / task, {"train": train_lines, "validation": [good], "test": [good]})
    with pytest.raises(ValueError, match=pattern) as info:
        load_task_data(task, tmp_path)
    assert str(tmp_path / task / "train.jsonl") in str(info.value)


def test_empty_and_missing_split_files(tmp_path: Path) -> None:
    _write(tmp_path / "defect", {"train": GOOD_DEFECT, "validation": ["", "  "], "test": GOOD_DEFECT})
    with pytest.raises(
        ValueError, match=r"validation\.jsonl: the validation split of task 'defect' is empty"
    ):
        load_task_data("defect", tmp_path)
    (tmp_path / "defect" / "validation.jsonl").unlink()
    with pytest.raises(FileNotFoundError, match=r"validation\.jsonl: missing validation split"):
        load_task_data("defect", tmp_path)
    with pytest.raises(FileNotFoundError, match=r"no data folder for task 'clone'.*tasks\.build_local"):
        load_task_data("clone", tmp_path)
    with pytest.raises(ValueError, match="max_samples must be a positive int"):
        load_task_data("defect", tmp_path, max_samples=0)


def test_get_task_registry_and_unknown_name() -> None:
    assert sorted(TASKS) == ["clone", "defect", "exception"]
    defect, clone, exc = get_task("defect"), get_task("clone"), get_task("exception")
    assert (defect.family, clone.family, exc.family) == ("c_java", "c_java", "python")
    assert (defect.paired, clone.paired, exc.paired) == (False, True, False)
    assert (defect.num_labels, clone.num_labels, exc.num_labels) == (2, 2, 20)
    assert exc.label_names == EXCEPTION_LABELS and exc.label_names[5] == "IOError"
    assert (exc.hf_id, exc.hf_config) == ("claudios/cubert_ETHPy150Open", "exception_datasets")
    with pytest.raises(KeyError, match=r"unknown task 'vuln'; valid: \['clone', 'defect', 'exception'\]"):
        get_task("vuln")


# ----------------------------------------------------------------------------------------------- metrics


def test_binary_metrics_and_selection_score() -> None:
    task = get_task("defect")
    labels = np.array([1, 0, 0, 1])
    logits = np.array([[0.1, 0.9], [2.0, -1.0], [0.0, 0.5], [-3.0, 3.0]])  # predicts 1, 0, 1, 1
    m = task.metrics(logits, labels)
    # accuracy 3/4; class 1: TP 2, FP 1, FN 0, so precision 2/3, recall 1, F1 0.8
    assert m == pytest.approx({"accuracy": 0.75, "f1": 0.8})
    assert task.selection_score(m) == pytest.approx(1.55)
    assert get_task("clone").metrics(logits, 1 - labels)["f1"] == pytest.approx(
        2 * (1 / 3) * 0.5 / (1 / 3 + 0.5)
    )
    with pytest.raises(ValueError, match=r"logits must have shape \[N, 2\], got \[4, 3\]"):
        task.metrics(np.zeros((4, 3)), labels)
    with pytest.raises(ValueError, match="label 2 is outside 0..1"):
        task.metrics(logits, np.array([0, 1, 2, 0]))
    with pytest.raises(KeyError, match=r"needs \['accuracy', 'f1'\]; missing \['f1'\]"):
        task.selection_score({"accuracy": 0.5})


def test_exception_metrics_top3_and_macro_f1() -> None:
    task = get_task("exception")
    # Five classes in play; the other fifteen get logits far below.
    logits = np.full((4, 20), -100.0)
    logits[0, :5] = [5, 4, 3, 2, 1]  # label 0: top-1 right
    logits[1, :5] = [0, 3, 5, 4, 1]  # label 1: predicted 2, label ranked third
    logits[2, :5] = [5, 4, 3, 2, 1]  # label 4: predicted 0, label ranked fifth
    logits[3, :5] = [1, 2, 3, 5, 4]  # label 3: top-1 right
    labels = np.array([0, 1, 4, 3])
    m = task.metrics(logits, labels)
    # Macro F1 over the classes in labels or predictions {0,1,2,3,4}: class 0 P 1/2 R 1 -> 2/3; class 3 -> 1;
    # classes 1, 2, 4 -> 0.  (2/3 + 1) / 5 = 1/3.
    assert m == pytest.approx({"accuracy": 0.5, "top3_accuracy": 0.75, "macro_f1": 1 / 3})
    assert task.selection_score(m) == pytest.approx(1.25)
    assert all(0.0 <= v <= 1.0 for v in m.values())


# ----------------------------------------------------------------------------------------------- the hub


def test_load_hub_offline_fails_fast_with_the_dataset_id(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import datasets.config

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    saved = datasets.config.HF_HUB_OFFLINE
    for name, task in TASKS.items():
        start = time.monotonic()
        with pytest.raises(HubUnavailableError) as info:
            task.load_hub(data_seed=0, max_samples=4, cache_dir=tmp_path / "cache")
        assert time.monotonic() - start < 20, name
        message = str(info.value)
        assert task.hf_id in message and "offline mode is on" in message
        assert "HF_HOME" in message and "python -m tasks.build_local" in message
    assert datasets.config.HF_HUB_OFFLINE == saved  # the forced offline switch is undone


def test_clone_hub_sample_is_seeded_ten_percent() -> None:
    a = sample_fraction(1000, 0.1, seed=7)
    assert len(a) == 100 and np.all(np.diff(a) > 0) and a[0] >= 0 and a[-1] < 1000
    assert np.array_equal(a, sample_fraction(1000, 0.1, seed=7))
    assert not np.array_equal(a, sample_fraction(1000, 0.1, seed=8))
    assert np.array_equal(sample_fraction(5, 1.0, seed=0), np.arange(5))
    assert len(sample_fraction(3, 0.1, seed=0)) == 1 and len(sample_fraction(0, 0.1, seed=0)) == 0
    with pytest.raises(ValueError, match=r"fraction must be in \(0, 1\]"):
        sample_fraction(10, 0.0, seed=0)
    clone = get_task("clone")
    assert np.array_equal(clone.hub_rows("train", 1000, 7), a)
    assert len(clone.hub_rows("validation", 500, 7)) == 50
    assert clone.hub_rows("test", 1000, 7) is None
    assert get_task("defect").hub_rows("train", 1000, 7) is None


def test_load_hub_path_through_datasets_on_a_local_folder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The real ``load_hub`` code (datasets.load_dataset, split mapping, 10% sample, max_samples) on a folder
    ``load_dataset`` reads offline; the hub id is swapped for that folder."""
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    folder = tmp_path / "cubert"
    folder.mkdir()
    for split, n in (("train", 30), ("dev", 10), ("test", 20)):
        rows = [{"function": f"def f{i}():  pass", "label": EXCEPTION_LABELS[i % 20]} for i in range(n)]
        (folder / f"{split}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))

    class FolderExceptions(ExceptionTask):
        hf_id = str(folder)
        hf_config = None

    data = FolderExceptions().load_hub(max_samples=12, cache_dir=tmp_path / "cache")
    assert [len(data.split(s)) for s in SPLITS] == [12, 10, 12]
    assert data.validation[3].code == "def f3(): pass" and data.validation[3].label == 3

    for split, n in (("train", 30), ("validation", 10), ("test", 20)):
        rows = [{"func1": f"a{i}", "func2": f"b{i}", "label": i % 2 == 0} for i in range(n)]
        (folder / f"{split}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    (folder / "dev.jsonl").unlink()

    class FolderClones(CloneTask):
        hf_id = str(folder)

    clones = FolderClones().load_hub(data_seed=3, cache_dir=tmp_path / "cache2")
    # 10% of train and validation (seeded), all of test.
    assert [len(clones.split(s)) for s in SPLITS] == [3, 1, 20]
    picked = sample_fraction(30, 0.1, seed=3)
    assert [ex.code for ex in clones.train] == [f"a{i}" for i in picked]
    assert all(ex.label == int(int(ex.code[1:]) % 2 == 0) for ex in clones.train)


def test_class_label_columns_map_by_name() -> None:
    import datasets

    features = datasets.Features(
        {"function": datasets.Value("string"), "label": datasets.ClassLabel(names=["KeyError", "NameError"])}
    )
    part = datasets.Dataset.from_dict({"function": ["a", "b"], "label": [1, 0]}, features=features)
    examples = get_task("exception").examples_from_dataset(part, "train")
    assert [ex.label for ex in examples] == [
        EXCEPTION_LABELS.index("NameError"),
        EXCEPTION_LABELS.index("KeyError"),
    ]
    bad = datasets.Dataset.from_dict({"function": ["a"], "label": ["Nope"]})
    with pytest.raises(ValueError, match=r"split 'train' row 0: unknown label 'Nope'"):
        get_task("exception").examples_from_dataset(bad, "train")


def test_headline_metric_and_majority_baseline_by_hand() -> None:
    from tasks import get_task

    defect, clone, exc = get_task("defect"), get_task("clone"), get_task("exception")
    assert (defect.headline_metric, clone.headline_metric, exc.headline_metric) == (
        "accuracy",
        "f1",
        "accuracy",
    )
    assert defect.majority_baseline([0, 0, 0, 1]) == pytest.approx(0.75)  # always 0: 3 of 4
    assert defect.majority_baseline([1, 1, 0, 1, 1]) == pytest.approx(0.8)
    # clone F1: the best constant is "always clone": precision p, recall 1 -> 2p / (1 + p); "never" scores 0
    assert clone.majority_baseline([0, 0, 0, 1]) == pytest.approx(2 * 0.25 / 1.25)
    assert clone.majority_baseline([1, 1, 1, 0]) == pytest.approx(2 * 0.75 / 1.75)
    assert clone.majority_baseline([0, 0]) == 0.0
    assert exc.majority_baseline([0, 2, 2, 5, 2]) == pytest.approx(0.6)
    logits = np.eye(20, dtype=np.float32)[[2, 2, 0, 5, 1]]
    head = exc.headline(exc.metrics(logits, np.array([0, 2, 2, 5, 2])), [0, 2, 2, 5, 2])
    assert head == {"score": pytest.approx(0.4), "majority_baseline": pytest.approx(0.6)}


def test_selection_baseline_by_hand() -> None:
    """What a constant prediction scores on the selection score (tuning's degenerate flag): accuracy + F1 for the
    binary tasks (the best constant may be the minority class: F1 pays), accuracy + top-3 for exception (the three
    commonest classes for every input)."""
    from tasks import get_task

    defect, exc = get_task("defect"), get_task("exception")
    # p = 0.3 positive: "always 1" scores 0.3 + 2 * 0.3 / 1.3 = 0.7615 > "always 0": 0.7 + 0
    labels = [1] * 3 + [0] * 7
    assert defect.selection_baseline(labels) == pytest.approx(0.3 + 0.6 / 1.3)
    assert defect.selection_baseline([0] * 9 + [1]) == pytest.approx(0.9)  # "always 0": 0.9 + 0 > 0.1 + 0.18
    # exception: class 2 is 3/8, then 5 (2/8), then 0 and 7 (1/8 each; ties to the lower class): top-3 {2, 5, 0}
    labels = [2, 2, 2, 5, 5, 0, 7, 9]
    assert exc.selection_baseline(labels) == pytest.approx(3 / 8 + 6 / 8)
    assert np.isnan(exc.selection_baseline([]))
    # a model that learnt something scores above it
    logits = np.eye(20, dtype=np.float32)[labels]
    assert exc.selection_score(exc.metrics(logits, np.array(labels))) > exc.selection_baseline(labels)


def test_a_macro_f1_baseline_is_at_least_chance() -> None:
    """Macro-F1 of a constant is its one class's F1 over K classes, far below what a blind guess with the class
    shares scores (about 1 / K): the baseline is the higher of the two, so chance-level runs count as degenerate.
    (Measured by an audit: random logits beat the constant-only baseline 94% of the time on 4 classes.)"""
    import copy

    from tasks import get_task

    task = copy.copy(get_task("exception"))
    task.headline_metric = "macro_f1"
    labels = np.array([0] * 8 + [1] * 8 + [2] * 8 + [3] * 4)
    # constant "0": F1 of class 0 = 2 * (8/28) / (1 + 8/28) = 0.444, over the 4 classes present -> 0.111
    constant = 2 * (8 / 28) / (1 + 8 / 28) / 4
    base = task.majority_baseline(labels)
    # chance: shuffled labels predict each class as often as it occurs, so each class's F1 is TP / n_c with
    # expectation p_c, and macro-F1's is the mean of the shares over the 4 classes present: 1 / 4
    assert constant < 0.2 and base == pytest.approx(0.25)
    rng = np.random.default_rng(7)
    blind = []
    for _ in range(200):  # uniform random guesses among the 4 classes
        logits = np.full((labels.size, task.num_labels), -1e9, dtype=np.float32)
        logits[:, :4] = rng.normal(size=(labels.size, 4))
        blind.append(task.metrics(logits, labels)["macro_f1"])
    assert np.mean(np.array(blind) > base) < 0.6  # was 94% above the constant-only baseline
    # accuracy and binary F1 keep their constant baselines: chance never beats those
    assert get_task("exception").majority_baseline(labels) == pytest.approx(8 / 28)
    assert get_task("clone").majority_baseline([0, 0, 0, 1]) == pytest.approx(2 * 0.25 / 1.25)
