"""Per-group audits of generated images: quality (precision / recall) and memorization, class by class.

A model can match the data's class shares and still serve one group worse: blurrier or less varied samples
for a minority class (Jain et al., arXiv 2001.09528), or copies of its few training images.

- Quality: for each class c, improved precision / recall (Kynkäänniemi et al., arXiv 1904.06991, k = 3) of
  the generated samples the domain classifier assigns to c against the real test images of class c, in the
  classifier's feature space. A class the model (almost) never generates — at most k samples, too few for a
  k-NN manifold — has recall 0 (nothing of it is covered) and no precision. The gap is max − min over
  classes; the gated ``quality_gap`` is the larger of the precision gap and the recall gap.
- Memorization: the nearest-neighbour-ratio test (``components.evaluation.memorization``) of every generated
  image against the whole training set, in pixel space; the rate per class of the generated image, and
  overall. The gated ``memorization`` value is the largest of the overall rate and the rates of classes with
  at least ``min_group`` generated samples (a class with 2 samples says little about a rate).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from components.audit.fairness import group_gap
from components.evaluation.memorization import nn_ratio_memorized
from components.evaluation.prdc import Features, precision_recall

PR_K = 3
MIN_GROUP = 10


def _np(a: Features) -> np.ndarray:
    return a.detach().cpu().numpy() if hasattr(a, "detach") else np.asarray(a)


def per_group_quality(
    real_features: Features,
    real_labels: Any,
    fake_features: Features,
    fake_labels: Any,
    class_names: list[str],
    *,
    k: int = PR_K,
) -> dict[str, Any]:
    """Precision / recall per class (see the module docstring) and their max − min gaps."""
    fr, ff = _np(real_features), _np(fake_features)
    yr, yf = np.asarray(real_labels).reshape(-1), np.asarray(fake_labels).reshape(-1)
    if len(fr) != len(yr) or len(ff) != len(yf):
        raise ValueError(
            f"per_group_quality: expected one label per feature row, got {len(fr)} real rows / {len(yr)} labels and "
            f"{len(ff)} generated rows / {len(yf)} labels"
        )
    per_group: dict[str, dict[str, Any]] = {}
    for c, name in enumerate(class_names):
        real_c, fake_c = fr[yr == c], ff[yf == c]
        row: dict[str, Any] = {"n_real": int(len(real_c)), "n_generated": int(len(fake_c))}
        if len(real_c) <= k:
            row.update(precision=None, recall=None, note=f"at most k={k} real samples: not measured")
        elif len(fake_c) <= k:
            row.update(precision=None, recall=0.0, note=f"at most k={k} generated samples: recall 0")
        else:
            row.update(precision_recall(real_c, fake_c, k=k))
        per_group[name] = row
    out: dict[str, Any] = {"k": k, "per_group": per_group}
    gaps = []
    for metric in ("precision", "recall"):
        values = {g: r[metric] for g, r in per_group.items() if r[metric] is not None}
        if len(values) >= 2:
            g = group_gap(values)
            out[f"{metric}_gap"], out[f"{metric}_max_group"], out[f"{metric}_min_group"] = (
                g["gap"],
                g["max_group"],
                g["min_group"],
            )
            gaps.append(g["gap"])
        else:
            out[f"{metric}_gap"] = None
    out["gap"] = max(gaps) if gaps else None
    return out


def per_group_memorization(
    fake: Features,
    train: Features,
    fake_labels: Any,
    class_names: list[str],
    *,
    min_group: int = MIN_GROUP,
) -> dict[str, Any]:
    """Nearest-neighbour-ratio memorization rate overall and per generated class (module docstring)."""
    memorized = nn_ratio_memorized(fake, train)  # (M,) bool
    y = np.asarray(fake_labels).reshape(-1)
    if len(y) != len(memorized):
        raise ValueError(
            f"per_group_memorization: expected one label per generated sample, got {len(y)} for {len(memorized)}"
        )
    rate = float(memorized.mean())
    per_group = {}
    for c, name in enumerate(class_names):
        m = memorized[y == c]
        per_group[name] = {"n_generated": int(len(m)), "rate": float(m.mean()) if len(m) else None}
    gated = [r["rate"] for r in per_group.values() if r["n_generated"] >= min_group]
    worst = max(gated) if gated else None
    return {
        "rate": rate,
        "per_group": per_group,
        "max_group_rate": worst,
        "min_group": min_group,
        "value": max([rate] + ([worst] if worst is not None else [])),
        "rule": "nearest-neighbour ratio ‖x − NN₁‖ / ‖x − NN₂‖ < 1/3 in the training set (pixels)",
    }
