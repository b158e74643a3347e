"""Labels on part of the training split (tasks/labels.py) and the label terms of every method on unlabelled
samples (-100): the mean over the labelled samples of a batch, a zero that keeps the graph when there are none,
and exactly the published term when all are labelled."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from test_kd_methods import LABELS, ROBERTA, TEACHER, make_student, make_teacher

from kd_methods import build_method
from kd_methods.kd import label_cross_entropy
from orchestrator.train.trainer import EncodedSplit
from tasks import get_task
from tasks.labels import (
    UNLABELLED,
    LabelSpec,
    LabelSpecError,
    all_inputs,
    labelled_data,
    labelled_indices,
    load_unlabelled,
    mask_split,
    subset_split,
    unlabelled_path,
    write_labelled_folder,
)

# every method with a label term, set so that the term is on (the other terms are the same whatever the labels)
WITH_LABEL_TERM = {
    "ft": {},
    "kd": {"label_weight": 0.3},
    "dist": {"label_weight": 0.5},
    "pkd": {"alpha": 0.4, "beta": 1.0, "temperature": 2.0},
    "ckd": {"alpha": 0.4, "beta": 1.0, "gamma": 1.0, "window": 3},
}
WEIGHT = {"ft": 1.0, "kd": 0.3, "dist": 0.5, "pkd": 0.6, "ckd": 0.6}


def _terms(name: str, labels: torch.Tensor) -> tuple[dict[str, torch.Tensor], torch.Tensor]:
    torch.manual_seed(0)  # PKD's projections and CKD's are initialised at random
    method = build_method(name, ROBERTA, None if name == "ft" else TEACHER, **WITH_LABEL_TERM[name])
    student = make_student(ROBERTA, [9, 6, 4], 9)
    teacher = None if name == "ft" else make_teacher([9, 9, 5], 9)
    return method.loss_terms(student, teacher, labels), student.logits


@pytest.mark.parametrize("name", list(WITH_LABEL_TERM))
def test_label_term_is_the_mean_over_the_labelled_samples_only(name: str) -> None:
    full, logits = _terms(name, LABELS)
    masked, _ = _terms(name, torch.tensor([0, UNLABELLED, 1]))
    # all labelled: exactly the published term
    assert torch.equal(full["hard"], WEIGHT[name] * F.cross_entropy(logits, LABELS))
    # samples 0 and 2 labelled: the mean over those two, by hand
    by_hand = -(torch.log_softmax(logits, -1)[[0, 2], [0, 1]]).mean()
    assert masked["hard"].item() == pytest.approx(WEIGHT[name] * by_hand.item(), rel=1e-6)
    # the other terms do not read the labels
    assert {k: v.item() for k, v in full.items() if k != "hard"} == {
        k: v.item() for k, v in masked.items() if k != "hard"
    }


@pytest.mark.parametrize("name", list(WITH_LABEL_TERM))
def test_a_batch_without_labels_gives_a_zero_label_term_that_keeps_the_graph(name: str) -> None:
    terms, logits = _terms(name, torch.full((3,), UNLABELLED))
    hard = terms["hard"]
    assert hard.item() == 0.0 and hard.requires_grad
    total = sum(terms.values())
    assert torch.isfinite(total)
    (grad,) = torch.autograd.grad(hard, logits, allow_unused=True, retain_graph=True)
    assert grad is None or (torch.isfinite(grad).all() and grad.abs().sum() == 0)
    if name != "ft":  # the teacher terms still train the student
        total.backward()
        assert logits.grad is not None and logits.grad.abs().sum() > 0


def test_label_cross_entropy_gradient_ignores_unlabelled_rows() -> None:
    z = torch.randn(4, 3, requires_grad=True)
    label_cross_entropy(z, torch.tensor([2, UNLABELLED, 0, UNLABELLED])).backward()
    assert z.grad is not None
    assert z.grad[1].abs().sum() == 0 and z.grad[3].abs().sum() == 0 and z.grad[0].abs().sum() > 0
    half = torch.randn(2, 3).to(torch.bfloat16)
    assert label_cross_entropy(half, torch.tensor([1, 0])).dtype == torch.float32


# ---------------------------------------------------------------- the labelled subset


def test_label_spec_parses_and_names_what_is_wrong() -> None:
    assert LabelSpec.parse(None) is None and LabelSpec.parse("all") is None
    assert LabelSpec.parse({"fraction": 0.1}) == LabelSpec(fraction=0.1)
    spec = LabelSpec.parse({"count": 200, "seed": 3, "stratify": True})
    assert spec is not None and spec.to_dict() == {"count": 200, "seed": 3, "stratify": True}
    assert LabelSpec.parse(spec.to_dict()) == spec and spec.label() == "count=200;seed=3;stratified"
    for raw, match in [
        ({"fraction": 0.1, "count": 5}, "exactly one"),
        ({}, "exactly one"),
        ({"fraction": 0}, r"\(0, 1\]"),
        ({"fraction": 1.5}, r"\(0, 1\]"),
        ({"count": 0}, ">= 1"),
        ({"count": 2.5}, ">= 1"),
        ({"count": True}, ">= 1"),
        ({"fractoin": 0.1}, r"unknown key\(s\) \['fractoin'\]; valid"),
        ("some", "expected 'all'"),
    ]:
        with pytest.raises(LabelSpecError, match=match):
            LabelSpec.parse(raw)
    with pytest.raises(LabelSpecError, match="exceeds the 10 training samples"):
        LabelSpec(count=11).size(10)
    assert LabelSpec(fraction=0.001).size(10) == 1 and LabelSpec(fraction=0.25).size(10) == 2


def test_labelled_subset_is_fixed_per_task_and_spec_and_independent_of_anything_else() -> None:
    y = np.repeat([0, 1, 2, 3], [50, 30, 15, 5])
    spec = LabelSpec(fraction=0.2)
    a = labelled_indices(y, spec, "exception")
    assert len(a) == 20 and np.array_equal(a, np.sort(a)) and len(set(a.tolist())) == 20
    assert np.array_equal(a, labelled_indices(y, spec, "exception"))  # deterministic
    torch.manual_seed(123)  # the trial seed (torch / numpy global state) plays no part
    np.random.seed(7)
    assert np.array_equal(a, labelled_indices(y, spec, "exception"))
    assert not np.array_equal(a, labelled_indices(y, spec, "clone"))  # per task
    assert not np.array_equal(a, labelled_indices(y, LabelSpec(fraction=0.2, seed=1), "exception"))
    assert np.array_equal(labelled_indices(y, None, "exception"), np.arange(100))
    # stratified: each class's share, to within one sample, and the total exact
    s = labelled_indices(y, LabelSpec(count=20, stratify=True), "exception")
    assert len(s) == 20
    assert np.bincount(y[s], minlength=4).tolist() == [10, 6, 3, 1]
    odd = labelled_indices(y, LabelSpec(count=7, stratify=True), "exception")
    counts = np.bincount(y[odd], minlength=4)
    assert counts.sum() == 7 and np.all(np.abs(counts - np.array([50, 30, 15, 5]) * 7 / 100) < 1)


def test_subset_and_mask_keep_the_rows_a_cache_is_read_by() -> None:
    split = EncodedSplit([[1, 2], [3], [4, 5, 6], [7]], [0, 1, 2, 1], pad_id=0)
    keep = np.array([1, 3])
    sub = subset_split(split, keep)
    assert sub.input_ids == [[3], [7]] and sub.labels == [1, 1] and isinstance(sub, EncodedSplit)
    masked = mask_split(split, keep)
    assert masked.input_ids == split.input_ids and masked.labels == [UNLABELLED, 1, UNLABELLED, 1]
    _, _, labels = masked.batch(torch.tensor([0, 1]))
    assert labels.tolist() == [UNLABELLED, 1]
    assert split.labels == [0, 1, 2, 1]  # the original is untouched


def test_unlabelled_inputs_of_a_declared_task(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from tasks import TaskData, declare, registry

    # the declaration lands in the process-wide registry: undone after the test, so later tests see the built-ins
    monkeypatch.setattr(registry, "TASKS", dict(registry.TASKS))

    folder = tmp_path / "mytask"
    folder.mkdir()
    rows = [{"code": f"def f{i}():  return {i}", "label": "a" if i % 2 else "b"} for i in range(6)]
    for split in ("train", "validation", "test"):
        (folder / f"{split}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    task = declare({"name": "mytask-unl", "data": str(folder)})
    assert unlabelled_path(folder) is None
    (folder / "unlabelled.jsonl").write_text(
        json.dumps({"code": "def g():\n    return  1"})
        + "\n\n"
        + json.dumps({"code": "x = 2", "label": "zz"})
        + "\n"
    )
    path = unlabelled_path(task.data_dir)
    assert path == folder / "unlabelled.jsonl"
    extra = load_unlabelled(task, path)
    assert [(e.idx, e.code, e.label) for e in extra] == [
        (0, "def g(): return 1", UNLABELLED),
        (1, "x = 2", UNLABELLED),
    ]
    data = task.load_jsonl()
    both = all_inputs(data, extra)
    assert len(both.train) == 8 and [e.idx for e in both.train[6:]] == [6, 7]
    assert all(e.label == UNLABELLED for e in both.train[6:]) and both.train[:6] == data.train
    assert both.fingerprint() != data.fingerprint()
    cut = labelled_data(data, np.array([0, 5]))
    assert isinstance(cut, TaskData) and [e.idx for e in cut.train] == [0, 5] and cut.test == data.test
    for text, match in [
        ("{not json\n", r"unlabelled.jsonl:1: not valid JSON"),
        (json.dumps({"label": "a"}) + "\n", r"unlabelled.jsonl:1: missing field 'code'"),
        ("\n" + json.dumps({"code": 3}) + "\n", r"unlabelled.jsonl:2: field 'code' must be a string"),
        ("[1]\n", "must be a JSON object"),
        ("\n", "no unlabelled inputs"),
    ]:
        (folder / "unlabelled.jsonl").write_text(text)
        with pytest.raises(ValueError, match=match):
            load_unlabelled(task, folder / "unlabelled.jsonl")
    assert get_task("mytask-unl") is task


def test_labelled_folder_holds_the_chosen_training_records(tmp_path: Path) -> None:
    src = tmp_path / "src"
    src.mkdir()
    (src / "train.jsonl").write_text("".join(json.dumps({"i": i}) + "\n" for i in range(5)))
    for split in ("validation", "test"):
        (src / f"{split}.jsonl").write_text(json.dumps({"s": split}) + "\n")
    out = write_labelled_folder(src, tmp_path / "out", np.array([4, 1]))
    assert [json.loads(x)["i"] for x in (out / "train.jsonl").read_text().splitlines()] == [1, 4]
    assert (out / "test.jsonl").read_text() == (src / "test.jsonl").read_text()
    with pytest.raises(IndexError, match="has 5 records"):
        write_labelled_folder(src, tmp_path / "o2", np.array([5]))
