"""The mode probe: training health on a 2-D mixture, measured on fresh samples at the end of every epoch."""

from __future__ import annotations

import numpy as np
import torch

from components.data.spec import DataSpec
from components.evaluation.modes import mode_metrics
from components.models.base import GenerativeModel


def mode_probe(model: GenerativeModel, spec: DataSpec, *, n: int = 2500, seed: int = 0) -> dict[str, float]:
    """The mode metrics (docs/protocols.md §1) of ``n`` fresh samples, as ``probe_*`` metrics.

    Empty for datasets without mixture means. Uses its own generator, so training's RNG stream is untouched.
    """
    if spec.kind != "points" or "means" not in spec.extras:
        return {}
    with torch.no_grad():
        x = model.sample(n, generator=torch.Generator().manual_seed(seed))
    m = mode_metrics(x.cpu(), np.asarray(spec.extras["means"]), float(spec.extras["sigma"]))
    return {f"probe_{k}": float(m[k]) for k in ("modes_captured", "pct_high_quality", "reverse_kl")}
