"""2-D mixtures of Gaussians, the mode-collapse testbeds of VEEGAN (arXiv 1705.07761) and PacGAN (1712.04086).

- ``ring8``: 8 Gaussians on the unit circle at angles 2πi/8, σ = 0.01.
- ``grid25``: 25 Gaussians at {-4, -2, 0, 2, 4}², σ = 0.05.

Labels are the mode index, so the audit can measure per-mode shares; ``extras`` carries the means and σ
that :func:`components.evaluation.modes.mode_metrics` needs.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from components.data.spec import RawData

DEFAULT_N_SAMPLES = 20_000

# angles 2πi/8 for i = 0..7; np.linspace(0, 2π, 8) would put modes 0 and 7 on the same point.
_ANGLES = [2 * math.pi * i / 8 for i in range(8)]
RING8_MEANS = np.array([[math.cos(a), math.sin(a)] for a in _ANGLES])  # (8, 2)
RING8_SIGMA = 0.01  # VEEGAN arXiv 1705.07761 §5.1
_TICKS = (-4.0, -2.0, 0.0, 2.0, 4.0)
GRID25_MEANS = np.array([[x, y] for x in _TICKS for y in _TICKS])  # (25, 2)
GRID25_SIGMA = 0.05  # VEEGAN arXiv 1705.07761 §5.1


@dataclass(frozen=True)
class Mixture:
    """An isotropic Gaussian mixture with equal weights."""

    name: str
    means: np.ndarray  # (K, 2)
    sigma: float

    @property
    def num_modes(self) -> int:
        return len(self.means)

    def sample(self, n: int, *, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
        """``n`` points (float32, (n, 2)) and their mode indices (int64); modes get n // K or n // K + 1."""
        rng = np.random.default_rng(seed)
        y = rng.permutation(np.arange(n) % self.num_modes).astype(np.int64)  # (n,)
        x = self.means[y] + self.sigma * rng.standard_normal((n, 2))  # (n, 2)
        return x.astype(np.float32), y


MIXTURES: dict[str, Mixture] = {
    "ring8": Mixture("ring8", RING8_MEANS, RING8_SIGMA),
    "grid25": Mixture("grid25", GRID25_MEANS, GRID25_SIGMA),
}


def mixture(name: str) -> Mixture:
    """The mixture called ``name`` ('ring8' or 'grid25')."""
    if name not in MIXTURES:
        raise ValueError(f"Expected a mixture name in {sorted(MIXTURES)}, got {name!r}")
    return MIXTURES[name]


def _load(name: str, n_samples: int | None, seed: int) -> RawData:
    mix = mixture(name)
    n = DEFAULT_N_SAMPLES if n_samples is None else int(n_samples)
    if n < mix.num_modes:
        raise ValueError(f"Expected n_samples >= {mix.num_modes} (one per mode) for {name}, got {n}")
    x, y = mix.sample(n, seed=seed)
    return RawData(
        x=x,
        y=y,
        kind="points",
        class_names=tuple(f"m{i}" for i in range(mix.num_modes)),
        extras={"means": mix.means.tolist(), "sigma": mix.sigma},
    )


def load_ring8(*, n_samples: int | None = None, seed: int = 0, **_: object) -> RawData:
    """8 Gaussians on the unit circle, σ = 0.01; ``n_samples`` defaults to 20,000."""
    return _load("ring8", n_samples, seed)


def load_grid25(*, n_samples: int | None = None, seed: int = 0, **_: object) -> RawData:
    """25 Gaussians on a 5×5 grid with spacing 2, σ = 0.05; ``n_samples`` defaults to 20,000."""
    return _load("grid25", n_samples, seed)
