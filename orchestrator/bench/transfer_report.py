"""The transfer check's statistics, its JSON and its verdict (``transfer.py`` runs the students).

Every delta is a method's test score minus FT's on the same seed (seed-paired), with a 95% t interval and a paired
t-test over the seeds. The KD family's delta is, per seed, the mean over the four KD methods of their deltas; its
interval is the t interval of those per-seed means. Pooling the 4 x seeds deltas instead would treat them as
independent, but the four methods of one seed share that seed's FT score (and its initialisation and batch order),
so their deltas are correlated and a pooled interval would be too narrow.

Pass (on the transfer-set arm): the teacher beats FT by ``min_advantage`` on validation; every method's mean delta
is > 0; the KD family's 95% interval lies wholly above 0; and each method's placebo (teacher rows permuted) keeps
at most half of that method's gain (placebo delta <= gain / 2, gain > 0).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from tasks import get_task
from tasks.base import DEGENERATE_MARGIN

KD_METHODS = ("kd", "dist", "pkd", "ckd")
FAMILY_RULE = "per-seed mean over the KD methods of their deltas, then a t interval over the seeds"


def headline(task: str, result: Any, split: str = "test") -> float:
    """The task's headline metric of a trained run on test, or on validation at its best epoch."""
    metrics = result.test if split == "test" else result.best_val
    return float(metrics[get_task(task).headline_metric])


def paired_stats(method: list[float], ft: list[float]) -> dict[str, Any]:
    """Mean of the seed-paired differences, its 95% t interval and the paired t-test's two-sided p-value."""
    diff = np.asarray(method, dtype=float) - np.asarray(ft, dtype=float)
    return mean_ci(diff.tolist())


def mean_ci(diff: list[float]) -> dict[str, Any]:
    """Mean of ``diff``, its 95% t interval and the one-sample t-test of mean 0 (two-sided)."""
    from scipy import stats

    d = np.asarray(diff, dtype=float)
    n = len(d)
    mean = float(d.mean())
    if n < 2:
        return {"mean_delta": mean, "ci95": [math.nan, math.nan], "p_value": math.nan}
    sd = float(d.std(ddof=1))
    half = float(stats.t.ppf(0.975, n - 1)) * sd / math.sqrt(n)
    p = float(stats.ttest_1samp(d, 0.0).pvalue) if sd > 0 else (1.0 if mean == 0 else 0.0)
    return {"mean_delta": mean, "ci95": [mean - half, mean + half], "p_value": p}


def _degenerate(scores: list[float], baseline: float) -> int:
    # the analysis rule: a score at most the majority baseline (+ DEGENERATE_MARGIN) is no finding
    return sum(x <= baseline + DEGENERATE_MARGIN for x in scores)


def method_rows(arm: dict[str, Any], ft_scores: list[float], baseline: float) -> dict[str, Any]:
    """``methods.<m>`` of one arm: its scores, params, search and its seed-paired statistics against FT."""
    rows = {}
    for method in KD_METHODS:
        r = arm[method]
        rows[method] = {
            **paired_stats(r["scores"], ft_scores),
            "mean": float(np.mean(r["scores"])),
            "scores": r["scores"],
            "degenerate_seeds": _degenerate(r["scores"], baseline),
            "params": r["params"],
            **({"search": r["search"]} if "search" in r else {}),
        }
    return rows


def family(methods: dict[str, Any], ft_scores: list[float]) -> dict[str, Any]:
    """The KD family's delta: per seed the mean over methods of (method - FT), then its mean and t interval."""
    per_seed = np.mean([np.asarray(m["scores"]) - np.asarray(ft_scores) for m in methods.values()], axis=0)
    return {**mean_ci(per_seed.tolist()), "per_seed": per_seed.tolist(), "rule": FAMILY_RULE}


def placebo_rows(transfer: dict[str, Any], placebo: dict[str, Any], ft_scores: list[float]) -> dict[str, Any]:
    """``placebo.methods.<m>``: the placebo's delta against the same FT scores, and the share of the gain it lost."""
    rows = {}
    for method in KD_METHODS:
        gain = transfer[method]["mean_delta"]
        stats = paired_stats(placebo[method]["scores"], ft_scores)
        kept = stats["mean_delta"]
        rows[method] = {
            **stats,
            "mean": float(np.mean(placebo[method]["scores"])),
            "scores": placebo[method]["scores"],
            "params": placebo[method]["params"],
            # the share of the method's gain the placebo lost (1: all of it); undefined without a gain
            "share_of_gain_lost": (gain - kept) / gain if gain > 0 else None,
            "loses_half": bool(gain > 0 and kept <= gain / 2),
        }
    return rows


def verdict(size: Any, teacher: dict[str, Any], methods: dict, fam: dict, placebo: dict) -> dict[str, Any]:
    """Each sub-condition of a pass, and ``passed`` (all of them)."""
    gains = {m: bool(r["mean_delta"] > 0) for m, r in methods.items()}
    out = {
        "teacher_advantage_ok": bool(teacher["advantage_over_ft_val"] >= size.min_advantage),
        "every_method_gains": all(gains.values()),
        "method_gains": gains,
        "kd_family_ci_above_zero": bool(fam["ci95"][0] > 0),
        "placebo_loses_half_of_every_gain": all(p["loses_half"] for p in placebo.values()),
        "placebo_loses_half": {m: p["loses_half"] for m, p in placebo.items()},
        "mean_of_mean_deltas": float(np.mean([r["mean_delta"] for r in methods.values()])),
    }
    keys = (
        "teacher_advantage_ok",
        "every_method_gains",
        "kd_family_ci_above_zero",
        "placebo_loses_half_of_every_gain",
    )
    out["passed"] = all(out[k] for k in keys)
    return out


def results(
    size: Any, ft: dict[str, Any], arms: dict[str, Any], teacher: dict[str, Any], baseline: float
) -> dict[str, Any]:
    """The JSON the check writes: the top level is the transfer-set arm; ``same_labels`` and ``placebo`` beside it."""
    ft_scores = ft["scores"]
    methods = method_rows(arms["transfer"], ft_scores, baseline)
    fam = family(methods, ft_scores)
    same = method_rows(arms["same_labels"], ft_scores, baseline)
    placebo = placebo_rows(methods, arms["placebo"], ft_scores)
    advantage = teacher["val_score"] - ft["val_score"]
    teacher = {**teacher, "advantage_over_ft_val": advantage, "advantage_ok": advantage >= size.min_advantage}
    ft_out = {
        "mean": float(np.mean(ft_scores)),
        "sd": float(np.std(ft_scores, ddof=1)) if len(ft_scores) > 1 else 0.0,
        "scores": ft_scores,
        "degenerate_seeds": _degenerate(ft_scores, baseline),
        "params": ft["params"],
        "search": ft["search"],
        "val_score": ft["val_score"],
        "above_baseline": float(np.mean(ft_scores)) > baseline + DEGENERATE_MARGIN,
    }
    return {
        "task": size.task,
        "teacher": teacher,
        "majority_baseline": baseline,
        "headline_metric": get_task(size.task).headline_metric,
        "seeds": list(size.seeds),
        "student": size.student,
        "size": {k: v for k, v in vars(size).items() if k != "candidates"},
        "candidates": size.candidates,
        "ft": ft_out,
        "methods": methods,
        "kd_family": fam,
        "same_labels": {
            "ft": {"scores": ft_scores, "mean": ft_out["mean"]},
            "methods": same,
            "kd_family": family(same, ft_scores),
        },
        "placebo": {"permutation_seed": size.placebo_seed, "methods": placebo},
        "verdict": verdict(size, teacher, methods, fam, placebo),
    }


def _row(name: str, m: dict[str, Any], extra: str = "") -> str:
    ci = f"[{m['ci95'][0]:+.3f}, {m['ci95'][1]:+.3f}]"
    return f"{name:<12}{m['mean']:>8.4f}{m['mean_delta']:>+9.4f}{ci:>20}{m['p_value']:>8.3f}  {m.get('params', '')}{extra}"


def print_table(r: dict[str, Any]) -> None:
    t = r["teacher"]
    print(
        f"\ntask {r['task']} ({r['headline_metric']}), device {r['device']}, student {r['student']}, seeds {r['seeds']}"
        f"\nlabelled {r['labelled']} of {r['data']['train_inputs']} training inputs ({r['data']['labelled']})"
        f"\nteacher {t['name']} (fine-tuned on the labelled part): test {t['score']:.4f}, val {t['val_score']:.4f} "
        f"(+{t['advantage_over_ft_val']:.4f} over FT on val; >= 0.10: {t['advantage_ok']}); "
        f"majority baseline {r['majority_baseline']:.4f}"
    )
    if cos := t.get("cls_pairwise_cos"):  # PKD's targets (orchestrator/cache/spread.py)
        print(
            "teacher [CLS] mean pairwise cosine (PKD's targets): "
            + _params({f"layer {k}": v for k, v in cos.items()})
        )
    print(f"{'arm/method':<12}{'mean':>8}{'delta':>9}{'ci95':>20}{'p':>8}  params")
    print("-" * 80)
    ft = r["ft"]
    print(f"{'ft':<12}{ft['mean']:>8.4f}{'':>9}{'':>20}{'':>8}  {ft['params']}  (sd {ft['sd']:.4f})")
    for title, rows, fam in (
        ("transfer set", r["methods"], r["kd_family"]),
        ("same labels", r["same_labels"]["methods"], r["same_labels"]["kd_family"]),
        ("placebo", r["placebo"]["methods"], None),
    ):
        print(f"-- {title}")
        for name, m in rows.items():
            lost = m.get("share_of_gain_lost")
            extra = f"  (gain lost: {lost:.0%})" if lost is not None else ""
            deg = f"  degenerate seeds: {m['degenerate_seeds']}" if m.get("degenerate_seeds") else ""
            print(_row(name, m, extra + deg))
        if fam:
            ci = f"[{fam['ci95'][0]:+.3f}, {fam['ci95'][1]:+.3f}]"
            print(f"{'KD family':<12}{'':>8}{fam['mean_delta']:>+9.4f}{ci:>20}{fam['p_value']:>8.3f}")
    v = r["verdict"]
    print(
        f"teacher >= FT + 0.10 on val: {v['teacher_advantage_ok']}; every method gains: {v['every_method_gains']}; "
        f"KD family ci95 above 0: {v['kd_family_ci_above_zero']}; placebo loses half of every gain: "
        f"{v['placebo_loses_half_of_every_gain']}\npassed: {v['passed']}   ({r['seconds'] / 60:.1f} min)"
    )


def _params(p: dict[str, Any]) -> str:
    return ", ".join(f"{k} {v:g}" if isinstance(v, float) else f"{k} {v}" for k, v in p.items())


def _ci(m: dict[str, Any]) -> str:
    lo, hi = m["ci95"]
    return f"[{lo:+.3f}, {hi:+.3f}]"


def markdown(r: dict[str, Any]) -> str:
    """The README's and docs/METHODS.md's tables of a check's JSON (``python -m orchestrator.bench.transfer_report``)."""
    t, ft, v = r["teacher"], r["ft"], r["verdict"]
    ok = {True: "PASS", False: "FAIL"}
    lines = [
        f"Teacher {t['name']} fine-tuned on the {r['data']['labelled']} labelled samples: validation "
        f"{t['val_score']:.3f}, test {t['score']:.3f}; best FT candidate on validation {ft['val_score']:.3f} "
        f"(teacher {t['advantage_over_ft_val']:+.3f}). Test majority baseline {r['majority_baseline']:.3f}; "
        f"{r['headline_metric']} on test, seeds {r['seeds']}.",
        "",
        "| arm | method | test (mean) | delta vs FT | 95% CI | p | chosen | degenerate seeds | placebo delta "
        "| gain lost to placebo |",
        "|---|---|---|---|---|---|---|---|---|---|",
        f"| - | FT | {ft['mean']:.3f} (sd {ft['sd']:.3f}) | | | | {_params(ft['params'])} | "
        f"{ft['degenerate_seeds']} | | |",
    ]
    for arm, rows in (("transfer set", r["methods"]), ("same labels", r["same_labels"]["methods"])):
        for name, m in rows.items():
            plac = r["placebo"]["methods"][name] if arm == "transfer set" else None
            lost = plac.get("share_of_gain_lost") if plac else None
            lines.append(
                f"| {arm} | {name.upper()} | {m['mean']:.3f} | {m['mean_delta']:+.3f} | {_ci(m)} | "
                f"{m['p_value']:.2f} | {_params(m['params'])} | {m['degenerate_seeds']} | "
                + (f"{plac['mean_delta']:+.3f} | " if plac else "| ")
                + (f"{lost:.0%} |" if lost is not None else ("no gain |" if plac else "|"))
            )
        fam = r["kd_family"] if arm == "transfer set" else r["same_labels"]["kd_family"]
        lines.append(
            f"| {arm} | KD family | | {fam['mean_delta']:+.3f} | {_ci(fam)} | {fam['p_value']:.2f} | | | | |"
        )
    gains = ", ".join(f"{m.upper()} {ok[g]}" for m, g in v["method_gains"].items())
    halves = ", ".join(f"{m.upper()} {ok[g]}" for m, g in v["placebo_loses_half"].items())
    lines += [
        "",
        f"- (1) teacher >= FT + {r['size']['min_advantage']:.2f} on validation: {ok[v['teacher_advantage_ok']]}",
        f"- (2) every method's mean delta > 0: {ok[v['every_method_gains']]} ({gains})",
        f"- (3) KD family's 95% CI above 0: {ok[v['kd_family_ci_above_zero']]}",
        f"- (4) each placebo loses >= half of its method's gain: {ok[v['placebo_loses_half_of_every_gain']]} "
        f"({halves})",
        f"- **{'passed' if v['passed'] else 'not passed'}**",
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    """``python -m orchestrator.bench.transfer_report RESULT.json``: the check's full table from its JSON."""
    import json
    from pathlib import Path

    from tasks.cli_errors import OneLineArgumentParser, fail

    parser = OneLineArgumentParser(
        prog="python -m orchestrator.bench.transfer_report",
        description="The knowledge-transfer check's full table (markdown) from the JSON `bench transfer` wrote.",
    )
    parser.add_argument("result", type=Path, help="the JSON of `python -m orchestrator.bench transfer --out`")
    args = parser.parse_args(argv)
    try:
        result = json.loads(args.result.read_text(encoding="utf-8"))
        table = markdown(result)
    except OSError as exc:
        fail(exc)
    except (ValueError, KeyError, TypeError) as exc:  # not JSON, or not the check's JSON
        fail(ValueError(f"{args.result}: not a transfer check result ({type(exc).__name__}: {exc})"))
    print(table)
    return 0


if __name__ == "__main__":  # python -m orchestrator.bench.transfer_report docs/benchmarks/transfer_cpu.json
    raise SystemExit(main())
