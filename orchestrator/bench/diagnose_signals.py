"""What ``bench diagnose --mode train`` records beside the loss terms at each breakdown: the prediction spread of a
batch or split, and for PKD how alike the vectors on each side of its feature term are (docs/METHODS.md, "Why PKD
and CKD fail the transfer check"). Torch is imported inside the functions (the parser stays fast)."""

from __future__ import annotations

from typing import Any


def prediction_spread(preds: Any, labels: Any) -> dict[str, Any]:
    """Distinct predictions, the most frequent one's share, and accuracy over the labelled samples (label >= 0;
    None when there are none: an unlabelled sample, -100, is neither right nor wrong)."""
    labelled = labels >= 0
    n = int(labelled.sum())
    return {
        "classes": int(preds.unique().numel()),
        "top_share": float(preds.bincount().max() / preds.numel()),
        "accuracy": float((preds[labelled] == labels[labelled]).float().mean()) if n else None,
        "labelled": n,
    }


def mean_pairwise_cos(x: Any) -> float:
    """Mean cosine between the rows of ``x [B, H]`` over the B(B-1) ordered pairs: 1 when every row points one way."""
    import torch.nn.functional as F

    n = F.normalize(x.detach().float(), dim=-1)
    b = n.shape[0]
    return float(((n @ n.T).sum() - b) / max(b * (b - 1), 1))


def feature_alignment(method: Any, student: Any, teacher: Any) -> dict[str, float] | None:
    """For PKD (a method with teacher-side projections ``proj``): per matched layer, how alike the batch's vectors
    are (``mean_pairwise_cos``) on each side of the feature term, the student's [CLS] states ``s``, the teacher's
    raw [CLS] states ``t`` and projected ones ``Pt``, and the mean cosine of the matched pairs ``s_vs_Pt``. The
    term is MSE(n(s), n(Pt)) = (2/H)(1 - cos(s, Pt)): it can be met by making every s and Pt of the batch point
    one way (pairwise cosines near 1), which carries nothing about the sample."""
    import torch.nn.functional as F

    if not hasattr(method, "proj") or teacher is None or not getattr(teacher, "cls", None):
        return None
    out: dict[str, float] = {}
    for s_layer, t_layer, proj in zip(method.student_layers, method.teacher_layers, method.proj):
        s = student.cls_states[s_layer].detach().float()
        t = teacher.cls[t_layer].detach().float()
        pt = proj(t.to(proj.weight.dtype)).detach().float()
        pair = float(F.cosine_similarity(s, pt, dim=-1).mean())
        tag = f"{s_layer}<-{t_layer}"
        out.update({f"s {tag}": mean_pairwise_cos(s), f"t {tag}": mean_pairwise_cos(t)})
        out.update({f"Pt {tag}": mean_pairwise_cos(pt), f"s_vs_Pt {tag}": pair})
    return out
