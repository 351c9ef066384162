"""The bias audit of one experiment: attribute shares of generated samples vs the data, and its gate."""

from __future__ import annotations

from typing import Any

import numpy as np

from components.audit.fairness import amplification, bootstrap_shares, fairness_discrepancy, shares
from components.config import AuditConfig


def audit_shares(
    generated: list[int] | None,
    train_labels: np.ndarray,
    class_names: list[str],
    cfg: AuditConfig,
    *,
    attribute: str = "class",
    seed: int = 0,
) -> dict[str, Any]:
    """Fairness discrepancy (Choi et al., arXiv 1910.12008) of generated attribute shares vs training shares.

    ``generated`` may hold -1 for samples with no attribute (e.g. off every mode): they count in N but in no
    class, so a model that emits junk cannot look fair by omission.
    """
    k = len(class_names)
    if k == 0 or generated is None:
        return {"attribute": None, "passed": True, "failed": [], "gates": {},
                "note": "the dataset has no attribute labels: nothing to audit"}
    gen = np.asarray(generated, dtype=np.int64)
    n = len(gen)
    labelled = gen[gen >= 0]
    p_gen = np.bincount(labelled, minlength=k) / max(n, 1)
    p_gen_norm = p_gen / p_gen.sum() if p_gen.sum() > 0 else np.full(k, 1.0 / k)
    p_train = shares(train_labels[train_labels >= 0], k)
    uniform = np.full(k, 1.0 / k)
    fd = fairness_discrepancy(p_gen_norm, p_train)
    ci = bootstrap_shares(labelled, k, seed=seed) if len(labelled) else None
    gates = {"fd_l2": (fd["l2"], cfg.max_fd_l2)}
    if cfg.max_fd_kl is not None:
        gates["fd_kl"] = (fd["kl"], cfg.max_fd_kl)
    failed = [f"{g} = {v:.4f} > {t:g}" for g, (v, t) in gates.items() if not v <= t]
    return {
        "attribute": attribute,
        "n_generated": n,
        "n_unlabelled": int(n - len(labelled)),
        "shares_generated": dict(zip(class_names, p_gen_norm.round(6).tolist(), strict=True)),
        "shares_train": dict(zip(class_names, p_train.round(6).tolist(), strict=True)),
        "shares_ci95": (
            {c: [lo, hi] for c, lo, hi in zip(class_names, ci["lo"], ci["hi"], strict=True)} if ci else {}
        ),
        "fd_l2": fd["l2"],
        "fd_l1": fd["l1"],
        "fd_kl": fd["kl"],
        "fd_l2_vs_uniform": fairness_discrepancy(p_gen_norm, uniform)["l2"],
        "amplification": amplification(p_gen_norm, p_train),
        "gates": {g: {"value": v, "threshold": t, "passed": bool(v <= t)} for g, (v, t) in gates.items()},
        "passed": not failed,
        "failed": failed,
    }
