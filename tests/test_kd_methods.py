"""KD methods: hand-checked values, invariances, gradient flow, declared signals, student shapes."""

from __future__ import annotations

import math
from dataclasses import replace
from itertools import permutations

import pytest
import torch
import torch.nn.functional as F
from torch import Tensor

import kd_methods
from kd_methods import METHODS, ModelShape, SignalSpec, StudentOutput, TeacherSignals, build_method
from kd_methods.ckd import (
    CKD,
    band_gram,
    ckd_relations,
    layer_pairs,
    layer_relations,
    layer_triples,
    window_masks,
    window_pairs,
    word_relations,
)
from kd_methods.dist import dist_relation_loss, pearson
from kd_methods.pkd import PKD

NUM_LABELS = 3
TEACHER = ModelShape(num_layers=6, hidden_size=48)
ROBERTA = ModelShape(num_layers=3, hidden_size=32)
BIGRU = ModelShape(num_layers=2, hidden_size=32, embedding_size=24)  # 2H = 32, E = 24
TEACHER_METHODS = ("kd", "dist", "pkd", "ckd")


def padding_mask(lengths: list[int], n: int) -> Tensor:
    return (torch.arange(n)[None, :] < torch.tensor(lengths)[:, None]).long()


def make_student(
    shape: ModelShape, lengths: list[int], n: int, dtype: torch.dtype = torch.float32, seed: int = 0
) -> StudentOutput:
    """A student output of ``shape`` whose hidden states and logits are leaves that record gradients."""
    gen = torch.Generator().manual_seed(seed)
    batch = len(lengths)
    widths = [shape.embedding_width] + [shape.hidden_size] * shape.num_layers
    hidden = tuple(torch.randn(batch, n, w, generator=gen, dtype=dtype).requires_grad_() for w in widths)
    logits = torch.randn(batch, NUM_LABELS, generator=gen, dtype=dtype).requires_grad_()
    return StudentOutput(
        logits=logits,
        hidden_states=hidden,
        cls_states=tuple(h[:, 0] for h in hidden),
        attention_mask=padding_mask(lengths, n),
    )


def make_teacher(
    lengths: list[int], n: int, shape: ModelShape = TEACHER, dtype: torch.dtype = torch.float32, seed: int = 1
) -> TeacherSignals:
    """Every signal a teacher can give, as leaves with requires_grad=True so a leak of gradient would show."""
    gen = torch.Generator().manual_seed(seed)
    batch, layers = len(lengths), range(shape.num_layers + 1)
    return TeacherSignals(
        logits=torch.randn(batch, NUM_LABELS, generator=gen, dtype=dtype).requires_grad_(),
        cls={
            layer: torch.randn(batch, shape.hidden_size, generator=gen, dtype=dtype).requires_grad_()
            for layer in layers
        },
        tokens={
            layer: torch.randn(batch, n, shape.hidden_size, generator=gen, dtype=dtype).requires_grad_()
            for layer in layers
        },
        token_mask=padding_mask(lengths, n),
    )


LABELS = torch.tensor([0, 2, 1])


# ---------------------------------------------------------------- registry and construction


def test_registry_holds_the_five_methods_with_their_families() -> None:
    assert set(METHODS) == {"ft", "kd", "dist", "pkd", "ckd"}
    families = {name: cls.family for name, cls in METHODS.items()}
    assert families == {"ft": "none", "kd": "logit", "dist": "logit", "pkd": "feature", "ckd": "feature"}
    assert kd_methods.get_method("CKD") is CKD
    assert CKD.defaults == {"alpha": 1.0, "beta": 10.0, "gamma": 10.0, "temperature": 3.0, "window": 10}
    assert PKD.defaults == {"alpha": 1.0, "beta": 10.0, "temperature": 10.0}
    assert METHODS["kd"].defaults["temperature"] == 10.0 and METHODS["kd"].defaults["label_weight"] == 0.0
    assert METHODS["dist"].defaults["temperature"] == 1.0


def test_unknown_hyperparameter_names_the_valid_ones() -> None:
    with pytest.raises(
        ValueError, match=r"unknown hyperparameter.*'tau'.*valid: \['alpha', 'beta', 'temperature'\]"
    ):
        build_method("pkd", ROBERTA, TEACHER, tau=2.0)


@pytest.mark.parametrize("name", TEACHER_METHODS)
def test_teacher_methods_refuse_to_run_without_a_teacher(name: str) -> None:
    with pytest.raises(ValueError, match="needs a teacher"):
        build_method(name, ROBERTA, None)
    method = build_method(name, ROBERTA, TEACHER)
    with pytest.raises(ValueError, match="got None"):
        method.loss(make_student(ROBERTA, [4, 4, 4], 6), None, LABELS)


# ---------------------------------------------------------------- FT and KD


def test_ft_is_cross_entropy_and_needs_no_teacher() -> None:
    method = build_method("ft", ROBERTA)
    student = make_student(ROBERTA, [5, 3, 6], 6)
    assert method.signals().empty
    assert torch.equal(method.loss(student, None, LABELS), F.cross_entropy(student.logits, LABELS))


def _kd_by_hand(z_s: list[list[float]], z_t: list[list[float]], t: float) -> float:
    total = 0.0
    for row_s, row_t in zip(z_s, z_t):
        e_t = [math.exp(v / t) for v in row_t]
        p_t = [v / sum(e_t) for v in e_t]
        log_norm_s = math.log(sum(math.exp(v / t) for v in row_s))
        total += -sum(p * (s / t - log_norm_s) for p, s in zip(p_t, row_s))
    return total / len(z_s)


def test_kd_matches_the_closed_form_by_hand() -> None:
    z_s, z_t = [[1.0, 2.0, 3.0], [0.0, 0.0, 1.0]], [[3.0, 1.0, 0.0], [1.0, 1.0, 1.0]]
    student = StudentOutput(
        logits=torch.tensor(z_s, dtype=torch.float64),
        hidden_states=(),
        cls_states=(),
        attention_mask=torch.ones(2, 1),
    )
    teacher = TeacherSignals(logits=torch.tensor(z_t, dtype=torch.float64))
    labels = torch.tensor([2, 0])
    expected = _kd_by_hand(z_s, z_t, 2.0)
    # Second sample: p_t uniform, so its term is log(sum e^{z/2}) - mean(z)/2 = log(2 + e^0.5) - 1/6.
    assert _kd_by_hand(z_s[1:], z_t[1:], 2.0) == pytest.approx(math.log(2 + math.exp(0.5)) - 1 / 6, abs=1e-12)
    got = build_method("kd", ROBERTA, TEACHER, temperature=2.0).loss(student, teacher, labels)
    assert got.item() == pytest.approx(expected, abs=1e-10)
    scaled = build_method("kd", ROBERTA, TEACHER, temperature=2.0, t_squared=True).loss(
        student, teacher, labels
    )
    assert scaled.item() == pytest.approx(4 * expected, abs=1e-10)
    mixed = build_method("kd", ROBERTA, TEACHER, temperature=2.0, label_weight=0.25).loss(
        student, teacher, labels
    )
    ce = sum(math.log(sum(math.exp(v) for v in row)) - row[y] for row, y in zip(z_s, [2, 0])) / 2
    assert mixed.item() == pytest.approx(0.75 * expected + 0.25 * ce, abs=1e-10)


def test_kd_with_identical_logits_is_the_teacher_entropy_not_zero() -> None:
    t = 10.0
    probs = [1 / 6, 2 / 6, 3 / 6]
    logits = torch.tensor([[t * math.log(p) for p in probs]], dtype=torch.float64)
    student = StudentOutput(logits=logits, hidden_states=(), cls_states=(), attention_mask=torch.ones(1, 1))
    loss = build_method("kd", ROBERTA, TEACHER).loss(
        student, TeacherSignals(logits=logits.clone()), LABELS[:1]
    )
    entropy = -sum(p * math.log(p) for p in probs)
    assert entropy > 1.0
    assert loss.item() == pytest.approx(entropy, abs=1e-12)


# ---------------------------------------------------------------- DIST


def test_dist_relation_loss_by_hand_with_two_classes() -> None:
    # With two entries Pearson is +1 when both vectors go the same way and -1 otherwise.
    p_t = torch.tensor([[0.9, 0.1], [0.2, 0.8]])
    p_s = torch.tensor([[0.6, 0.4], [0.7, 0.3]])
    # Inter-class: sample 0 agrees (+1), sample 1 disagrees (-1): 1 - 0 = 1.
    # Intra-class: class 0 teacher falls, student rises (-1); class 1 likewise (-1): 1 - (-1) = 2.
    assert dist_relation_loss(p_s, p_t).item() == pytest.approx(3.0, abs=1e-6)
    assert dist_relation_loss(p_s, p_t, beta=2.0, gamma=0.5).item() == pytest.approx(3.0, abs=1e-6)
    assert pearson(torch.tensor([1.0, 1.0]), torch.tensor([1.0, 2.0])).item() == 0.0  # constant: 0, not NaN


def test_dist_is_zero_for_matching_probabilities_and_positive_otherwise() -> None:
    method = build_method("dist", ROBERTA, TEACHER)
    student = make_student(ROBERTA, [6, 6, 6], 6)
    same = method.loss(student, TeacherSignals(logits=student.logits.detach().clone()), LABELS)
    assert abs(same.item()) < 1e-6
    # A per-sample shift of the logits leaves the probabilities, hence the loss, unchanged.
    shifted = TeacherSignals(logits=student.logits.detach() + torch.tensor([[5.0], [-3.0], [0.5]]))
    assert abs(method.loss(student, shifted, LABELS).item()) < 1e-6
    other = method.loss(student, make_teacher([6, 6, 6], 6), LABELS)
    assert other.item() > 0.1


def test_dist_relations_are_invariant_to_a_positive_affine_change_of_the_student_probabilities() -> None:
    gen = torch.Generator().manual_seed(3)
    p_s = torch.softmax(torch.randn(5, 4, generator=gen), -1)
    p_t = torch.softmax(torch.randn(5, 4, generator=gen), -1)
    base = dist_relation_loss(p_s, p_t)
    assert base.item() > 0.1
    assert dist_relation_loss(3.0 * p_s + 0.2, p_t).item() == pytest.approx(base.item(), abs=1e-5)
    # ...but not to a negative one: Pearson flips sign, so the loss becomes 2(beta + gamma) - loss.
    assert dist_relation_loss(-p_s, p_t).item() == pytest.approx(4.0 - base.item(), abs=1e-5)


def test_dist_temperature_scales_by_t_squared() -> None:
    student, teacher = make_student(ROBERTA, [6, 6, 6], 6), make_teacher([6, 6, 6], 6)
    got = build_method("dist", ROBERTA, TEACHER, temperature=2.0).loss(student, teacher, LABELS)
    assert teacher.logits is not None
    p_s, p_t = torch.softmax(student.logits / 2, -1), torch.softmax(teacher.logits / 2, -1)
    assert got.item() == pytest.approx(4.0 * dist_relation_loss(p_s, p_t).item(), rel=1e-6)
    with_labels = build_method("dist", ROBERTA, TEACHER, label_weight=0.5).loss(student, teacher, LABELS)
    no_labels = build_method("dist", ROBERTA, TEACHER).loss(student, teacher, LABELS)
    ce = F.cross_entropy(student.logits, LABELS)
    assert with_labels.item() == pytest.approx(no_labels.item() + 0.5 * ce.item(), rel=1e-6)


# ---------------------------------------------------------------- PKD


def test_pkd_layer_map_and_signals() -> None:
    four = build_method("pkd", ModelShape(4, 32), ModelShape(12, 48))
    assert isinstance(four, PKD)
    assert four.student_layers == (1, 2, 3) and four.teacher_layers == (3, 6, 9)
    assert four.signals() == SignalSpec(logits=True, cls_layers=(3, 6, 9))
    assert [p.weight.shape for p in four.proj] == [torch.Size([32, 48])] * 3
    one = build_method("pkd", ModelShape(1, 32), ModelShape(12, 48))
    assert isinstance(one, PKD) and one.student_layers == (1,) and one.teacher_layers == (12,)


def test_pkd_feature_term_vanishes_when_projected_teacher_cls_has_the_student_direction() -> None:
    shape = ModelShape(num_layers=3, hidden_size=16)
    method = build_method("pkd", shape, shape)
    assert isinstance(method, PKD)
    with torch.no_grad():
        for proj in method.proj:
            proj.weight.copy_(torch.eye(16))
            proj.bias.zero_()
    student = make_student(shape, [5, 5, 5], 5)
    teacher = make_teacher([5, 5, 5], 5, shape=shape)
    # Teacher cls = 3.7 x student cls: same direction, different length; L2 normalisation removes the length.
    for s_layer, t_layer in zip(method.student_layers, method.teacher_layers):
        teacher.cls[t_layer] = (3.7 * student.cls_states[s_layer].detach()).requires_grad_()
    assert method.feature_loss(student, teacher).item() < 1e-12
    assert teacher.logits is not None
    logit_only = 100.0 * F.cross_entropy(student.logits / 10, torch.softmax(teacher.logits / 10, -1))
    assert method.loss(student, teacher, LABELS).item() == pytest.approx(logit_only.item(), rel=1e-6)
    teacher.cls[method.teacher_layers[0]] = -teacher.cls[method.teacher_layers[0]].detach()
    assert method.feature_loss(student, teacher).item() > 0.01


def test_pkd_label_term_when_alpha_below_one() -> None:
    student, teacher = make_student(ROBERTA, [6, 6, 6], 6), make_teacher([6, 6, 6], 6)
    method = build_method("pkd", ROBERTA, TEACHER, alpha=0.25, beta=0.0, temperature=2.0)
    assert teacher.logits is not None
    soft = F.cross_entropy(student.logits / 2, torch.softmax(teacher.logits / 2, -1))
    expected = 0.25 * 4 * soft + 0.75 * F.cross_entropy(student.logits, LABELS)
    assert method.loss(student, teacher, LABELS).item() == pytest.approx(expected.item(), rel=1e-6)


# ---------------------------------------------------------------- CKD relations


def _naive_window_relations(x: Tensor, valid: Tensor, w: int) -> tuple[list[float], list[float], list[tuple]]:
    """Explicit difference vectors, every valid ordered (i, j) and (i, j, k) of the window, as lists."""
    dists, angles, keys = [], [], []
    batch, n, _ = x.shape
    for b in range(batch):
        for i in range(n):
            if not valid[b, i]:
                continue
            window = [j for j in range(max(0, i - w), min(n, i + w + 1)) if j != i and valid[b, j]]
            for j in window:
                dists.append(1 - F.cosine_similarity(x[b, i], x[b, j], dim=0).item())
                for k in window:
                    if k != j:
                        angles.append(F.cosine_similarity(x[b, i] - x[b, j], x[b, i] - x[b, k], dim=0).item())
                        keys.append((b, i, j, k))
    return dists, angles, keys


def _naive_layer_relations(hs: list[Tensor], valid: Tensor) -> tuple[list[float], list[float]]:
    dists, angles = [], []
    for b, i in valid.nonzero().tolist():
        vecs = [h[b, i] for h in hs]
        for l_, m in permutations(range(len(hs)), 2):
            dists.append(1 - F.cosine_similarity(vecs[l_], vecs[m], dim=0).item())
        for l_, m, n in permutations(range(len(hs)), 3):
            angles.append(F.cosine_similarity(vecs[l_] - vecs[m], vecs[l_] - vecs[n], dim=0).item())
    return dists, angles


def test_band_gram_equals_the_band_of_the_full_gram() -> None:
    x = torch.randn(2, 11, 5, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    full = x @ x.transpose(1, 2)
    for reach, block in [(0, 64), (3, 4), (3, 64), (4, 3), (15, 4)]:
        band = band_gram(x, reach, block)
        assert band.shape == (2, 11, 2 * reach + 1)
        for i in range(11):
            for e in range(2 * reach + 1):
                j = i + e - reach
                expected = full[:, i, j] if 0 <= j < 11 else torch.zeros(2, dtype=torch.float64)
                assert torch.allclose(band[:, i, e], expected), (reach, block, i, e)


def test_gram_word_relations_equal_the_explicit_difference_reference() -> None:
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(2, 8, 5, generator=gen, dtype=torch.float64)
    valid = padding_mask([8, 6], 8).bool()
    w = 2
    dist, angle = word_relations(x, w)
    dist_mask, angle_mask = window_masks(valid, w)
    slot_a, slot_c = window_pairs(w)
    assert angle.shape == (2, 8, len(slot_a)) == angle_mask.shape
    ref_dist, ref_angle, keys = _naive_window_relations(x, valid, w)
    assert sorted(dist[dist_mask].tolist()) == pytest.approx(sorted(ref_dist), abs=1e-10)
    # Each unordered {j, k} is kept once; the naive list has both orders of it with the same value.
    ours = {}
    for b, i, p in angle_mask.nonzero().tolist():
        j, k = i + int(slot_a[p]) - w, i + int(slot_c[p]) - w
        ours[(b, i, j, k)] = angle[b, i, p].item()
    assert len(ours) * 2 == len(keys)
    for key, value in zip(keys, ref_angle):
        b, i, j, k = key
        assert ours[(b, i, min(j, k), max(j, k))] == pytest.approx(value, abs=1e-10)


def test_gram_layer_relations_equal_the_explicit_difference_reference() -> None:
    gen = torch.Generator().manual_seed(1)
    hs = [torch.randn(2, 5, 6, generator=gen, dtype=torch.float64) for _ in range(4)]
    valid = padding_mask([5, 3], 5).bool()
    dist, angle = layer_relations(hs)
    assert dist.shape[-1] == len(layer_pairs(4)[0]) == 6
    assert angle.shape[-1] == len(layer_triples(4)[0]) == 12
    ref_dist, ref_angle = _naive_layer_relations(hs, valid)
    # The relations are symmetric in (l, m) and in (m, n): each stored entry stands for two naive ones.
    assert sorted(dist[valid].flatten().tolist() * 2) == pytest.approx(sorted(ref_dist), abs=1e-10)
    assert sorted(angle[valid].flatten().tolist() * 2) == pytest.approx(sorted(ref_angle), abs=1e-10)


def test_relations_are_invariant_to_scaling_the_features() -> None:
    gen = torch.Generator().manual_seed(2)
    hs = [torch.randn(2, 9, 6, generator=gen, dtype=torch.float64) for _ in range(3)]
    mask = padding_mask([9, 7], 9)
    base = ckd_relations(hs, mask, window=3)
    scaled = ckd_relations([17.0 * h for h in hs], mask, window=3)
    for key in ("wr_dist", "wr_angle", "ltr_dist", "ltr_angle"):
        assert torch.allclose(base[key], scaled[key], atol=1e-10), key
    # Scaling one layer alone keeps its word relations (within a layer) but changes the cross-layer ones.
    one = ckd_relations([hs[0], 5.0 * hs[1], hs[2]], mask, window=3)
    assert torch.allclose(base["wr_angle"], one["wr_angle"], atol=1e-10)
    assert not torch.allclose(base["ltr_angle"], one["ltr_angle"], atol=1e-3)


def test_relations_stay_finite_for_repeated_and_zero_vectors() -> None:
    # A BiGRU's embedding output repeats for a repeated token; padding embeddings can be zero.
    x = torch.randn(1, 6, 4, generator=torch.Generator().manual_seed(4))
    x[0, 3] = x[0, 1]
    x[0, 5] = 0.0
    x.requires_grad_()
    rel = ckd_relations([x, 2 * x], torch.ones(1, 6), window=2)
    total = sum(rel[k].sum() for k in ("wr_dist", "wr_angle", "ltr_dist", "ltr_angle"))
    total.backward()
    assert (
        all(torch.isfinite(rel[k]).all() for k in rel) and x.grad is not None and torch.isfinite(x.grad).all()
    )
    slot_a, slot_c = window_pairs(2)
    p = ((slot_a == 0) & (slot_c == 1)).nonzero().item()  # i = 3, j = 1 (the same vector), k = 2
    assert rel["wr_angle"][0, 3, 0, p].abs().item() < 1e-2


def test_window_masks_drop_padding_and_positions_past_the_prefix() -> None:
    dist_mask, angle_mask = window_masks(padding_mask([4], 5).bool(), window=2)
    # i = 2: j in 0..4, minus itself and padded j = 4.
    assert dist_mask[0, 2].tolist() == [True, True, False, True, False]
    assert not dist_mask[0, 4].any() and not angle_mask[0, 4].any()
    # i = 3: j = 4 is padding and j = 5 lies past the sequence; pairs among j in {1, 2}: only (1, 2).
    assert angle_mask[0, 3].sum().item() == 1


# ---------------------------------------------------------------- CKD loss


def _naive_ckd_feature_loss(
    s_hidden: list[Tensor], t_hidden: list[Tensor], valid: Tensor, w: int, ltr_s: list[Tensor]
) -> tuple[float, float]:
    wr = 0.0
    for s, t in zip(s_hidden, t_hidden):
        sd, sa, _ = _naive_window_relations(s, valid, w)
        td, ta, _ = _naive_window_relations(t, valid, w)
        wr += sum((a - b) ** 2 for a, b in zip(sd, td)) / len(sd) + sum(
            (a - b) ** 2 for a, b in zip(sa, ta)
        ) / len(sa)
    sd, sa = _naive_layer_relations(ltr_s, valid)
    td, ta = _naive_layer_relations(t_hidden, valid)
    ltr = sum((a - b) ** 2 for a, b in zip(sd, td)) / len(sd) + sum(
        (a - b) ** 2 for a, b in zip(sa, ta)
    ) / len(sa)
    return wr / len(s_hidden), ltr


@pytest.mark.parametrize("n_student,n_teacher", [(7, 9), (9, 6)])
def test_ckd_feature_loss_equals_a_naive_reference_over_the_common_prefix(
    n_student: int, n_teacher: int
) -> None:
    method = build_method("ckd", ROBERTA, TEACHER, window=2)
    assert isinstance(method, CKD)
    s_len, t_len = [n_student, n_student - 2], [n_teacher - 1, n_teacher]
    student = make_student(ROBERTA, s_len, n_student, dtype=torch.float64)
    teacher = make_teacher(t_len, n_teacher, dtype=torch.float64)
    wr, ltr = method.feature_loss(student, teacher)
    n = min(n_student, n_teacher)
    valid = padding_mask(s_len, n_student)[:, :n].bool() & padding_mask(t_len, n_teacher)[:, :n].bool()
    s_hidden = [h[:, :n].detach() for h in student.hidden_states]
    t_hidden = [teacher.tokens[layer][:, :n].detach() for layer in method.teacher_layers]
    ref_wr, ref_ltr = _naive_ckd_feature_loss(s_hidden, t_hidden, valid, 2, s_hidden)
    assert wr.item() == pytest.approx(ref_wr, rel=1e-9) and ltr.item() == pytest.approx(ref_ltr, rel=1e-9)
    assert teacher.logits is not None
    soft = F.cross_entropy(student.logits / 3, torch.softmax(teacher.logits / 3, -1))
    expected = 9 * soft + 10 * (wr + 10 * ltr)
    assert method.loss(student, teacher, LABELS[:2]).item() == pytest.approx(expected.item(), rel=1e-9)


def test_ckd_layers_and_signals() -> None:
    method = build_method("ckd", ModelShape(4, 32), ModelShape(12, 48))
    assert isinstance(method, CKD)
    assert method.teacher_layers == (0, 3, 6, 9, 12)
    assert method.signals() == SignalSpec(logits=True, token_layers=(0, 3, 6, 9, 12))
    assert method.embed_proj is None
    gru = build_method("ckd", BIGRU, TEACHER)
    assert isinstance(gru, CKD) and gru.embed_proj is not None
    assert gru.embed_proj.weight.shape == (32, 24)


def test_ckd_relation_loss_is_zero_for_identical_and_for_scaled_features() -> None:
    shape = ModelShape(num_layers=2, hidden_size=16)
    method = build_method("ckd", shape, ModelShape(num_layers=4, hidden_size=16), window=3)
    assert isinstance(method, CKD)
    student = make_student(shape, [10, 7], 10)
    tokens = {
        t_layer: (2.5 * student.hidden_states[s_layer].detach()).requires_grad_()
        for s_layer, t_layer in enumerate(method.teacher_layers)
    }
    teacher = TeacherSignals(
        logits=student.logits.detach(), tokens=tokens, token_mask=padding_mask([9, 10], 10)
    )
    wr, ltr = method.feature_loss(student, teacher)
    assert wr.item() < 1e-10 and ltr.item() < 1e-10
    different = make_teacher([9, 10], 10, shape=ModelShape(num_layers=4, hidden_size=16))
    wr, ltr = method.feature_loss(student, different)
    assert wr.item() > 0.01 and ltr.item() > 0.01


@pytest.mark.parametrize("shape", [ROBERTA, BIGRU], ids=["roberta", "bigru"])
@pytest.mark.parametrize("n_student,n_teacher", [(12, 15), (15, 11)])
def test_ckd_precomputed_teacher_relations_give_the_same_loss(
    shape: ModelShape, n_student: int, n_teacher: int
) -> None:
    method = build_method("ckd", shape, TEACHER, window=3)
    assert isinstance(method, CKD)
    student = make_student(shape, [n_student, n_student - 4, 5], n_student)
    teacher = make_teacher([n_teacher - 2, n_teacher, 7], n_teacher)
    extras = method.teacher_extras(teacher)
    assert set(extras) == {"ckd.wr_dist", "ckd.wr_angle", "ckd.ltr_dist", "ckd.ltr_angle"}
    assert all(v.shape[:2] == (3, n_teacher) and not v.requires_grad for v in extras.values())
    # As leaves that record gradients, so a leak into the cached tensors would show.
    leaves = {k: v.clone().requires_grad_() for k, v in extras.items()}
    cached = TeacherSignals(logits=teacher.logits, token_mask=teacher.token_mask, extras=leaves)
    from_tokens = method.loss(student, teacher, LABELS)
    from_cache = method.loss(student, cached, LABELS)
    assert from_cache.item() == pytest.approx(from_tokens.item(), rel=1e-5)
    from_cache.backward()
    assert all(v.grad is None for v in leaves.values())
    assert all(h.grad is not None for h in student.hidden_states)
    # Extras made with another window are refused, not silently misread.
    other = build_method("ckd", shape, TEACHER, window=2)
    assert isinstance(other, CKD)
    with pytest.raises(ValueError, match="window 3"):
        method.loss(student, replace(cached, extras=other.teacher_extras(teacher)), LABELS)
    with pytest.raises(KeyError, match="not all"):
        method.loss(student, replace(cached, extras={"ckd.wr_dist": extras["ckd.wr_dist"]}), LABELS)


def test_ckd_layer_relation_trains_the_bigru_embedding_through_its_projection() -> None:
    method = build_method("ckd", BIGRU, TEACHER, window=2)
    assert isinstance(method, CKD) and method.embed_proj is not None
    student = make_student(BIGRU, [8, 6, 8], 8)
    _, ltr = method.feature_loss(student, make_teacher([8, 8, 5], 8))
    ltr.backward()
    embedding = student.hidden_states[0]
    assert embedding.grad is not None and embedding.grad.abs().sum() > 0
    assert method.embed_proj.weight.grad is not None and method.embed_proj.weight.grad.abs().sum() > 0


def test_ckd_refuses_a_student_whose_embedding_width_it_was_not_told() -> None:
    method = build_method("ckd", ModelShape(num_layers=2, hidden_size=32), TEACHER)
    with pytest.raises(ValueError, match="embedding_size"):
        method.loss(make_student(BIGRU, [6, 6, 6], 6), make_teacher([6, 6, 6], 6), LABELS)


# ---------------------------------------------------------------- contracts shared by all methods


@pytest.mark.parametrize("name", TEACHER_METHODS)
def test_declared_signals_are_exactly_what_the_loss_reads(name: str) -> None:
    method = build_method(name, ROBERTA, TEACHER)
    spec = method.signals()
    student = make_student(ROBERTA, [6, 5, 6], 6)
    exact = make_teacher([6, 6, 4], 7).restrict(spec)
    assert torch.isfinite(method.loss(student, exact, LABELS))
    ablated = []
    if spec.logits:
        ablated.append(replace(exact, logits=None))
    for layer in spec.cls_layers:
        ablated.append(replace(exact, cls={k: v for k, v in exact.cls.items() if k != layer}))
    for layer in spec.token_layers:
        ablated.append(replace(exact, tokens={k: v for k, v in exact.tokens.items() if k != layer}))
    if spec.token_layers:
        ablated.append(replace(exact, token_mask=None))
    assert len(ablated) == int(spec.logits) + len(spec.cls_layers) + len(spec.token_layers) + bool(
        spec.token_layers
    )
    for signals in ablated:
        with pytest.raises(KeyError, match="lack"):
            method.loss(student, signals, LABELS)


@pytest.mark.parametrize("name", ["ft", *TEACHER_METHODS])
@pytest.mark.parametrize("shape", [ROBERTA, BIGRU], ids=["roberta", "bigru"])
@pytest.mark.parametrize("n_student,n_teacher", [(9, 13), (13, 9)])
def test_gradients_reach_the_student_and_never_the_teacher(
    name: str, shape: ModelShape, n_student: int, n_teacher: int
) -> None:
    params = {"window": 3} if name == "ckd" else {}
    method = build_method(name, shape, None if name == "ft" else TEACHER, **params)
    student = make_student(shape, [n_student, n_student - 3, 4], n_student)
    teacher = make_teacher([n_teacher, 5, n_teacher - 1], n_teacher)
    loss = method.loss(student, teacher.restrict(method.signals()) if name != "ft" else None, LABELS)
    assert loss.dim() == 0 and torch.isfinite(loss)
    loss.backward()
    assert student.logits.grad is not None and student.logits.grad.abs().sum() > 0
    leaves = [teacher.logits, *teacher.cls.values(), *teacher.tokens.values()]
    assert all(t is not None and t.requires_grad and t.grad is None for t in leaves)
    # Student layers the loss reads: none for logit methods, PKD's matched layers, all of CKD's.
    used = method.student_layers if isinstance(method, (PKD, CKD)) else ()
    for layer, h in enumerate(student.hidden_states):
        got = h.grad is not None and h.grad.abs().sum().item() > 0
        assert got == (layer in used), (name, layer)
    for param in method.parameters():
        assert param.grad is not None and param.grad.abs().sum() > 0
    if name == "pkd":
        assert len(list(method.parameters())) == 2 * len(method.student_layers)
    if name == "ckd":
        assert (len(list(method.parameters())) == 2) == (shape is BIGRU)


def test_relations_from_stored_grams_equal_relations_from_states():
    """What the teacher cache stores for CKD (Gram numbers of the union of layers) gives every student's
    relations, including a layer map with repeats (a student deeper than its teacher)."""
    from kd_methods.ckd import ckd_relations, relations_from_grams, teacher_grams

    torch.manual_seed(0)
    union = [torch.randn(2, 30, 24, dtype=torch.float64) for _ in range(4)]  # teacher layers 0, 2, 4, 6 say
    bands, gram = teacher_grams(union, window=3)
    assert bands.shape == (2, 30, 4, 13) and gram.shape == (2, 30, 4, 4)
    mask = torch.ones(2, 30, dtype=torch.long)
    for picks in ([0, 1, 3], [0, 2, 2, 3, 3]):
        want = ckd_relations([union[i] for i in picks], mask, window=3)
        got = relations_from_grams(bands, gram, picks, window=3)
        for name in ("wr_dist", "wr_angle", "ltr_dist", "ltr_angle"):
            torch.testing.assert_close(got[name], want[name].to(got[name].dtype), rtol=1e-6, atol=1e-6)
