"""The bias audit of one experiment: attribute shares of generated samples vs the data, and its gate."""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from components.audit.fairness import amplification, bootstrap_shares
from components.config import AuditConfig
from components.evaluation.shares import fairness_discrepancy, shares


def audit_shares(
    generated: list[int] | None,
    train_labels: np.ndarray,
    class_names: list[str],
    cfg: AuditConfig,
    *,
    attribute: str = "class",
    seed: int = 0,
    groups: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Fairness discrepancy (Choi et al., arXiv 1910.12008) of generated attribute shares vs training shares.

    ``generated`` may hold -1 for samples with no attribute (e.g. off every mode). They are their own category,
    ``unlabelled``, compared with the data's share of it (0 for a clean dataset): the shares of the K classes and
    of ``unlabelled`` sum to 1, so a model that emits junk cannot look fair by omission (900 junk samples of
    1,000 give an FD L2 of at least 0.9), and ``cfg.max_unlabelled`` gates that share directly. ``groups``
    holds the per-group audits of images (``components.audit.groups``: ``{"quality": ..., "memorization":
    ...}``), gated by ``cfg.max_quality_gap`` and ``cfg.max_memorization`` when those are set.
    """
    k = len(class_names)
    extra = _group_gates(groups, cfg)
    if k == 0 or generated is None:
        gates = extra
        failed = _failed(gates)
        return {
            "attribute": None,
            **_group_fields(groups),
            "gates": _gate_table(gates),
            "passed": not failed,
            "failed": failed,
            "note": "the dataset has no attribute labels: no shares to audit",
        }
    gen = np.asarray(generated, dtype=np.int64)
    n = len(gen)
    labelled = gen[gen >= 0]
    y_train = np.asarray(train_labels).reshape(-1)
    # K classes + "unlabelled" (the last entry): both vectors sum to 1 over all N samples
    p_gen = shares(np.where(gen >= 0, gen, k), k + 1)
    p_train = shares(np.where(y_train >= 0, y_train, k), k + 1)
    fd = fairness_discrepancy(p_gen, p_train)
    uniform = np.append(np.full(k, (1.0 - p_gen[k]) / k), p_gen[k])  # balanced classes, the same junk share
    ci = bootstrap_shares(np.where(gen >= 0, gen, k), k + 1, seed=seed) if n else None
    gates = {"fd_l2": (fd["l2"], cfg.max_fd_l2)}
    if cfg.max_fd_kl is not None:
        gates["fd_kl"] = (fd["kl"], cfg.max_fd_kl)
    if cfg.max_unlabelled is not None:
        gates["unlabelled"] = (float(p_gen[k]), cfg.max_unlabelled)
    gates.update(extra)
    failed = _failed(gates)
    return {
        "attribute": attribute,
        "n_generated": n,
        "n_unlabelled": int(n - len(labelled)),
        "share_unlabelled": float(p_gen[k]),
        "share_unlabelled_train": float(p_train[k]),
        "shares_generated": dict(zip(class_names, p_gen[:k].round(6).tolist(), strict=True)),
        "shares_train": dict(zip(class_names, p_train[:k].round(6).tolist(), strict=True)),
        "shares_ci95": (
            {c: [lo, hi] for c, lo, hi in zip(class_names, ci["lo"][:k], ci["hi"][:k], strict=True)} if ci else {}
        ),
        "fd_l2": fd["l2"],
        "fd_l1": fd["l1"],
        "fd_kl": fd["kl"],
        "fd_l2_vs_uniform": fairness_discrepancy(p_gen, uniform)["l2"],
        "amplification": _amplification(p_gen[:k], p_train[:k]),
        **_group_fields(groups),
        "gates": _gate_table(gates),
        "passed": not failed,
        "failed": failed,
    }


def _amplification(p_gen: np.ndarray, p_train: np.ndarray) -> float | None:
    """Bias amplification among the labelled samples (None when the model labelled none)."""
    if p_gen.sum() <= 0 or p_train.sum() <= 0:
        return None
    return amplification(p_gen / p_gen.sum(), p_train / p_train.sum())


def _group_gates(groups: dict[str, Any] | None, cfg: AuditConfig) -> dict[str, tuple[float, float]]:
    gates: dict[str, tuple[float, float]] = {}
    if groups is None:
        return gates
    if cfg.max_quality_gap is not None and "quality" in groups:
        gap = groups["quality"]["gap"]
        gates["quality_gap"] = (math.nan if gap is None else gap, cfg.max_quality_gap)  # unmeasured: fails
    if cfg.max_memorization is not None and "memorization" in groups:
        gates["memorization"] = (groups["memorization"]["value"], cfg.max_memorization)
    return gates


def _group_fields(groups: dict[str, Any] | None) -> dict[str, Any]:
    """Per-group sections plus their headline scalars (for ``dvc metrics``)."""
    if not groups:
        return {}
    out: dict[str, Any] = dict(groups)
    if "quality" in groups:
        out["quality_gap"] = groups["quality"]["gap"]
    if "memorization" in groups:
        out["memorization_rate"] = groups["memorization"]["rate"]
    return out


def _failed(gates: dict[str, tuple[float, float]]) -> list[str]:
    """One line per failed gate: its name, value and threshold (a NaN value fails)."""
    return [f"{g} = {v:.4f} > {t:g}" for g, (v, t) in gates.items() if not v <= t]


def _gate_table(gates: dict[str, tuple[float, float]]) -> dict[str, dict[str, Any]]:
    return {g: {"value": v, "threshold": t, "passed": bool(v <= t)} for g, (v, t) in gates.items()}


def _fmt(v: Any) -> str:
    if v is None:
        return "–"
    if isinstance(v, float):
        return f"{v:.4f}" if math.isfinite(v) else str(v)
    return str(v)


def audit_markdown(report: dict[str, Any], experiment: str) -> str:
    """The audit report as markdown: verdict, gates, shares and the per-group tables."""
    verdict = "**passed**" if report["passed"] else "**FAILED**: " + "; ".join(report["failed"])
    lines = [f"# Audit: {experiment}", "", f"Verdict: {verdict}", ""]
    if report.get("note"):
        lines += [report["note"], ""]
    if report["gates"]:
        lines += ["| gate | value | threshold | passed |", "|---|---|---|---|"]
        lines += [
            f"| {g} | {_fmt(r['value'])} | {r['threshold']:g} | {'yes' if r['passed'] else 'NO'} |"
            for g, r in report["gates"].items()
        ]
        lines.append("")
    if report.get("attribute"):
        lines += [
            f"## Shares of `{report['attribute']}`",
            "",
            f"{report['n_generated']} generated samples ({report['n_unlabelled']} without the attribute); "
            f"fairness discrepancy L2 {report['fd_l2']:.4f}, L1 {report['fd_l1']:.4f}, KL {report['fd_kl']:.4f}; "
            f"amplification {_fmt(report['amplification'])}; unlabelled share {report['share_unlabelled']:.4f} "
            f"(data {report['share_unlabelled_train']:.4f}).",
            "",
            "| group | generated | 95% CI | train |",
            "|---|---|---|---|",
        ]
        ci = report.get("shares_ci95", {})
        for g, share in report["shares_generated"].items():
            lo_hi = ci.get(g)
            interval = f"[{lo_hi[0]:.3f}, {lo_hi[1]:.3f}]" if lo_hi else "–"
            lines.append(f"| {g} | {share:.3f} | {interval} | {report['shares_train'][g]:.3f} |")
        lines.append("")
    quality = report.get("quality")
    if quality:
        lines += [
            f"## Quality per group (precision / recall, k = {quality['k']}, domain classifier features)",
            "",
            f"Precision gap {_fmt(quality['precision_gap'])}, recall gap {_fmt(quality['recall_gap'])} "
            "(max − min over groups).",
            "",
            "| group | real | generated | precision | recall |",
            "|---|---|---|---|---|",
        ]
        lines += [
            f"| {g} | {r['n_real']} | {r['n_generated']} | {_fmt(r['precision'])} | {_fmt(r['recall'])} |"
            for g, r in quality["per_group"].items()
        ]
        lines.append("")
    mem = report.get("memorization")
    if mem:
        lines += [
            "## Memorization per group",
            "",
            f"Rule: {mem['rule']}. Overall rate {mem['rate']:.4f}; worst group with at least "
            f"{mem['min_group']} samples {_fmt(mem['max_group_rate'])}.",
            "",
            "| group | generated | memorized rate |",
            "|---|---|---|",
        ]
        lines += [f"| {g} | {r['n_generated']} | {_fmt(r['rate'])} |" for g, r in mem["per_group"].items()]
        lines.append("")
    return "\n".join(lines)
