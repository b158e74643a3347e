"""Compute close to the hardware: vectorised cache reads, the prefetching reader, bf16 autocast, SDPA attention."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from kd_methods import ModelShape, SignalSpec, build_method
from models import build_student
from models.teacher import Teacher
from orchestrator.cache.build import get_or_build
from orchestrator.cache.key import CacheRequest
from orchestrator.cache.serve import CachedTeacher
from orchestrator.train.config import TrainConfig
from orchestrator.train.online_teacher import OnlineTeacher
from orchestrator.train.prefetch import Prefetcher, prefetchable
from orchestrator.train.trainer import EncodedSplit, autocast, encode_split, resolve_precision
from orchestrator.train.trial import TrialConfig, run_trial
from tasks import SPLITS, load_task_data

MAXLEN = 64
SPEC = SignalSpec(logits=True, cls_layers=(1, 3), token_layers=(0, 2))


def _synthetic_cache(seed: int = 0) -> tuple[CachedTeacher, dict[str, np.ndarray], list[int]]:
    """Three shards of random per-sample and ragged fields, as a manifest and arrays (what ``open`` reads)."""
    rng = np.random.default_rng(seed)
    bounds = [(0, 5), (5, 11), (11, 14)]
    lengths = rng.integers(1, 9, size=14).tolist()
    shards, arrays, whole = [], {}, {"logits": [], "cls.1": [], "tokens.0": []}
    for k, (start, end) in enumerate(bounds):
        lens = lengths[start:end]
        fields = {
            "logits": rng.standard_normal((end - start, 4)).astype(np.float32),
            "cls.1": rng.standard_normal((end - start, 6)).astype(np.float16),
            "tokens.0": rng.standard_normal((sum(lens), 6)).astype(np.float16),
            "offsets": np.concatenate([[0], np.cumsum(lens)]).astype(np.int64),
        }
        shards.append({"dir": f"train/shard-{k}", "start": start, "end": end, "files": dict.fromkeys(fields)})
        for name, arr in fields.items():
            arrays[f"train/shard-{k}/{name}.npy"] = arr
        for name in whole:
            per = fields[name]
            if name == "tokens.0":
                off = fields["offsets"]
                per = [per[off[i] : off[i + 1]] for i in range(end - start)]
            whole[name].extend(list(per))
    manifest = {
        "key": "synthetic",
        "bytes": 0,
        "request": {},
        "samples": {"train": 14},
        "shards": {"train": shards},
    }
    return CachedTeacher(manifest, arrays), whole, lengths


def test_vectorised_reads_equal_a_per_sample_reference_across_shards() -> None:
    cached, whole, lengths = _synthetic_cache()
    spec = SignalSpec(logits=True, cls_layers=(1,), token_layers=(0,))
    idx = torch.tensor([13, 0, 6, 5, 4, 11, 6, 2])  # every shard, a repeat, shard edges
    got = cached.signals("train", idx, spec)
    np.testing.assert_array_equal(got.logits.numpy(), np.stack([whole["logits"][i] for i in idx]))
    np.testing.assert_array_equal(got.cls[1].numpy(), np.stack([whole["cls.1"][i] for i in idx]))
    assert got.cls[1].dtype == torch.float16  # served in the stored dtype; the trainer upcasts on the device
    width = max(lengths[i] for i in idx)
    assert got.tokens[0].shape == (len(idx), width, 6)
    for b, i in enumerate(idx.tolist()):
        n = lengths[i]
        assert got.token_mask[b].sum() == n and got.token_mask[b, :n].all()
        np.testing.assert_array_equal(got.tokens[0][b, :n].numpy(), whole["tokens.0"][i])
        assert not got.tokens[0][b, n:].any()
    with pytest.raises(IndexError, match="sample 14 is outside the train split"):
        cached.signals("train", torch.tensor([1, 14]), spec)


def test_encoded_split_batch_pads_like_the_loop_it_replaced() -> None:
    rows = [[5, 6, 7], [1], [9, 9, 9, 9, 9], [], [3, 4]]
    split = EncodedSplit(rows, [0, 1, 2, 3, 4], pad_id=1)
    ids, mask, labels = split.batch(torch.tensor([2, 0, 3]))
    assert ids.tolist() == [[9, 9, 9, 9, 9], [5, 6, 7, 1, 1], [1, 1, 1, 1, 1]]
    assert mask.tolist() == [[1, 1, 1, 1, 1], [1, 1, 1, 0, 0], [0, 0, 0, 0, 0]]
    assert labels.tolist() == [2, 0, 3] and ids.dtype == mask.dtype == labels.dtype == torch.long


def test_prefetcher_yields_every_batch_in_order_with_its_signals() -> None:
    cached, _, _ = _synthetic_cache(1)
    split = EncodedSplit([[i + 2] * (1 + i % 4) for i in range(14)], list(range(14)), pad_id=0)
    batches = list(torch.randperm(14, generator=torch.Generator().manual_seed(3)).split(4))
    spec = SignalSpec(logits=True, token_layers=(0,))
    assert prefetchable(cached) and not prefetchable(object())
    seen = []
    for batch, indices in zip(
        Prefetcher(split, batches, torch.device("cpu"), cached, spec), batches, strict=True
    ):
        ids, mask, labels = split.batch(indices)
        assert (
            torch.equal(batch.indices, indices)
            and torch.equal(batch.ids, ids)
            and torch.equal(batch.mask, mask)
        )
        want = cached.signals("train", indices, spec)
        got = cached.finish(batch.signals)
        assert torch.equal(got.logits, want.logits) and torch.equal(got.tokens[0], want.tokens[0])
        seen.append(labels)
    assert len(seen) == len(batches)
    # Without a teacher: inputs only; an error on the reader thread reaches the training loop.
    assert all(b.signals is None for b in Prefetcher(split, batches, torch.device("cpu")))
    with pytest.raises(IndexError):
        list(Prefetcher(split, [torch.tensor([0, 99])], torch.device("cpu"), cached, spec))


def test_precision_setting_resolves_and_is_validated() -> None:
    assert resolve_precision("auto", torch.device("cpu")) == "fp32"
    assert resolve_precision("bf16", torch.device("cpu")) == "bf16"
    with pytest.raises(ValueError, match=r"precision must be one of \['auto', 'fp32', 'bf16'\]"):
        TrainConfig(precision="fp16")


def test_students_and_teachers_use_sdpa_attention(tiny_teacher: Path) -> None:
    student = build_student("roberta-tiny", 3)
    assert student.model.config._attn_implementation == "sdpa"
    assert Teacher.load(str(tiny_teacher), 20).model.config._attn_implementation == "sdpa"


@pytest.fixture(scope="module")
def data(local_data: Path):
    return load_task_data("exception", local_data, max_samples=40)


def test_bf16_cache_is_within_bf16_tolerance_of_the_fp32_teacher(
    tiny_teacher: Path, data, tmp_path: Path
) -> None:
    """Stated tolerance: a bf16 teacher pass is within 5e-2 (absolute and relative) of fp32 on logits and states,
    and CKD's loss from its Gram numbers within 5% (bf16 keeps 8 bits of mantissa: ~4e-3 per rounding, a few
    roundings deep). A bf16 cache has its own key; an fp32 request's key is unchanged by the setting."""
    teacher = Teacher.load(str(tiny_teacher), 20)
    encoded = {s: encode_split(data.split(s), teacher.encode, MAXLEN, teacher.pad_id) for s in SPLITS}
    online = OnlineTeacher(teacher, encoded)
    method = build_method("ckd", ModelShape(2, 16), teacher.shape)
    _, derived = method.cache_needs()
    reports = {}
    for precision in ("fp32", "bf16"):
        request = CacheRequest(
            str(tiny_teacher),
            "exception",
            SPEC,
            MAXLEN,
            "float32",
            derived=(derived,),
            batch_size=8,
            shard_samples=16,
            precision=precision,
        )
        reports[precision] = get_or_build(request, data, 20, tmp_path, use_ray=False)
    assert reports["fp32"].key != reports["bf16"].key
    idx = torch.tensor([4, 1, 9, 2, 30])
    bf16 = CachedTeacher.open(reports["bf16"].path).signals("train", idx, SPEC)
    live = online.signals("train", idx, SPEC)
    torch.testing.assert_close(bf16.logits, live.logits, rtol=5e-2, atol=5e-2)
    for layer in SPEC.cls_layers:
        torch.testing.assert_close(bf16.cls[layer], live.cls[layer], rtol=5e-2, atol=5e-2)
    assert not torch.equal(bf16.logits, live.logits)  # the bf16 pass really ran in bf16
    torch.manual_seed(0)
    hidden = tuple(torch.randn(5, 20, 16) for _ in range(3))
    from kd_methods import StudentOutput

    out = StudentOutput(torch.randn(5, 20), hidden, tuple(h[:, 0] for h in hidden), torch.ones(5, 20))
    labels = torch.tensor([0, 3, 5, 7, 1])
    losses = {
        p: method.loss(out, CachedTeacher.open(r.path, reads=derived).signals("train", idx, SPEC), labels)
        for p, r in reports.items()
    }
    torch.testing.assert_close(losses["bf16"], losses["fp32"], rtol=5e-2, atol=1e-4)


def test_bf16_student_training_on_cpu_records_its_precision(
    tiny_teacher: Path, local_data: Path, tmp_path: Path
):
    results = {}
    for precision in ("fp32", "bf16"):
        cfg = TrialConfig(
            task="exception",
            student="roberta-tiny",
            method="kd",
            teacher=str(tiny_teacher),
            data=str(local_data),
            max_length=MAXLEN,
            max_samples=40,
            cache_dir=str(tmp_path),
            teacher_mode="cached",
            train=TrainConfig(epochs=1, batch_size=8, precision=precision),
        )
        results[precision] = run_trial(cfg)
    assert results["fp32"].precision == "fp32" and results["bf16"].precision == "bf16"
    fp32_loss, bf16_loss = (results[p].history[0]["train_loss"] for p in ("fp32", "bf16"))
    assert np.isfinite(bf16_loss) and abs(bf16_loss - fp32_loss) < 0.05 * abs(fp32_loss)
    # bf16 ran: the forward passes' outputs moved (not the mean loss, which can agree to float32's last digit when
    # the teacher is near uniform: KD at T 10 is then the teacher's entropy whatever the student says), by little
    fp32_probs, bf16_probs = (np.asarray(results[p].test_predictions["probs"]) for p in ("fp32", "bf16"))
    assert 0 < np.abs(bf16_probs - fp32_probs).max() < 0.05
    with autocast(torch.device("cpu"), "bf16"):
        assert (
            torch.is_autocast_enabled("cpu") and (torch.ones(2, 2) @ torch.ones(2, 2)).dtype == torch.bfloat16
        )
