"""Evaluation of audio models, in the data's own terms and without a learned classifier first:

- the pitch of every sample by YIN (``components.evaluation.pitch``): share with a clear pitch, pitch classes
  covered of 12, KL of the pitch-class histogram to the data's, and the same numbers for real test clips (the
  data's own floor: real notes are not all "clear" either);
- the exact held-out NLL in bits per sample beside two baselines fitted on the train split in this run: a
  256-level unigram over the mu-law levels, and a linear-prediction model (order-16 least squares with a
  Gaussian residual) scored as a likelihood of the same mu-law levels (the mass of the Gaussian over each
  level's interval), so all three are likelihoods of the same discrete data;
- spectrograms (PNG) of real clips and samples, and the samples themselves for WAV files.

The audit's attribute is the YIN pitch class of each sample (-1: no clear pitch, its own category).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch
from scipy.special import ndtr

from components.config import EvaluateConfig
from components.data.spec import DataSpec
from components.evaluation.grids import image_grid
from components.evaluation.harness import Evaluation, _likelihood, timed_generate
from components.evaluation.pitch import pitch_report
from components.models.base import GenerativeModel

LPC_ORDER = 16
PROB_FLOOR = 1e-12  # a level the baseline gives (numerically) no mass costs log2(1e12) ≈ 40 bits, not inf


def mu_law_levels(x: np.ndarray, mu: int = 255) -> np.ndarray:
    """Waveform in [-1, 1] -> mu-law level in [0, mu] (WaveNet, arXiv 1609.03499 §2.2)."""
    c = np.sign(x) * np.log1p(mu * np.abs(x)) / math.log1p(mu)
    return np.clip(np.floor((c + 1) / 2 * mu + 0.5), 0, mu).astype(np.int64)  # as mu_law_encode rounds


def level_edges(mu: int = 255) -> np.ndarray:
    """The ``mu + 2`` edges in [-1, 1] of the waveform intervals that encode to each level."""
    c = (np.arange(mu + 2) - 0.5) * 2 / mu - 1  # companded edges, halfway between level centres
    c = np.clip(c, -1.0, 1.0)
    return np.sign(c) * np.expm1(np.abs(c) * math.log1p(mu)) / mu


def unigram_nll_bits(train: np.ndarray, test: np.ndarray, mu: int = 255) -> float:
    """Held-out bits per sample of an add-one smoothed histogram of the train split's mu-law levels."""
    counts = np.bincount(mu_law_levels(train).ravel(), minlength=mu + 1).astype(np.float64) + 1.0
    logp = np.log2(counts / counts.sum())
    return float(-logp[mu_law_levels(test).ravel()].mean())


def _lagged(x: np.ndarray, order: int) -> np.ndarray:
    """(N, T) clips -> (N, T, order) past samples (zeros before the clip starts)."""
    padded = np.pad(x, ((0, 0), (order, 0)))
    return np.stack([padded[:, order - k : padded.shape[1] - k] for k in range(1, order + 1)], axis=-1)


def lpc_nll_bits(train: np.ndarray, test: np.ndarray, *, order: int = LPC_ORDER, mu: int = 255) -> dict[str, float]:
    """Linear prediction x_t ≈ a · x_{t-1..t-order} by least squares on the train clips, a Gaussian residual with
    the train residuals' std, scored on the test clips as the probability of each sample's mu-law level."""
    tr = train.reshape(len(train), -1).astype(np.float64)  # (N, T) mono
    te = test.reshape(len(test), -1).astype(np.float64)
    X, y = _lagged(tr, order).reshape(-1, order), tr.reshape(-1)
    coef, *_ = np.linalg.lstsq(X, y, rcond=None)
    sigma = float(np.std(y - X @ coef)) or 1e-6
    pred = (_lagged(te, order) @ coef).reshape(-1)  # (N*T,)
    edges = level_edges(mu)
    lv = mu_law_levels(te).reshape(-1)
    lo, hi = edges[lv], edges[lv + 1]
    lo = np.where(lv == 0, -np.inf, lo)  # the end levels take the tails
    hi = np.where(lv == mu, np.inf, hi)
    mass = ndtr((hi - pred) / sigma) - ndtr((lo - pred) / sigma)
    return {"nll_bits": float(-np.log2(np.maximum(mass, PROB_FLOOR)).mean()), "order": order, "residual_std": sigma}


def evaluate_audio(
    model: GenerativeModel,
    spec: DataSpec,
    *,
    train: tuple[np.ndarray, np.ndarray],
    test: tuple[np.ndarray, np.ndarray],
    cfg: EvaluateConfig,
    **_: Any,
) -> Evaluation:
    """Sample ``model`` and measure the samples (module docstring)."""
    sample_rate = int(spec.extras["sample_rate"])
    fake, speed = timed_generate(model, cfg.n_samples, batch_size=cfg.batch_size, seed=cfg.seed, options=cfg.sampler)
    fake_np = fake.numpy()
    gen = pitch_report(fake_np, sample_rate, train[1])
    real = pitch_report(test[0], sample_rate, train[1])
    lpc = lpc_nll_bits(train[0], test[0])
    metrics: dict[str, Any] = {
        "clear_pitch_share": gen["clear_pitch_share"],
        "pitch_modes_covered": gen["modes_covered"],
        "pitch_kl_to_data": gen["kl_to_data"],
        "pitch_histogram": gen["histogram"],
        "real_clear_pitch_share": real["clear_pitch_share"],
        "real_pitch_kl_to_data": real["kl_to_data"],
        "samples_per_s": speed["samples_per_s"],
        **_likelihood(model, test, cfg),
        "unigram_nll_bits_per_sample": unigram_nll_bits(train[0], test[0]),
        "lpc_nll_bits_per_sample": lpc["nll_bits"],
    }
    metrics["protocol"] = {
        "sampling_device": speed["sampling_device"],
        "n_generated": int(len(fake_np)),
        "n_test": int(len(test[0])),
        "reference_split": "test (likelihoods, the real floor); train (pitch-class shares)",
        "sample_rate": sample_rate,
        "pitch": "YIN (de Cheveigné & Kawahara 2002), threshold 0.15; clear: >= 50% voiced frames above -60 dBFS",
        "baselines": f"unigram over mu-law levels (add-one); linear prediction order {lpc['order']} "
        f"(least squares, Gaussian residual std {lpc['residual_std']:.4g}), both fitted on train in this run",
        "nll_unit": "bits per audio sample, mu-law 256 levels",
        "seed": cfg.seed,
        "sampler_options": cfg.sampler,
        **model.sampler_info(),
    }
    pick = np.random.default_rng(cfg.seed).permutation(len(test[0]))[:16]
    real_batch = (torch.from_numpy(test[0][pick]).float(), torch.from_numpy(test[1][pick]))
    gen_figures = model.evaluation_figures(real_batch, generator=torch.Generator().manual_seed(cfg.seed))
    figures = {name: image_grid(imgs.float().cpu(), nrow=8) for name, imgs in gen_figures.items()}
    return Evaluation(metrics=metrics, labels=gen["labels"], figures=figures, samples=fake_np)
