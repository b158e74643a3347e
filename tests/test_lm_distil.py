"""The completion study's models, the distil loss and the exact LM teacher cache, on a tiny random GPT-2 teacher."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from kd_methods import ModelShape, StudentOutput, TeacherSignals, build_method
from models.gpt2_student import (
    LM_STUDENTS,
    StudentInit,
    build_gpt2_student,
    teacher_block_indices,
)
from models.lm_teacher import CODE_SPECIAL_TOKENS, LMTeacher, create_random_gpt2_teacher
from models.teacher import ModelNotAvailableError
from orchestrator.cache.lm_cache import LMCacheRequest, get_or_build_lm, lm_cache_bytes
from orchestrator.cache.lm_serve import LMCachedTeacher
from orchestrator.train.lm_data import make_blocks

TEXTS = [
    "<s> import os <EOL> def main ( argv ) : <EOL> return os . path . join ( argv [ <NUM_LIT:0> ] , <STR_LIT> ) </s>",
    "<s> class Foo ( object ) : <EOL> def __init__ ( self , x ) : <EOL> self . x = x <EOL> return None </s>",
] * 6


pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def teacher_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return create_random_gpt2_teacher(
        tmp_path_factory.mktemp("lm") / "tiny-gpt2",
        num_layers=4,
        hidden_size=32,
        n_positions=32,
        vocab_size=300,
    )


@pytest.fixture(scope="module")
def teacher(teacher_dir: Path) -> LMTeacher:
    return LMTeacher.load(teacher_dir).eval()


# ---------------------------------------------------------------- teachers and students


def test_tiny_teacher_tokenizer_has_codexglue_specials(teacher: LMTeacher) -> None:
    tok = teacher.tokenizer
    ids = teacher.encode_texts(["<s> x = <NUM_LIT> <EOL> y </s>"])[0]
    pieces = tok.convert_ids_to_tokens(ids)
    assert pieces[0] == "<s>" and pieces[-1] == "</s>" and "<EOL>" in pieces and "<NUM_LIT>" in pieces
    assert all(tok.convert_tokens_to_ids(t) != tok.unk_token_id for t in CODE_SPECIAL_TOKENS)
    assert teacher.pad_id == tok.convert_tokens_to_ids("<pad>") and tok.sep_token == "<EOL>"
    assert teacher.shape == ModelShape(num_layers=4, hidden_size=32)


def test_missing_teacher_fails_fast_naming_what_to_download(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(ModelNotAvailableError, match=r"microsoft/CodeGPT-small-py.*download"):
        LMTeacher.load("codegpt")
    with pytest.raises(ModelNotAvailableError, match="does not exist"):
        LMTeacher.load("./no/such/teacher-folder")


def test_teacher_block_indices_follow_distilgpt2() -> None:
    assert teacher_block_indices(6, 12) == [0, 2, 4, 7, 9, 11]  # HF extract.py's hard-coded list
    assert teacher_block_indices(4, 12) == [0, 4, 7, 11]
    assert teacher_block_indices(8, 12) == [0, 2, 3, 5, 6, 8, 9, 11]
    assert teacher_block_indices(10, 12) == [0, 1, 2, 4, 5, 6, 7, 9, 10, 11]
    assert teacher_block_indices(12, 12) == list(range(12))
    with pytest.raises(ValueError, match="1..12 layers"):
        teacher_block_indices(13, 12)
    assert {"gpt2-4l", "gpt2-6l", "gpt2-8l", "gpt2-10l", "gpt2-12l"} <= set(LM_STUDENTS)


def test_students_copy_the_teacher_shape_and_teacher_layers(teacher: LMTeacher) -> None:
    t_state = teacher.model.state_dict()
    student = build_gpt2_student("gpt2-2l", teacher.model, "teacher_layers")
    s_state = student.model.state_dict()
    assert (
        student.shape == ModelShape(num_layers=2, hidden_size=32) and student.vocab_size == teacher.vocab_size
    )
    # 2 of 4 blocks: [0, 3]; embeddings, ln_f and head copied.
    for s_block, t_block in ((0, 0), (1, 3)):
        for name in ("ln_1.weight", "attn.c_attn.weight", "mlp.c_proj.bias"):
            assert torch.equal(
                s_state[f"transformer.h.{s_block}.{name}"], t_state[f"transformer.h.{t_block}.{name}"]
            )
    for name in (
        "transformer.wte.weight",
        "transformer.wpe.weight",
        "transformer.ln_f.weight",
        "lm_head.weight",
    ):
        assert torch.equal(s_state[name], t_state[name])
    torch.manual_seed(0)
    random = build_gpt2_student("gpt2-2l", teacher.model, "random")
    assert not torch.equal(
        random.model.state_dict()["transformer.h.1.attn.c_attn.weight"],
        t_state["transformer.h.3.attn.c_attn.weight"],
    )
    with pytest.raises(ValueError, match="more than the teacher's 4"):
        build_gpt2_student("gpt2-6l", teacher.model, "random")
    with pytest.raises(ValueError, match="unknown student_init 'copy'.*valid"):
        StudentInit.parse("copy")
    with pytest.raises(KeyError, match="unknown GPT-2 student 'gpt2-3l'; valid"):
        build_gpt2_student("gpt2-3l", teacher.model)


def test_added_literal_tokens_resize_the_teacher_and_its_students(teacher_dir: Path) -> None:
    fresh = LMTeacher.load(teacher_dir)
    assert (
        fresh.add_special_tokens(["<STR_LIT:utf-8>", "<NUM_LIT:0>", "<EOL>"]) == 2
    )  # <EOL> is there already
    assert fresh.vocab_size == len(fresh.tokenizer) == 302
    assert "<NUM_LIT:0>" in fresh.tokenizer.convert_ids_to_tokens(fresh.encode_texts(["x = <NUM_LIT:0>"])[0])
    assert build_gpt2_student("gpt2-2l", fresh.model, "teacher_layers").vocab_size == 302


def test_full_size_students_have_the_posters_parameter_counts() -> None:
    """CodeGPT's shape (12 x 768, V = 50,001): the poster's 124 / 110 / 96 / 82 / 68 M parameters (built on the
    meta device: no memory, no initialisation)."""
    from transformers import GPT2Config, GPT2LMHeadModel

    from models.gpt2_student import model_size_mb

    with torch.device("meta"):
        codegpt = GPT2LMHeadModel(GPT2Config(vocab_size=50001, n_layer=12, n_embd=768, n_head=12))
        counts = {
            layers: sum(p.numel() for p in build_gpt2_student(f"gpt2-{layers}l", codegpt).parameters())
            for layers in (12, 10, 8, 6, 4)
        }
        size = model_size_mb(build_gpt2_student("gpt2-6l", codegpt))
    assert {k: round(v / 1e6, 2) for k, v in counts.items()} == {
        12: 124.24,
        10: 110.07,
        8: 95.89,
        6: 81.72,
        4: 67.54,
    }
    assert size == pytest.approx(counts[6] * 4 / 1e6)  # fp32, the tied head counted once


def test_pretrained_student_with_another_vocabulary_fails_clearly(teacher: LMTeacher, tmp_path: Path) -> None:
    other = create_random_gpt2_teacher(
        tmp_path / "other", num_layers=2, hidden_size=32, n_positions=32, vocab_size=400
    )
    with pytest.raises(ValueError, match=r"vocabulary has 400 tokens but the teacher's has 300"):
        build_gpt2_student("gpt2-2l", teacher.model, f"pretrained:{other}")
    same = create_random_gpt2_teacher(
        tmp_path / "same", num_layers=2, hidden_size=32, n_positions=32, vocab_size=300
    )
    student = build_gpt2_student("gpt2-2l", teacher.model, f"pretrained:{same}")
    assert student.shape.num_layers == 2 and student.init == f"pretrained:{same}"


# ---------------------------------------------------------------- the distil loss


def _reference_terms(s_logits, t_logits, s_h, t_h, mask, labels, T, a_ce, a_clm, a_cos) -> dict[str, float]:
    """DistilBERT's loss written out position by position, as distiller.py computes it."""
    kl, cos, n = 0.0, 0.0, 0
    for b in range(mask.shape[0]):
        for i in range(mask.shape[1]):
            if mask[b, i]:
                p_t = F.softmax(t_logits[b, i] / T, -1)
                kl += float((p_t * (p_t.log() - F.log_softmax(s_logits[b, i] / T, -1))).sum())
                cos += 1 - float(F.cosine_similarity(s_h[b, i], t_h[b, i], dim=0))
                n += 1
    clm = F.cross_entropy(
        s_logits[:, :-1].reshape(-1, s_logits.shape[-1]), labels[:, 1:].reshape(-1), ignore_index=-100
    )
    return {"ce": a_ce * T**2 * kl / n, "clm": a_clm * float(clm), "cos": a_cos * cos / n}


def test_distil_matches_the_reference_with_logits_or_head(teacher: LMTeacher) -> None:
    torch.manual_seed(1)
    b, n, v, h = 3, 7, 11, 8
    mask = torch.ones(b, n, dtype=torch.long)
    mask[1, 5:] = 0
    mask[2, 3:] = 0
    ids = torch.randint(0, v, (b, n))
    labels = ids.masked_fill(mask == 0, -100)
    s_logits, s_h = torch.randn(b, n, v, requires_grad=True), torch.randn(b, n, h)
    weight, t_h = torch.randn(v, h), torch.randn(b, n, h)
    t_logits = t_h @ weight.T
    shape = ModelShape(num_layers=2, hidden_size=h)
    method = build_method("distil", shape, ModelShape(num_layers=4, hidden_size=h), chunk=4, temperature=3.0)
    assert method.signals().token_layers == (4,)
    student = StudentOutput(s_logits, (s_h, s_h, s_h), (), mask)
    by_logits = method.loss_terms(student, TeacherSignals(logits=t_logits, tokens={4: t_h}), labels)
    by_head = method.loss_terms(
        student, TeacherSignals(tokens={4: t_h}, extras={"lm_head.weight": weight}), labels
    )
    ref = _reference_terms(s_logits.detach(), t_logits, s_h, t_h, mask, labels, 3.0, 5.0, 2.0, 1.0)
    for name in ("ce", "clm", "cos"):
        assert by_logits[name].item() == pytest.approx(ref[name], rel=1e-5)
        assert by_head[name].item() == pytest.approx(ref[name], rel=1e-5)
    method.loss(
        student, TeacherSignals(tokens={4: t_h}, extras={"lm_head.weight": weight}), labels
    ).backward()
    # Padding takes no part: no KL/cosine there and its CLM targets are -100, so its logits get no gradient.
    assert s_logits.grad is not None
    assert s_logits.grad[2, 3:].abs().sum() == 0 and s_logits.grad[1, 5:].abs().sum() == 0
    assert s_logits.grad[2, :3].abs().sum() > 0


def test_distil_weights_and_errors() -> None:
    shape = ModelShape(num_layers=2, hidden_size=8)
    lm_only = build_method("distil", shape, ModelShape(4, 8), alpha_ce=0.0, alpha_cos=0.0)
    assert lm_only.signals().empty  # the FT baseline needs no teacher
    x = torch.randn(2, 5, 6)
    out = StudentOutput(x, (torch.randn(2, 5, 8),) * 3, (), torch.ones(2, 5, dtype=torch.long))
    assert set(lm_only.loss_terms(out, None, torch.randint(0, 6, (2, 5)))) == {"clm"}
    same = build_method("distil", shape, ModelShape(4, 8), alpha_clm=0.0)
    terms = same.loss_terms(
        out,
        TeacherSignals(logits=x.clone(), tokens={4: out.hidden_states[-1]}),
        torch.zeros(2, 5, dtype=torch.long),
    )
    assert terms["ce"].item() == pytest.approx(0.0, abs=1e-6) and terms["cos"].item() == pytest.approx(
        0.0, abs=1e-6
    )
    with pytest.raises(
        ValueError, match="alpha_cos > 0 compares final hidden states.*8 wide and the teacher 16"
    ):
        build_method("distil", shape, ModelShape(4, 16))
    assert build_method("distil", shape, ModelShape(4, 16), alpha_cos=0.0).signals().token_layers == (4,)
    with pytest.raises(ValueError, match=r"'distil' is for causal LMs.*\(2, 6\)"):
        same.loss_terms(
            StudentOutput(x[:, 0], (), (), torch.ones(2, 1)), TeacherSignals(logits=x[:, 0]), x[:, 0, 0]
        )
    with pytest.raises(KeyError, match="need logits, or token layer 4"):
        same.loss_terms(
            out, TeacherSignals(tokens={4: out.hidden_states[-1]}), torch.zeros(2, 5, dtype=torch.long)
        )


# ---------------------------------------------------------------- the exact LM cache


def _online_log_probs(teacher: LMTeacher, blocks, idx: torch.Tensor, temperature: float) -> torch.Tensor:
    ids, mask, _ = blocks.batch(idx)
    with torch.no_grad():
        return torch.log_softmax(teacher(ids, mask).logits / temperature, dim=-1)


def test_fp32_cache_rebuilds_the_online_distribution_exactly(
    teacher: LMTeacher, teacher_dir: Path, tmp_path: Path
) -> None:
    blocks = make_blocks(teacher.encode_texts(TEXTS), 16, teacher.pad_id)
    request = LMCacheRequest(str(teacher_dir), block_size=16, dtype="float32", batch_size=3, shard_blocks=5)
    report = get_or_build_lm(request, blocks, tmp_path, device="cpu")
    assert (
        report.built and len(json.loads((report.path / "manifest.json").read_text())["shards"]["train"]) > 1
    )
    cache = LMCachedTeacher(report.path)
    cache.check_data(blocks.fingerprint())
    idx = torch.tensor([len(blocks) - 1, 0, 6, 5])  # across shards, out of order
    for temperature in (1.0, 2.0):
        online = _online_log_probs(teacher, blocks, idx, temperature)
        cached = cache.log_probs("train", idx, temperature)
        torch.testing.assert_close(cached, online, atol=2e-6, rtol=1e-5)
    again = get_or_build_lm(request, blocks, tmp_path, device="cpu")
    assert not again.built and again.key == report.key  # one teacher pass per (teacher, blocks)
    with pytest.raises(ValueError, match="built from other token blocks"):
        cache.check_data(make_blocks(teacher.encode_texts(TEXTS[:6]), 16).fingerprint())


def fp16_cache_kl(teacher: LMTeacher, cache: LMCachedTeacher, blocks, temperature: float) -> float:
    """Mean over positions of KL(online || fp16-cached), in float64 on both sides, so that the figure is the
    storage error alone (float32 rounding of the two matmuls would otherwise swamp it)."""
    import copy

    idx = torch.arange(len(blocks))
    ids, mask, _ = blocks.batch(idx)
    with torch.no_grad():
        exact = copy.deepcopy(teacher.model).double()
        out = exact(input_ids=ids, attention_mask=mask, output_hidden_states=True)
        online = torch.log_softmax(out.logits / temperature, dim=-1)
        h16 = torch.from_numpy(cache._rows("train", idx)["hidden"]).double()
        cached = torch.log_softmax(h16 @ exact.lm_head.weight.T / temperature, dim=-1)
    return (online.exp() * (online - cached)).sum(-1).mean().item()


# Measured with fp16_cache_kl (CPU, float64): this 4 x 32 random teacher 2.7e-10 (T = 1) / 6.8e-11 (T = 2); a 4 x 256
# random one 2.2e-9 / 5.5e-10. A small trained proxy LM gave about 1e-8 (peakier outputs).
# The stated bound, 1e-6, is 100x that.
FP16_KL_BOUND = 1e-6


def test_fp16_cache_is_within_the_stated_kl_and_corruption_rebuilds(
    teacher: LMTeacher, teacher_dir: Path, tmp_path: Path
) -> None:
    blocks = make_blocks(teacher.encode_texts(TEXTS), 16, teacher.pad_id)
    request = LMCacheRequest(str(teacher_dir), block_size=16, dtype="float16")
    report = get_or_build_lm(request, blocks, tmp_path, device="cpu")
    cache = LMCachedTeacher(report.path)
    assert cache.shards[0][2]["hidden"].dtype == "float16"
    for temperature in (1.0, 2.0):
        kl = fp16_cache_kl(teacher, cache, blocks, temperature)
        assert 0 < kl < FP16_KL_BOUND  # > 0: really stored in half precision
    shard = report.path / "train" / "shard-000000000" / "hidden.npy"
    shard.write_bytes(shard.read_bytes()[:-8])  # a truncated shard (sizes are checked on every open)
    rebuilt = get_or_build_lm(request, blocks, tmp_path, device="cpu")
    assert rebuilt.built and "does not match its checksum" in (rebuilt.rebuilt_reason or "")


# ---------------------------------------------------------------- cached-topk (approximate)


def test_topk_cache_is_exact_at_full_k_and_a_lower_bound_below(
    teacher: LMTeacher, teacher_dir: Path, tmp_path: Path
) -> None:
    blocks = make_blocks(teacher.encode_texts(TEXTS), 16, teacher.pad_id)
    idx = torch.tensor([3, 0, 7])
    ids, mask, labels = blocks.batch(idx)
    torch.manual_seed(0)
    student = build_gpt2_student("gpt2-2l", teacher.model, "random").eval()
    with torch.no_grad():
        s_out = student(ids, mask)
        t_logits = teacher(ids, mask).logits
    method = build_method("distil", student.shape, teacher.shape, alpha_clm=0.0, alpha_cos=0.0)
    exact = method.loss_terms(s_out, TeacherSignals(logits=t_logits), labels)["ce"].item()
    results = {}
    for k in (teacher.vocab_size, 8):
        request = LMCacheRequest(
            str(teacher_dir), block_size=16, dtype="float32", topk=k, lse_temperatures=(2.0, 1.0)
        )
        cache = LMCachedTeacher(get_or_build_lm(request, blocks, tmp_path, device="cpu").path)
        assert cache.approximate and cache.shards[0][2]["topk_ids"].dtype == "uint16" and not cache.head
        signals = cache.signals("train", idx, method.signals())
        results[k] = (method.loss_terms(s_out, signals, labels)["ce"].item(), cache.mass_kept)
        npy = sum(f.stat().st_size for f in cache.path.rglob("*.npy"))
        planned = lm_cache_bytes(len(blocks), 16, 32, teacher.vocab_size, "float32", topk=k)
        assert abs(npy - planned) <= 128 * 4 * len(cache.shards)  # .npy headers only
    full, (approx, kept) = results[teacher.vocab_size], results[8]
    assert full[0] == pytest.approx(exact, rel=1e-5) and full[1]["2"] == pytest.approx(1.0, abs=1e-5)
    assert 0 < approx < exact  # the k + 1 bucket KL lower-bounds the full KL
    assert 0 < kept["2"] < kept["1"] < 1
    hot = build_method("distil", student.shape, teacher.shape, temperature=3.0, alpha_clm=0.0, alpha_cos=0.0)
    with pytest.raises(KeyError, match=r"log-sum-exps for T in \[1.0, 2.0\], not T = 3.0"):
        hot.loss_terms(s_out, signals, labels)
