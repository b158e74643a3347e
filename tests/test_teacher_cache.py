"""The teacher cache: built once, equal to the live teacher, served by sample index, checked by checksum."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from kd_methods import ModelShape, SignalSpec, build_method
from kd_methods.ckd import CKD
from models.teacher import Teacher
from orchestrator.cache.build import get_or_build, teacher_passes
from orchestrator.cache.key import CacheCorruptError, CacheRequest, plan_bytes
from orchestrator.cache.serve import CachedTeacher, verify
from orchestrator.train.online_teacher import OnlineTeacher
from orchestrator.train.trainer import TrainConfig, encode_split
from orchestrator.train.trial import PreparedTrial, TrialConfig, prepare, run_trial
from tasks import SPLITS, load_task_data

SPEC = SignalSpec(logits=True, cls_layers=(1, 2, 3), token_layers=(0, 1, 3))
MAXLEN = 64


@pytest.fixture(scope="module")
def data(local_data: Path):
    return load_task_data("exception", local_data, max_samples=40)


@pytest.fixture(scope="module")
def online(tiny_teacher: Path, data) -> OnlineTeacher:
    teacher = Teacher.load(str(tiny_teacher), 20)
    encoded = {s: encode_split(data.split(s), teacher.encode, MAXLEN, teacher.pad_id) for s in SPLITS}
    return OnlineTeacher(teacher, encoded)


def _build(tiny_teacher: Path, data, storage: Path, dtype: str, **kw):
    request = CacheRequest(
        str(tiny_teacher), "exception", SPEC, MAXLEN, dtype, batch_size=7, shard_samples=16, **kw
    )
    return get_or_build(request, data, 20, storage, use_ray=False)


def _assert_signals_close(cached, live, rtol: float, atol: float) -> None:
    torch.testing.assert_close(cached.logits, live.logits.float(), rtol=rtol, atol=atol)
    for layer in SPEC.cls_layers:
        torch.testing.assert_close(cached.cls[layer].float(), live.cls[layer].float(), rtol=rtol, atol=atol)
    for b in range(live.token_mask.shape[0]):
        n = int(live.token_mask[b].sum())
        assert int(cached.token_mask[b].sum()) == n
        for layer in SPEC.token_layers:
            torch.testing.assert_close(
                cached.tokens[layer][b, :n].float(), live.tokens[layer][b, :n].float(), rtol=rtol, atol=atol
            )


def test_fp32_cache_equals_online_teacher(tiny_teacher, data, online, tmp_path):
    report = _build(tiny_teacher, data, tmp_path, "float32")
    cached = CachedTeacher.open(report.path)
    idx = torch.tensor([5, 0, 17, 3, 11])
    _assert_signals_close(cached.signals("train", idx, SPEC), online.signals("train", idx, SPEC), 1e-5, 1e-5)
    # validation and test keep the teacher's logits (its predictions) only
    logits_only = SignalSpec(logits=True)
    for split in ("validation", "test"):
        idx = torch.tensor([5, 0, 17, 3, 11]) % len(data.split(split))
        got = cached.signals(split, idx, logits_only).logits
        torch.testing.assert_close(got, online.signals(split, idx, logits_only).logits, rtol=1e-5, atol=1e-5)
        with pytest.raises(KeyError):
            cached.signals(split, idx, SPEC)


def test_fp16_cache_within_1e3_relative(tiny_teacher, data, online, tmp_path):
    report = _build(tiny_teacher, data, tmp_path, "float16")
    cached = CachedTeacher.open(report.path)
    idx = torch.arange(12)
    got, want = cached.signals("train", idx, SPEC), online.signals("train", idx, SPEC)
    assert got.cls[1].dtype == torch.float16
    for layer in SPEC.token_layers:
        mask = want.token_mask.bool()
        a, b = got.tokens[layer].float()[mask], want.tokens[layer][mask]
        rel = (a - b).norm() / b.norm()
        assert rel < 1e-3, f"layer {layer}: relative error {rel:.2e}"


def test_shuffled_batches_get_their_own_signals(tiny_teacher, data, online, tmp_path):
    """Whatever the order and batch size, row b holds the signals of sample indices[b] (checked one by one)."""
    cached = CachedTeacher.open(_build(tiny_teacher, data, tmp_path, "float32").path)
    n = len(data.train)
    singles = {i: cached.signals("train", torch.tensor([i]), SPEC) for i in range(n)}
    gen = torch.Generator().manual_seed(3)
    for batch_size in (1, 4, 9):
        for idx in torch.randperm(n, generator=gen).split(batch_size):
            batch = cached.signals("train", idx, SPEC)
            for b, i in enumerate(idx.tolist()):
                torch.testing.assert_close(batch.logits[b], singles[i].logits[0], rtol=0, atol=0)
                torch.testing.assert_close(batch.cls[2][b], singles[i].cls[2][0], rtol=0, atol=0)
                length = int(singles[i].token_mask.sum())
                torch.testing.assert_close(
                    batch.tokens[3][b, :length], singles[i].tokens[3][0], rtol=0, atol=0
                )
                assert int(batch.token_mask[b].sum()) == length
    # and each sample's cached logits are the live teacher's logits for that sample alone
    for i in (0, n // 2, n - 1):
        live = online.signals("train", torch.tensor([i]), SPEC).logits[0]
        torch.testing.assert_close(singles[i].logits[0], live, rtol=1e-5, atol=1e-5)


def test_content_key_finds_instead_of_rebuilding(tiny_teacher, data, tmp_path):
    first = _build(tiny_teacher, data, tmp_path, "float16")
    second = _build(tiny_teacher, data, tmp_path, "float16")
    assert first.built and not second.built and first.path == second.path
    assert teacher_passes(tmp_path) == 1
    other = CacheRequest(str(tiny_teacher), "exception", SignalSpec(logits=True), MAXLEN)
    third = get_or_build(other, data, 20, tmp_path, use_ray=False)
    assert third.built and third.path != first.path
    assert teacher_passes(tmp_path) == 2
    manifest = json.loads((first.path / "manifest.json").read_text())
    assert manifest["samples"] == {s: len(data.split(s)) for s in SPLITS}


def test_corrupt_or_missing_shard_is_detected_and_rebuilt(tiny_teacher, data, tmp_path):
    report = _build(tiny_teacher, data, tmp_path, "float16")
    shard = next((report.path / "train").glob("shard-*/cls.2.npy"))
    raw = bytearray(shard.read_bytes())
    raw[-3] ^= 0xFF
    shard.write_bytes(bytes(raw))
    with pytest.raises(CacheCorruptError, match="cls.2.npy"):
        verify(report.path, force=True)
    rebuilt = _build(tiny_teacher, data, tmp_path, "float16")
    assert rebuilt.built and rebuilt.rebuilt_reason and "checksum" in rebuilt.rebuilt_reason
    verify(rebuilt.path, force=True)

    next((rebuilt.path / "test").glob("shard-*/logits.npy")).unlink()
    with pytest.raises(CacheCorruptError, match="missing"):
        CachedTeacher.open(rebuilt.path)
    again = _build(tiny_teacher, data, tmp_path, "float16")
    assert again.built and "missing" in again.rebuilt_reason


def test_trials_trust_this_runs_check_and_the_next_run_hashes_again(tiny_teacher, data, tmp_path):
    """The cache stage records a cache it built or found whole (serve.VERIFIED_FILE); a trial process serving it
    then checks sizes only instead of hashing every shard again. The stage of the next run hashes it, finds a
    corrupt shard and rebuilds; without a record a trial hashes, as before."""
    from orchestrator.cache import serve

    report = _build(tiny_teacher, data, tmp_path, "float16")
    assert (report.path / serve.VERIFIED_FILE).is_file()
    shard = next((report.path / "train").glob("shard-*/logits.npy"))
    raw = bytearray(shard.read_bytes())
    raw[-3] ^= 0xFF  # same size, another content
    shard.write_bytes(bytes(raw))
    serve._VERIFIED.clear()  # a new trial process
    CachedTeacher.open(report.path)  # trusts the record: sizes only
    with pytest.raises(CacheCorruptError, match="logits.npy"):
        verify(report.path)  # the stage's check does not trust it
    rebuilt = _build(tiny_teacher, data, tmp_path, "float16")
    assert rebuilt.built and "checksum" in rebuilt.rebuilt_reason
    (rebuilt.path / serve.VERIFIED_FILE).unlink()
    shard = next((rebuilt.path / "train").glob("shard-*/logits.npy"))
    raw = bytearray(shard.read_bytes())
    raw[-3] ^= 0xFF
    shard.write_bytes(bytes(raw))
    serve._VERIFIED.clear()
    with pytest.raises(CacheCorruptError, match="logits.npy"):
        CachedTeacher.open(rebuilt.path)  # no record: hashed


def test_ckd_relations_from_cache_equal_online(tiny_teacher, data, online, tmp_path):
    """The cache stores CKD's teacher-side relations; the loss from them equals the loss from live token states."""
    student_shape, teacher_shape = ModelShape(2, 16), online.teacher.shape
    method = build_method("ckd", student_shape, teacher_shape)
    assert isinstance(method, CKD)
    _, derived = (
        method.cache_needs()
    )  # the method says what its cache must hold: Gram numbers over its layers
    report = _build(tiny_teacher, data, tmp_path, "float32", derived=(derived,))
    cached = CachedTeacher.open(report.path, reads=derived)
    idx = torch.tensor([4, 1, 9, 2])
    from_cache = cached.signals("train", idx, SignalSpec(logits=True))
    live = online.signals("train", idx, method.signals())
    assert set(from_cache.extras) == {"ckd.wr_dist", "ckd.wr_angle", "ckd.ltr_dist", "ckd.ltr_angle"}
    torch.manual_seed(0)
    n = 20
    hidden = tuple(torch.randn(4, n, 16) for _ in range(3))
    from kd_methods import StudentOutput

    out = StudentOutput(torch.randn(4, 20), hidden, tuple(h[:, 0] for h in hidden), torch.ones(4, n))
    labels = torch.tensor([0, 3, 5, 7])
    torch.testing.assert_close(
        method.loss(out, from_cache, labels), method.loss(out, live, labels), rtol=1e-4, atol=1e-5
    )


def test_cached_and_online_kd_trials_give_the_same_loss_curve(tiny_teacher, local_data, tmp_path):
    cfg = TrialConfig(
        task="exception",
        student="roberta-tiny",
        method="kd",
        teacher=str(tiny_teacher),
        data=str(local_data),
        max_length=MAXLEN,
        max_samples=40,
        cache_dir=str(tmp_path),
        train=TrainConfig(epochs=2, batch_size=8, lr=1e-3),
        seed=7,
    )
    base = prepare(cfg)
    prepared = PreparedTrial(base.task_data, base.tokenizer, base.encoded, base.num_labels)
    online_run = run_trial(cfg, prepared=prepared)
    cached_cfg = TrialConfig(
        **{**vars(cfg), "teacher_mode": "cached", "train": TrainConfig(**vars(cfg.train))}
    )
    cached_run = run_trial(cached_cfg, prepared=prepared)
    online_losses = [h["train_loss"] for h in online_run.history]
    cached_losses = [h["train_loss"] for h in cached_run.history]
    assert cached_run.teacher_seconds < online_run.teacher_seconds
    np.testing.assert_allclose(cached_losses, online_losses, rtol=2e-3)
    assert online_run.test["accuracy"] == pytest.approx(cached_run.test["accuracy"], abs=0.05)


def test_plan_bytes_matches_what_is_built(tiny_teacher, data, tmp_path):
    report = _build(tiny_teacher, data, tmp_path, "float16")
    manifest = json.loads((report.path / "manifest.json").read_text())
    samples = manifest["samples"]
    tokens = {s: sum(sh["tokens"] for sh in manifest["shards"][s]) for s in SPLITS}
    request = CacheRequest(str(tiny_teacher), "exception", SPEC, MAXLEN, "float16")
    planned = plan_bytes(request, samples, tokens, ModelShape(3, 32), 20)["total_bytes"]
    # .npy headers add a little per file
    assert planned <= report.bytes <= planned * 1.1 + 20_000


def test_build_with_ray_tasks_equals_in_process(tiny_teacher, data, tmp_path):
    import ray

    ray.init(address="local", num_cpus=2, include_dashboard=False, log_to_driver=False)
    try:
        from orchestrator.cache.serve import from_object_store, put_in_object_store

        report = get_or_build(
            CacheRequest(str(tiny_teacher), "exception", SPEC, MAXLEN, "float32", shard_samples=16),
            data,
            20,
            tmp_path / "ray",
            use_ray=True,
        )
        local = _build(tiny_teacher, data, tmp_path / "local", "float32")
        assert report.key == local.key
        ref = put_in_object_store(report.path)
        served = from_object_store(ray.get(ref))
        idx = torch.tensor([3, 8, 1])
        a, b = (
            served.signals("train", idx, SPEC),
            CachedTeacher.open(local.path).signals("train", idx, SPEC),
        )
        torch.testing.assert_close(a.logits, b.logits, rtol=1e-5, atol=1e-5)
        torch.testing.assert_close(a.tokens[1], b.tokens[1], rtol=1e-5, atol=1e-5)
        # zero-copy: arrays read from the object store are read-only views
        arrays = ray.get(ref)["arrays"]
        assert not next(iter(arrays.values())).flags.writeable
    finally:
        ray.shutdown()


def test_trial_on_other_data_than_its_cache_is_refused(tiny_teacher, data, local_data, tmp_path):
    """Signals are served by sample index: a trial whose data differs from the cache's (here: the same labels,
    one changed sample) must fail with a clear reason instead of learning from misaligned teacher outputs."""
    from dataclasses import replace

    from tasks import TaskData

    report = _build(tiny_teacher, data, tmp_path, "float32")
    cached = CachedTeacher.open(report.path)
    cached.check_data(data.fingerprint())  # the cache's own data passes
    changed = TaskData(
        [replace(data.train[0], code=data.train[0].code + "\n# edited"), *data.train[1:]],
        data.validation,
        data.test,
    )
    with pytest.raises(ValueError, match="built from other data"):
        cached.check_data(changed.fingerprint())
    cfg = TrialConfig(
        task="exception",
        student="roberta-tiny",
        method="kd",
        data=str(local_data),
        max_length=MAXLEN,
        max_samples=40,
        train=TrainConfig(epochs=1, batch_size=8),
        cache_dir=str(tmp_path / "c"),
    )
    prepared = prepare(cfg)
    other = PreparedTrial(changed, prepared.tokenizer, prepared.encoded, prepared.num_labels)
    with pytest.raises(ValueError, match="built from other data"):
        run_trial(cfg, teacher_source=cached, teacher_shape=ModelShape(2, 64), prepared=other)


def test_build_reports_each_shard_built(tiny_teacher, data, tmp_path):
    """The study's stage in progress (core/progress.py) counts shards: one call per shard, in order."""
    request = CacheRequest(str(tiny_teacher), "exception", SPEC, MAXLEN, batch_size=7, shard_samples=16)
    calls: list[tuple[int, int]] = []
    report = get_or_build(
        request, data, 20, tmp_path, use_ray=False, progress=lambda d, t: calls.append((d, t))
    )
    shards = sum(len(v) for v in json.loads((report.path / "manifest.json").read_text())["shards"].values())
    assert shards > 3 and calls == [(i, shards) for i in range(1, shards + 1)]


def test_a_build_that_fails_half_way_leaves_no_temporary_folder(tiny_teacher, data, tmp_path):
    """Issue 24: a cache build that ran out of disk left its ``.<key>.tmp-*`` folder for good. Any failure after
    the first shard (here the progress callback raising, as Ctrl-C would) removes it; the next build completes."""
    request = CacheRequest(str(tiny_teacher), "exception", SPEC, MAXLEN, batch_size=7, shard_samples=16)

    def fail(done: int, total: int) -> None:
        raise OSError(28, "No space left on device")

    with pytest.raises(OSError, match="No space left"):
        get_or_build(request, data, 20, tmp_path, use_ray=False, progress=fail)
    assert list((tmp_path / "teacher_cache").iterdir()) == []
    assert get_or_build(request, data, 20, tmp_path, use_ray=False).built


def test_cls_spread_reads_the_first_training_rows_across_shards(tiny_teacher, data, online, tmp_path):
    """PKD's target check (orchestrator/cache/spread.py) reads the cache's first training rows, across shards (16
    rows each here), and gives the mean pairwise cosine the live teacher's [CLS] states give."""
    from orchestrator.cache.spread import cls_pairwise_cos, mean_pairwise_cos

    report = _build(tiny_teacher, data, tmp_path, "float32")
    got = cls_pairwise_cos(report.path, rows=20)
    assert sorted(got) == list(SPEC.cls_layers)
    live = online.signals("train", torch.arange(20), SPEC)
    for layer in SPEC.cls_layers:
        assert got[layer] == pytest.approx(mean_pairwise_cos(live.cls[layer].float().numpy()), abs=1e-5)
    # a cache that holds no [CLS] state (no PKD in the study) has nothing to check
    request = CacheRequest(str(tiny_teacher), "exception", SignalSpec(logits=True), MAXLEN, "float32")
    assert cls_pairwise_cos(get_or_build(request, data, 20, tmp_path, use_ray=False).path) == {}


def test_a_constant_cls_target_is_flagged_and_a_varying_one_is_not():
    """One coordinate far larger than the rest in every input (MiniLM's [CLS] at layers 1-4) makes every
    normalised target one direction; the warning names the layer and its figure."""
    from orchestrator.cache.spread import constant_target_warning, mean_pairwise_cos

    rng = np.random.default_rng(0)
    varying = rng.normal(size=(64, 32))
    outlier = varying.copy()
    outlier[:, 7] += 200.0  # ~98% of the squared norm, as MiniLM's coordinate 99
    cos = {1: mean_pairwise_cos(outlier), 2: mean_pairwise_cos(varying)}
    assert cos[1] > 0.999 and abs(cos[2]) < 0.05
    line = constant_target_warning("teacher/exception", cos)
    assert line is not None and "layer 1 " in line and "layer 2 " not in line and "PKD" in line
    assert constant_target_warning("teacher/exception", {2: cos[2]}) is None
