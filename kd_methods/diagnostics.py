"""How big each loss term is, and how hard it pulls: the numbers behind docs/METHODS.md's "Loss scales".

``term_breakdown`` evaluates a method's ``loss_terms`` on one batch and, for each term, the norm of the gradient it
alone induces on the given parameters (the student's, plus the method's own such as PKD's projections). Two terms
whose values are alike can pull very differently; under Adam the update direction is set by the *relative* size
of the terms' gradients (a common factor on the whole loss is normalised away), while gradient clipping at a
fixed norm acts on their sum.
"""

from __future__ import annotations

from collections.abc import Iterable

import torch
from torch import Tensor, nn

from kd_methods.base import KDMethod, StudentOutput, TeacherSignals


def _grad_norm(term: Tensor, params: list[Tensor]) -> float:
    if not term.requires_grad:
        return 0.0
    grads = torch.autograd.grad(term, params, retain_graph=True, allow_unused=True)
    total = sum(float(g.detach().double().pow(2).sum()) for g in grads if g is not None)
    return total**0.5


def term_breakdown(
    method: KDMethod,
    params: Iterable[Tensor] | nn.Module,
    student: StudentOutput,
    teacher: TeacherSignals | None,
    labels: Tensor,
) -> dict[str, dict[str, float]]:
    """``{term: {"value": v, "grad_norm": g}}`` for each of ``method.loss_terms`` and for ``"total"``.

    ``student`` must come from a forward pass that records gradients with respect to ``params`` (a module's
    parameters are used when a module is given; the method's own parameters are added). ``value`` is the weighted
    term as it enters the loss; ``grad_norm`` is the L2 norm over all ``params`` of that term's gradient, before any
    clipping. The graph is kept, so the caller may still call ``backward`` on the loss.
    """
    if isinstance(params, nn.Module):
        params = params.parameters()
    plist = [p for p in params if p.requires_grad]
    plist += [p for p in method.parameters() if p.requires_grad and all(p is not q for q in plist)]
    if not plist:
        raise ValueError("term_breakdown needs parameters that require gradients")
    terms = method.loss_terms(student, teacher, labels)
    out = {name: {"value": float(t.detach()), "grad_norm": _grad_norm(t, plist)} for name, t in terms.items()}
    total = sum(terms.values(), start=torch.zeros((), device=labels.device))
    out["total"] = {"value": float(total.detach()), "grad_norm": _grad_norm(total, plist)}
    return out


def format_breakdown(breakdown: dict[str, dict[str, float]]) -> str:
    """One line per term: value, gradient norm, and the gradient norm's share of the terms' summed norms."""
    norms = sum(v["grad_norm"] for k, v in breakdown.items() if k != "total") or 1.0
    lines = []
    for name, v in breakdown.items():
        share = "" if name == "total" else f"  ({100 * v['grad_norm'] / norms:5.1f}% of term grad norms)"
        lines.append(f"{name:>10}: value {v['value']:.4g}  grad norm {v['grad_norm']:.4g}{share}")
    return "\n".join(lines)


__all__ = ["format_breakdown", "term_breakdown"]
