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


def test_registry_holds_the_methods_with_their_families() -> None:
    # The paper's five, plus distil (the completion study's DistilBERT loss; tests/test_lm_distil.py).
    assert set(METHODS) == {"ft", "kd", "dist", "pkd", "ckd", "distil"}
    families = {name: cls.family for name, cls in METHODS.items()}
    assert families == {
        "ft": "none",
        "kd": "logit",
        "dist": "logit",
        "pkd": "feature",
        "ckd": "feature",
        "distil": "logit",
    }
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


def test_pkd_feature_term_is_the_mean_over_matched_layers_by_hand() -> None:
    """Two matched layers (student 3 layers: 1, 2), identity projections, 2-d [CLS] states of one sample.
    Layer 1: student (1,0) vs teacher (0,1): MSE of the unit vectors = ((1-0)^2 + (0-1)^2) / 2 = 1.
    Layer 2: student (1,0) vs teacher (3,0): same direction, 0. Mean over layers: 1/2 (the sum was 1)."""
    shape = ModelShape(num_layers=3, hidden_size=2)
    method = build_method("pkd", shape, shape)
    assert isinstance(method, PKD) and method.student_layers == (1, 2)
    with torch.no_grad():
        for proj in method.proj:
            proj.weight.copy_(torch.eye(2))
            proj.bias.zero_()
    h = torch.tensor([[[1.0, 0.0]]])
    student = StudentOutput(
        logits=torch.zeros(1, 3),
        hidden_states=(h,) * 4,
        cls_states=(h[:, 0],) * 4,
        attention_mask=torch.ones(1, 1),
    )
    teacher = TeacherSignals(
        logits=torch.zeros(1, 3),
        cls={
            method.teacher_layers[0]: torch.tensor([[0.0, 1.0]]),
            method.teacher_layers[1]: torch.tensor([[3.0, 0.0]]),
        },
    )
    assert method.feature_loss(student, teacher).item() == pytest.approx(0.5, rel=1e-6)
    terms = method.loss_terms(student, teacher, torch.tensor([0]))
    assert set(terms) == {"soft", "feature"}
    assert terms["feature"].item() == pytest.approx(10 * 0.5, rel=1e-6)
    assert terms["soft"].item() == pytest.approx(100 * math.log(3), rel=1e-6)


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


def _authors_windowed(a: Tensor, w: int, f) -> Tensor:
    """The study authors' ``windowed`` (student-distill/ckd/loss.py), verbatim but for names: (B, L, N, H) =>
    (B, L, N, 2W+1, H) with out-of-range slots zeroed, or (B, L, N, N, H) when the window covers the sequence."""
    n, h = a.shape[-2:]
    if w < n:
        index = torch.arange(n)[:, None] + torch.arange(-w, w + 1)[None, :]
        vec = f(a[:, :, :, None, :], a[:, :, index.clamp(min=0, max=n - 1), :])
        expanded = index[..., None].expand(-1, -1, h)
        vec = vec * ((expanded >= 0) & (expanded < n))
    else:
        vec = f(a[:, :, :, None, :], a[:, :, None, :])
    return vec


def _authors_cos_dist(a: Tensor, w: int) -> Tensor:
    a = F.normalize(a, p=2, dim=-1)
    return 1 - _authors_windowed(a, w, lambda x, y: x * y).sum(-1)


def _authors_cos_angle(a: Tensor, w: int) -> Tensor:
    vec = F.normalize(_authors_windowed(a, w, lambda x, y: x - y), p=2, dim=-1)
    return torch.einsum("blnwh,blnzh->blnwz", vec, vec)


def _authors_ckd_terms(
    s_hidden: list[Tensor], t_hidden: list[Tensor], valid: Tensor, w: int
) -> dict[str, float]:
    """The authors' ckd_loss terms with padding left out: each sample is cut to its real tokens (a prefix) and run
    through their functions alone, and the squared errors and entry counts are summed over the batch, so a padded
    position is in neither the numerator nor the denominator."""
    sums = dict.fromkeys(("wr_dist", "wr_angle", "ltr_dist", "ltr_angle"), 0.0)
    counts = dict.fromkeys(sums, 0)
    for b in range(valid.shape[0]):
        n = int(valid[b].sum())
        assert bool(valid[b, :n].all()), "the reference expects the real tokens to be a prefix"
        if n == 0:
            continue
        a = torch.stack([h[b, :n] for h in s_hidden])[None]  # (1, L, n, H_s)
        t = torch.stack([h[b, :n] for h in t_hidden])[None]
        c, d = a.transpose(1, 2), t.transpose(1, 2)  # (1, n, L, H): LTR, windowed over the layers
        for key, rel, x, y in (
            ("wr_dist", _authors_cos_dist, a, t),
            ("wr_angle", _authors_cos_angle, a, t),
            ("ltr_dist", _authors_cos_dist, c, d),
            ("ltr_angle", _authors_cos_angle, c, d),
        ):
            sx, sy = rel(x, w), rel(y, w)
            sums[key] += ((sx - sy) ** 2).sum().item()
            counts[key] += sx.numel()
    return {k: sums[k] / max(counts[k], 1) for k in sums}


def _with_tokens(method: CKD, teacher: TeacherSignals, t_hidden: list[Tensor]) -> TeacherSignals:
    return replace(teacher, tokens=dict(zip(method.teacher_layers, t_hidden)))


@pytest.mark.parametrize(
    "n_student,n_teacher,window,student_layers",
    [(7, 9, 2, 3), (9, 6, 2, 3), (12, 12, 3, 2), (6, 8, 10, 3), (10, 10, 1, 3)],
    ids=["windowed", "teacher-shorter", "mixed-short-and-long", "all-shorter-than-window", "layers-windowed"],
)
def test_ckd_terms_equal_the_authors_formulas_with_padding_left_out(
    n_student: int, n_teacher: int, window: int, student_layers: int
) -> None:
    """Against a slow port of the authors' loss.py: every window slot, the full angle matrix and the full layer
    tensors count; a sample no longer than the window is compared over all its pairs; with more layers than the
    window (L = 4 > w = 1) the layers are windowed too."""
    shape = ModelShape(num_layers=student_layers, hidden_size=32)
    method = build_method("ckd", shape, TEACHER, window=window)
    assert isinstance(method, CKD)
    s_len, t_len = [n_student, n_student - 2, 3], [n_teacher - 1, n_teacher, n_teacher]
    student = make_student(shape, s_len, n_student, dtype=torch.float64)
    teacher = make_teacher(t_len, n_teacher, dtype=torch.float64)
    n = min(n_student, n_teacher)
    valid = padding_mask(s_len, n_student)[:, :n].bool() & padding_mask(t_len, n_teacher)[:, :n].bool()
    s_hidden = [h[:, :n].detach() for h in student.hidden_states]
    t_hidden = [teacher.tokens[layer][:, :n].detach() for layer in method.teacher_layers]
    want = _authors_ckd_terms(s_hidden, t_hidden, valid, window)
    got = method.feature_terms(student, teacher)
    for key in want:
        assert got[key].item() == pytest.approx(want[key], rel=1e-9, abs=1e-15), key
    wr, ltr = method.feature_loss(student, teacher)
    assert wr.item() == pytest.approx(want["wr_dist"] + want["wr_angle"], rel=1e-9)
    assert ltr.item() == pytest.approx(want["ltr_dist"] + want["ltr_angle"], rel=1e-9)
    assert teacher.logits is not None
    soft = F.cross_entropy(student.logits[:3] / 3, torch.softmax(teacher.logits / 3, -1))
    expected = 9 * soft + 10 * (wr + 10 * ltr)
    assert method.loss(student, teacher, LABELS).item() == pytest.approx(expected.item(), rel=1e-9)
    # Padding changes nothing: the same samples padded further give the same terms.
    pad = 4
    padded_student = replace(
        student,
        hidden_states=tuple(F.pad(h.detach(), (0, 0, 0, pad), value=7.0) for h in student.hidden_states),
        attention_mask=F.pad(student.attention_mask, (0, pad)),
    )
    padded_teacher = replace(
        teacher,
        tokens={k: F.pad(v.detach(), (0, 0, 0, pad), value=-3.0) for k, v in teacher.tokens.items()},
        token_mask=F.pad(teacher.token_mask, (0, pad)),
    )
    again = method.feature_terms(padded_student, padded_teacher)
    for key in want:
        assert again[key].item() == pytest.approx(got[key].item(), rel=1e-12, abs=1e-15), key


def _hand_case_states() -> tuple[list[Tensor], list[Tensor]]:
    """Three 2-d points: student (1,0), (0,1), (2,0); teacher (1,0), (2,0), (3,0) (all one direction)."""
    s = torch.tensor([[1.0, 0.0], [0.0, 1.0], [2.0, 0.0]], dtype=torch.float64)
    t = torch.tensor([[1.0, 0.0], [2.0, 0.0], [3.0, 0.0]], dtype=torch.float64)
    return [s], [t]


# Hand values for the hand case. Distances: the student's d(0,1) = d(1,2) = 1 (orthogonal), d(0,2) = 0; the
# teacher's are all 0, so the ordered (i, j) entries give 4 squared errors of 1. Angles at vertex i (teacher: 1 at
# the ends, -1 in the middle): i=0 student cos((1,-1),(-1,0)) = -1/sqrt2; i=1 cos((-1,1),(-2,1)) = 3/sqrt10;
# i=2 cos((1,0),(2,-1)) = 2/sqrt5. Each (j, k) angle appears twice in the full matrix.
_ANGLE_ERR = {0: (1 + 1 / math.sqrt(2)) ** 2, 1: (3 / math.sqrt(10) + 1) ** 2, 2: (2 / math.sqrt(5) - 1) ** 2}


@pytest.mark.parametrize(
    "window,dist,angle",
    [
        # w = 1: 3 slots per token (n = 3 > w): 3 * 3 = 9 distance entries, 3 * 9 = 27 angle entries; only the
        # middle token has a (j, k) pair inside its window.
        (1, 4 / 9, 2 * _ANGLE_ERR[1] / 27),
        # w = 2: 5 slots (n = 3 > w), the out-of-range ones count: 3 * 5 = 15 and 3 * 25 = 75 entries.
        (2, 4 / 15, 2 * sum(_ANGLE_ERR.values()) / 75),
        # w = 3: the window covers the 3 tokens, so all 3 x 3 pairs and 3 x 3 x 3 triples: 9 and 27 entries.
        (3, 4 / 9, 2 * sum(_ANGLE_ERR.values()) / 27),
    ],
)
def test_ckd_word_relation_normalisation_by_hand(window: int, dist: float, angle: float) -> None:
    """One sample of three tokens; student and teacher with one layer equal to their embedding output, so both
    layers give the same WR (WR's layer mean is that value) and LTR is 0. Padding (a 4th position) is left out."""
    shape = ModelShape(num_layers=1, hidden_size=2)
    method = build_method("ckd", shape, shape, window=window)
    assert isinstance(method, CKD)
    (s,), (t,) = _hand_case_states()
    s4, t4 = F.pad(s, (0, 0, 0, 1), value=5.0)[None], F.pad(t, (0, 0, 0, 1), value=-5.0)[None]
    student = StudentOutput(
        logits=torch.zeros(1, 2, dtype=torch.float64),
        hidden_states=(s4, s4),
        cls_states=(s4[:, 0], s4[:, 0]),
        attention_mask=torch.tensor([[1, 1, 1, 0]]),
    )
    teacher = TeacherSignals(
        logits=torch.zeros(1, 2, dtype=torch.float64),
        tokens={0: t4, 1: t4},
        token_mask=torch.tensor([[1, 1, 1, 0]]),
    )
    got = method.feature_terms(student, teacher)
    assert got["wr_dist"].item() == pytest.approx(dist, rel=1e-9)
    assert got["wr_angle"].item() == pytest.approx(angle, rel=1e-9)
    assert got["ltr_dist"].item() == 0.0 and abs(got["ltr_angle"].item()) < 1e-20


@pytest.mark.parametrize(
    "window,dist,angle",
    [
        # L = 3 layers <= w: the full 3 x 3 and 3 x 3 x 3 layer tensors of the one token, 9 and 27 entries.
        (3, 4 / 9, 2 * sum(_ANGLE_ERR.values()) / 27),
        # L = 3 > w = 1: layers windowed, 2w+1 = 3 slots; the pair (0, 2) and the end-vertex angles drop out.
        (1, 4 / 9, 2 * _ANGLE_ERR[1] / 27),
    ],
)
def test_ckd_layer_relation_normalisation_by_hand(window: int, dist: float, angle: float) -> None:
    """One real token whose three layers are the hand case's three points (and a padding position)."""
    shape = ModelShape(num_layers=2, hidden_size=2)
    method = build_method("ckd", shape, shape, window=window)
    assert isinstance(method, CKD)
    (s,), (t,) = _hand_case_states()
    pad = torch.tensor([[9.0, -4.0]], dtype=torch.float64)
    s_layers = tuple(torch.cat([s[i : i + 1], pad])[None] for i in range(3))  # [1, 2, 2] each
    t_layers = {i: torch.cat([t[i : i + 1], -pad])[None] for i in range(3)}
    student = StudentOutput(
        logits=torch.zeros(1, 2, dtype=torch.float64),
        hidden_states=s_layers,
        cls_states=tuple(h[:, 0] for h in s_layers),
        attention_mask=torch.tensor([[1, 0]]),
    )
    teacher = TeacherSignals(
        logits=torch.zeros(1, 2, dtype=torch.float64), tokens=t_layers, token_mask=torch.tensor([[1, 1]])
    )
    got = method.feature_terms(student, teacher)
    assert got["ltr_dist"].item() == pytest.approx(dist, rel=1e-9)
    assert got["ltr_angle"].item() == pytest.approx(angle, rel=1e-9)
    # A one-token sample is shorter than any window: its single slot is itself, so WR is 0 (over 1 entry).
    assert got["wr_dist"].item() == pytest.approx(0.0, abs=1e-12) and got["wr_angle"].item() == 0.0


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


@pytest.mark.parametrize("name", ["ft", *TEACHER_METHODS])
def test_loss_is_the_sum_of_its_terms_and_the_breakdown_reports_each(name: str) -> None:
    from kd_methods.diagnostics import term_breakdown

    params = {"window": 3} if name == "ckd" else {}
    method = build_method(name, ROBERTA, None if name == "ft" else TEACHER, **params)
    student = make_student(ROBERTA, [9, 6, 4], 9)
    teacher = None if name == "ft" else make_teacher([9, 9, 5], 9)
    terms = method.loss_terms(student, teacher, LABELS)
    assert method.loss(student, teacher, LABELS).item() == pytest.approx(sum(terms.values()).item(), rel=1e-6)
    leaves = [student.logits, *student.hidden_states]
    report = term_breakdown(method, leaves, student, teacher, LABELS)
    assert set(report) == {*terms, "total"}
    assert all(v["grad_norm"] >= 0 for v in report.values()) and report["total"]["grad_norm"] > 0
    # The logit-only gradient of KD's soft term at T = 10 without T^2 is 1/T of its gradient through z/T.
    if name == "kd":
        z = student.logits.detach()
        p_s = torch.softmax(z / 10, -1)
        assert teacher is not None and teacher.logits is not None
        p_t = torch.softmax(teacher.logits.detach() / 10, -1)
        assert report["soft"]["grad_norm"] == pytest.approx(((p_s - p_t) / 10 / 3).norm().item(), rel=1e-5)
