"""Published numbers the leaderboard sets our runs beside (docs/protocols.md §1.6, §2.5)."""

from __future__ import annotations

#: PacGAN (arXiv 1712.04086) Table 1, 10 trials, mean ± s.e.: (modes, % high quality, reverse KL) per mixture.
PACGAN_TABLE1: dict[str, dict[str, tuple[str, str, str]]] = {
    "GAN": {"ring8": ("6.3±0.5", "98.2±0.2", "0.45±0.09"), "grid25": ("17.3±0.8", "94.8±0.7", "0.70±0.07")},
    "ALI": {"ring8": ("6.6±0.3", "97.6±0.4", "0.36±0.04"), "grid25": ("24.1±0.4", "95.7±0.6", "0.14±0.03")},
    "PacGAN2": {
        "ring8": ("7.9±0.1", "95.6±2.0", "0.07±0.03"),
        "grid25": ("23.8±0.7", "91.3±0.8", "0.13±0.04"),
    },
    "PacGAN3": {
        "ring8": ("7.8±0.1", "97.7±0.3", "0.10±0.02"),
        "grid25": ("24.6±0.4", "94.2±0.4", "0.06±0.02"),
    },
    "PacGAN4": {
        "ring8": ("7.8±0.1", "95.9±1.4", "0.07±0.02"),
        "grid25": ("24.8±0.2", "93.6±0.6", "0.04±0.01"),
    },
}

#: Stacked MNIST, 1,000 modes (docs/protocols.md §2.5): model -> (modes covered, KL(p̂ ‖ U₁₀₀₀), source). 26,000 samples
#: (PacGAN's code: 25,600) labelled channel by channel by a pretrained MNIST classifier, on the full 60k MNIST.
STACKED_MNIST: dict[str, tuple[str, str, str]] = {
    "DCGAN": ("99", "3.4", "VEEGAN Table 2 (arXiv 1705.07761)"),
    "ALI": ("16", "5.4", "VEEGAN Table 2"),
    "Unrolled GAN": ("48.7", "4.32", "VEEGAN Table 2"),
    "VEEGAN": ("150", "2.95", "VEEGAN Table 2"),
    "GDPP-GAN": ("286", "2.12", "GDPP Table 5 (arXiv 1812.00068)"),
    "DCGAN (PacGAN's)": ("78.9±6.46", "4.50±0.127", "PacGAN Table 2 (arXiv 1712.04086)"),
    "PacDCGAN2": ("1000±0", "0.06", "PacGAN Table 2"),
    "PacDCGAN3": ("1000±0", "0.06", "PacGAN Table 2"),
    "PacDCGAN4": ("1000±0", "0.07", "PacGAN Table 2"),
    "WGAN-GP (stronger arch.)": ("995", "0.148", "GDPP Table 3"),
    "VAE (stronger arch.)": ("341", "2.409", "GDPP Table 3"),
}
