"""The hub path rehearsed offline (issue 22): hub-shaped stand-ins of the study's datasets and teachers in a
Hugging Face cache, loaded through the project's own calls (``load_dataset(<hub id>)``, ``from_pretrained(<hub
id>)``) with HF_HUB_OFFLINE=1; the data seed that fixes clone detection's 10% sample and the student tokenizers;
the teachers' input forms and load paths; the check for hub assets missing from the cache.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from models.hub_standin import CODEGPT, MODERNBERT, UNIXCODER, write_hub_models
from tasks import load_task_data, sample_fraction
from tasks.base import Example, TaskData, normalise_code
from tasks.hub_assets import HubAsset, missing_hub_assets, study_hub_assets

ROOT = Path(__file__).resolve().parent.parent
TEACHERS = [("unixcoder", UNIXCODER), ("modernbert", MODERNBERT), ("codegpt", CODEGPT)]


REHEARSAL = r"""
import json
from models.lm_teacher import load_codexglue_teacher
from models.teacher import Teacher
from tasks import data_request_key, load_task_data
from tasks.base import Example
from tasks.completion.data import codexglue_version, load_line_test
from tasks.hub_assets import missing_hub_assets, study_hub_assets
import torch

out = {}
for task in ("defect", "clone", "exception"):
    runs = {}
    for seed in (0, 1):
        d = load_task_data(task, "hub", data_seed=seed)
        runs[str(seed)] = {"sizes": [len(d.train), len(d.validation), len(d.test)], "fp": d.fingerprint(),
                      "train": [ex.code for ex in d.train], "validation": [ex.code for ex in d.validation],
                      "labels": sorted({ex.label for ex in d.train}), "key": data_request_key(task, "hub", seed)}
    runs["again"] = load_task_data(task, "hub", data_seed=1).fingerprint()
    out[task] = runs
lines = load_line_test("hub")
out["line_test"] = {"n": len(lines), "fields": sorted(lines[0]), "version": codexglue_version("hub")}
pair = [Example(0, "int f ( int a ) { return a ; }", 1, "int g ( int b ) { return b ; }")]
for name, hub_id in (("unixcoder", "microsoft/unixcoder-base"), ("modernbert", "answerdotai/ModernBERT-base")):
    t = Teacher.load(hub_id, 20).eval()
    ids = t.encode(pair, 64)[0]
    with torch.no_grad():
        logits = t(torch.tensor([ids]), torch.ones(1, len(ids), dtype=torch.long)).logits
    out[name] = {"form": t.input_form, "tokens": t.tokenizer.convert_ids_to_tokens(ids), "logits": list(logits.shape),
                 "inputs": sorted(t.tokenizer("a", "b")), "config": t.model.config.to_dict()}
cg, added = load_codexglue_teacher("codegpt")
out["codegpt"] = {"added": added, "tokenizer": len(cg.tokenizer), "rows": cg.vocab_size, "sep": cg.tokenizer.sep_token}
assets = study_hub_assets(["defect", "clone", "exception"], "hub", [
    ("unixcoder", "microsoft/unixcoder-base"), ("modernbert", "answerdotai/ModernBERT-base"),
    ("codegpt", "microsoft/CodeGPT-small-py")], line_test=True)
out["assets"] = len(assets)
out["missing"] = missing_hub_assets(assets)
print("REHEARSAL " + json.dumps(out))
"""


def test_hub_dress_rehearsal_loads_every_dataset_and_teacher_offline(
    hub_home: Path, local_data: Path
) -> None:
    """A fresh process with HF_HOME on the stand-in cache and the hub off, as a cluster node: the tasks' hub data
    with two data seeds, the line-level test set, and the teachers by hub id through the project's loaders."""
    env = {**os.environ, "HF_HOME": str(hub_home), "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1",
           "PYTHONPATH": str(ROOT)}  # fmt: skip
    for moved in ("HF_DATASETS_CACHE", "HF_HUB_CACHE"):
        env.pop(moved, None)
    proc = subprocess.run(
        [sys.executable, "-c", REHEARSAL], env=env, capture_output=True, text=True, timeout=300
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = json.loads(next(line for line in proc.stdout.splitlines() if line.startswith("REHEARSAL "))[10:])
    local = {t: {s: [json.loads(x) for x in (local_data / t / f"{s}.jsonl").open()] for s in ("train", "validation", "test")}
             for t in ("defect", "clone", "exception")}  # fmt: skip
    n = {t: [len(local[t][s]) for s in ("train", "validation", "test")] for t in local}

    # Schemas: defect's bool target, CuBERT's string labels and its "dev" split read as validation.
    assert out["defect"]["0"]["sizes"] == n["defect"] and out["defect"]["0"]["labels"] == [0, 1]
    assert out["exception"]["0"]["sizes"] == n["exception"]
    assert out["exception"]["0"]["validation"] == [
        normalise_code(r["function"]) for r in local["exception"]["validation"]
    ]
    # Clone: a 10% sample of train and validation drawn with the data seed, all of test.
    clone = out["clone"]
    for seed in (0, 1):
        rows = sample_fraction(n["clone"][0], 0.1, seed)
        assert clone[str(seed)]["train"] == [
            normalise_code(local["clone"]["train"][i]["func1"]) for i in rows
        ]
        assert clone[str(seed)]["sizes"] == [
            len(rows),
            len(sample_fraction(n["clone"][1], 0.1, seed)),
            n["clone"][2],
        ]
    assert clone["0"]["train"] != clone["1"]["train"] and clone["0"]["key"] != clone["1"]["key"]
    assert clone["again"] == clone["1"]["fp"]  # the same data seed, the same sample, in any process
    # Unsampled tasks do not change with the data seed.
    assert out["defect"]["0"]["fp"] == out["defect"]["1"]["fp"] == out["defect"]["again"]

    assert out["line_test"] == {"n": 30, "fields": ["gt", "id", "input"], "version": "codexglue-2020"}
    ux, mb = out["unixcoder"], out["modernbert"]
    assert ux["form"] == "unixcoder" and ux["tokens"][:3] == ["<s>", "<encoder-only>", "</s>"]
    assert ux["config"]["max_position_embeddings"] == 1026 and ux["config"]["type_vocab_size"] == 10
    assert mb["form"] == "default" and mb["tokens"][0] == "[CLS]" and mb["tokens"].count("[SEP]") == 2
    assert "token_type_ids" not in mb["inputs"] and mb["config"]["model_type"] == "modernbert"
    assert mb["config"]["global_attn_every_n_layers"] == 3 and ux["logits"] == mb["logits"] == [1, 20]
    cg = out["codegpt"]
    assert cg["added"] == 233 and cg["tokenizer"] == cg["rows"] and cg["sep"] == "<EOL>"
    assert out["assets"] == 7 and out["missing"] == []


def test_missing_hub_assets_name_what_to_prefetch(hub_home: Path, tmp_path: Path) -> None:
    assets = study_hub_assets(["defect", "clone", "exception"], "hub", TEACHERS, line_test=True)
    assert [a.repo_id for a in assets] == [
        "google/code_x_glue_cc_defect_detection",
        "google/code_x_glue_cc_clone_detection_big_clone_bench",
        "claudios/cubert_ETHPy150Open",
        "google/code_x_glue_cc_code_completion_line",
        UNIXCODER,
        MODERNBERT,
        CODEGPT,
    ]
    assert missing_hub_assets(assets, hub_home) == []
    empty = tmp_path / "empty-home"
    lines = missing_hub_assets(assets, empty)
    assert len(lines) == 7
    assert lines[1] == (
        "missing dataset google/code_x_glue_cc_clone_detection_big_clone_bench for task clone: not cached in "
        f"{empty} (pre-fetch: HF_HOME={empty} hf download --repo-type dataset "
        "google/code_x_glue_cc_clone_detection_big_clone_bench)"
    )
    assert '--include "exception_datasets/*" --include README.md' in lines[2]
    assert lines[4].startswith(f"missing model {UNIXCODER} for teacher unixcoder: not cached")
    assert f"hf download {UNIXCODER} --exclude" in lines[4]
    # A model snapshot without weights (e.g. the real-shape configs) is not enough to load it.
    write_hub_models(empty, real_shapes=True, repos=[MODERNBERT])
    only = missing_hub_assets([HubAsset("model", MODERNBERT, None, "teacher modernbert")], empty)
    assert len(only) == 1 and "lacks weights" in only[0]
    # Local data and folder teachers need nothing from the hub.
    assert study_hub_assets(["defect"], "data/local", [("t", str(tmp_path)), ("r", "random:roberta")]) == []


def test_unixcoder_pair_input_is_robertas_pair_template_after_the_mode_prefix(hub_home: Path) -> None:
    """As the study authors build it: the tokenizer's own pair encoding `<s> a </s></s> b </s>`, then
    `<encoder-only> </s>` inserted after `<s>` (BackOnTruck/kd-empirical teacher-ft/dataset_clone.py)."""
    from models.teacher import Teacher
    from tasks.hub_cache import hub_snapshot

    teacher = Teacher.load(hub_snapshot(UNIXCODER, "model", hub_home), 2, input_form="unixcoder")
    tok = teacher.tokenizer
    assert type(tok).__name__ == "RobertaTokenizer" and tok.convert_tokens_to_ids("<encoder-only>") == 6
    a, b = "int f ( int x ) { return x + 1 ; }", "int g ( int y ) { return y - 1 ; }"
    ids = teacher.encode([Example(0, a, 1, b)], 128)[0]
    theirs = tok(a, b)["input_ids"]
    assert ids == theirs[:1] + [6, tok.sep_token_id] + theirs[1:]
    assert tok.convert_ids_to_tokens(ids).count("</s>") == 4
    cut = teacher.encode([Example(0, a * 20, 1, b * 20)], 48)[0]
    assert len(cut) == 48 and cut[-1] == tok.sep_token_id and cut.count(tok.sep_token_id) == 4


def test_codexglue_teacher_adds_tokens_and_resizes_before_the_check(hub_home: Path, tmp_path: Path) -> None:
    """CodeGPT-small-py's tokenizer names an `<|UNKNOWN|>` its files lack: loaded plainly the tokenizer is one
    longer than the embeddings; CodeXGLUE's set-up (add, resize, then check) loads it."""
    from models.lm_teacher import LMTeacher, load_codexglue_teacher
    from tasks.completion import special_tokens
    from tasks.hub_cache import hub_snapshot

    snapshot = hub_snapshot(CODEGPT, "model", hub_home)
    with pytest.raises(ValueError, match="resize the embeddings"):
        LMTeacher.load(snapshot)
    teacher, added = load_codexglue_teacher(snapshot)
    tok = teacher.tokenizer
    assert added == len(special_tokens()) == 233 and len(tok) == teacher.vocab_size
    assert (tok.bos_token_id, tok.pad_token_id, tok.eos_token_id) == (0, 1, 2) and teacher.pad_id == 1
    assert (tok.sep_token, tok.unk_token) == ("<EOL>", "<|UNKNOWN|>")
    line = "<s> x = <NUM_LIT> <EOL> y = <STR_LIT:utf-8> </s>"
    ids = teacher.encode_texts([line])[0]
    for token in ("<s>", "<NUM_LIT>", "<EOL>", "<STR_LIT:utf-8>", "</s>"):
        assert tok.convert_tokens_to_ids(token) in ids
    # As run_lm.py's slow GPT2Tokenizer: the specials (old ones like <s> and <EOL> too) absorb the spaces beside
    # them, so no lone Ġ piece sits next to one.
    assert "\u0120" not in tok.convert_ids_to_tokens(ids)
    import torch

    with torch.no_grad():
        logits = teacher(torch.tensor([ids]), torch.ones(1, len(ids), dtype=torch.long)).logits
    assert logits.shape[-1] == len(tok)
    again = LMTeacher.load(
        teacher.save(tmp_path / "codegpt-codexglue")
    )  # a saved, extended teacher loads plainly
    assert len(again.tokenizer) == again.vocab_size == len(tok)
    assert again.encode_texts([line])[0] == ids


def _data(texts: list[str]) -> TaskData:
    return TaskData(
        [Example(i, t, i % 2) for i, t in enumerate(texts)], [Example(0, "x", 0)], [Example(0, "y", 1)]
    )


def test_family_tokenizer_is_found_by_its_request_key_without_loading(tmp_path: Path) -> None:
    """A trial finds its family's tokenizer by the data request (files, hub revision, data seed) without loading
    the family's other tasks; a new request with the same content reuses the same folder."""
    from models.tokenizer import get_student_tokenizer

    calls: list[int] = []
    texts = [f"def f{i}(x):\n    return x * {i} + {i % 7}\n" for i in range(60)]

    def load() -> list[TaskData]:
        calls.append(1)
        return [_data(texts)]

    first = get_student_tokenizer("c_java", 300, load, tmp_path, request_key="req-a")
    again = get_student_tokenizer("c_java", 300, load, tmp_path, request_key="req-a")
    assert len(calls) == 1 and again.from_cache and again.path == first.path
    other = get_student_tokenizer("c_java", 300, load, tmp_path, request_key="req-b")
    assert len(calls) == 2 and other.path == first.path and other.from_cache  # same data: same tokenizer
    changed = get_student_tokenizer("c_java", 300, lambda: [_data(texts[:40])], tmp_path, request_key="req-c")
    assert changed.path != first.path
    # A pin pointing outside the cache is ignored, not followed.
    pin = next((tmp_path / "requests").glob("*.json"))
    pin.write_text(json.dumps({"tokenizer": "../elsewhere"}))
    assert get_student_tokenizer("c_java", 300, load, tmp_path, request_key="req-a").path.parent == tmp_path


def test_data_seed_and_its_old_name(local_data: Path) -> None:
    a = load_task_data("clone", local_data, data_seed=3)
    assert a.fingerprint() == load_task_data("clone", local_data, seed=3).fingerprint()
    with pytest.raises(ValueError, match="disagree"):
        load_task_data("clone", local_data, data_seed=2, seed=3)
    assert np.array_equal(sample_fraction(100, 0.1, 5), sample_fraction(100, 0.1, 5))


def test_standin_command_reports_an_unwritable_cache_in_one_line(
    tmp_path: Path, local_data: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from models.hub_standin import main

    blocker = tmp_path / "a-file"
    blocker.write_text("")
    with pytest.raises(SystemExit) as info:
        main(["--hf-home", str(blocker / "hf"), "--data", str(local_data)])
    err = capsys.readouterr().err.strip()
    assert info.value.code == 2 and err.startswith("error: ") and "\n" not in err and "Not a directory" in err
