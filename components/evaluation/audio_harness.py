"""Evaluation of audio models, in the data's own terms first, then in the audio domain classifier's features:

- the pitch of every sample by YIN (``components.evaluation.pitch``): share with a clear pitch, pitch classes
  covered of 12, KL of the pitch-class histogram to the data's, and the same numbers for real test clips (the
  data's own floor: real notes are not all "clear" either);
- the exact held-out NLL in bits per sample beside two baselines fitted on the train split in this run: a
  256-level unigram over the mu-law levels, and a linear-prediction model (order-16 least squares with a
  Gaussian residual) scored as a likelihood of the same mu-law levels (the mass of the Gaussian over each
  level's interval), so all three are likelihoods of the same discrete data;
- spectrograms (PNG) of real clips and samples, and the samples themselves for WAV files;
- when the dataset has an audio domain classifier (``components.evaluation.audio_features``, the features
  stage), the image protocol in its 64-D penultimate features (docs/protocols.md §3, §11): a Fréchet distance
  ``fad`` (FAD-style, arXiv 1812.08466, with this classifier instead of VGGish) with its real-vs-real floor
  (train vs test) and centred bootstrap intervals, KID, precision/recall (k = 3) and density/coverage (k = 5),
  memorization (generated vs train vs test), and the classifier's label of every sample for each attribute
  head (the notes' ``timbre``): its histogram, KL to the train split's shares, and agreement of the
  classifier's pitch class with YIN's.

The audit's attribute is the YIN pitch class of each sample (-1: no clear pitch, its own category); with a
classifier, also its attribute labels (``AudioEvaluation.attributes``), audited against the train split's.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from scipy.special import ndtr

from components.config import EvaluateConfig
from components.data.spec import DataSpec
from components.evaluation.audio_features import TrainedAudioClassifier
from components.evaluation.frechet import FrechetMoments
from components.evaluation.grids import image_grid
from components.evaluation.harness import (
    Evaluation,
    _likelihood,
    draw_for,
    fid_kid_features,
    memorization_in_features,
    sampling_card,
)
from components.evaluation.pitch import pitch_report
from components.evaluation.shares import fairness_discrepancy, shares
from components.models.base import GenerativeModel

LPC_ORDER = 16
PROB_FLOOR = 1e-12  # a level the baseline gives (numerically) no mass costs log2(1e12) ≈ 40 bits, not inf


@dataclass
class AudioEvaluation(Evaluation):
    """``attributes``: attribute -> {"labels": the classifier's label of every generated sample, "names": ...}
    (empty without a classifier); the evaluate stage writes it into labels.json for the audit."""

    attributes: dict[str, dict[str, list]] = field(default_factory=dict)


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
    classifier: TrainedAudioClassifier | None = None,
    train_attributes: dict[str, np.ndarray] | None = None,
    test_attributes: dict[str, np.ndarray] | None = None,
    **_: Any,
) -> AudioEvaluation:
    """Sample ``model`` and measure the samples (module docstring). ``classifier`` adds the feature-space
    metrics; ``train_attributes`` (name -> train ids, ``components.data.load_attributes``) are the reference
    shares of its attribute heads (``spec.attributes`` names their values); ``test_attributes`` feed the test
    likelihood of a model that conditions on them (``batch_attributes``)."""
    sample_rate = int(spec.extras["sample_rate"])
    drawn = draw_for(model, cfg, extractors={"classifier": classifier})  # its features drawn with the samples
    fake = drawn.samples
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
        "samples_per_s": drawn.samples_per_s,
        **_likelihood(model, test, cfg, test_attributes),
        "unigram_nll_bits_per_sample": unigram_nll_bits(train[0], test[0]),
        "lpc_nll_bits_per_sample": lpc["nll_bits"],
    }
    attributes: dict[str, dict[str, list]] = {}
    card: dict[str, Any] = {}
    if classifier is not None:
        space, attributes, card = classifier_metrics(
            classifier,
            spec,
            fake,
            train,
            test,
            gen["labels"],
            train_attributes or {},
            cfg,
            f_fake=drawn.features["classifier"],
            fake_moments=drawn.moments["classifier"],
        )
        metrics.update(space)
    metrics["protocol"] = {
        **sampling_card(drawn),
        "n_generated": int(len(fake_np)),
        "n_test": int(len(test[0])),
        "reference_split": "test (likelihoods, the real floor, fad/KID/PRDC); train (pitch-class and attribute "
        "shares, memorization, the fad floor)",
        "sample_rate": sample_rate,
        "pitch": "YIN (de Cheveigné & Kawahara 2002), threshold 0.15; clear: >= 50% voiced frames above -60 dBFS",
        "baselines": f"unigram over mu-law levels (add-one); linear prediction order {lpc['order']} "
        f"(least squares, Gaussian residual std {lpc['residual_std']:.4g}), both fitted on train in this run",
        "nll_unit": "bits per audio sample, mu-law 256 levels",
        **card,
        "seed": cfg.seed,
        "sampler_options": cfg.sampler,
        **drawn.sampler_info,
    }
    pick = np.random.default_rng(cfg.seed).permutation(len(test[0]))[:16]
    real_batch = (torch.from_numpy(test[0][pick]).float(), torch.from_numpy(test[1][pick]))
    gen_figures = model.evaluation_figures(real_batch, generator=torch.Generator().manual_seed(cfg.seed))
    figures = {name: image_grid(imgs.float().cpu(), nrow=8) for name, imgs in gen_figures.items()}
    return AudioEvaluation(
        metrics=metrics, labels=gen["labels"], figures=figures, samples=fake_np, attributes=attributes
    )


def classifier_metrics(
    classifier: TrainedAudioClassifier,
    spec: DataSpec,
    fake: torch.Tensor,
    train: tuple[np.ndarray, np.ndarray],
    test: tuple[np.ndarray, np.ndarray],
    yin_labels: list[int],
    train_attributes: dict[str, np.ndarray],
    cfg: EvaluateConfig,
    *,
    f_fake: torch.Tensor | None = None,
    fake_moments: FrechetMoments | None = None,
) -> tuple[dict[str, Any], dict[str, dict[str, list]], dict[str, Any]]:
    """The metrics in the classifier's features (module docstring), the attribute labels of the samples, and
    the protocol card's entries. The floor and its subset of train follow ``harness.evaluate_images``.
    ``f_fake`` / ``fake_moments``: the samples' features and Fréchet moments where they were drawn with them
    (``harness.draw_for``); otherwise computed here from ``fake``."""
    from components.evaluation.frechet import fid_ci
    from components.evaluation.prdc import prdc_per_k

    rng = np.random.default_rng(cfg.seed)
    n_floor = min(len(train[0]), cfg.n_samples)
    floor_idx = torch.from_numpy(rng.choice(len(train[0]), n_floor, replace=False))
    f_test = classifier.features(torch.from_numpy(test[0]).float())
    f_train = classifier.features(torch.from_numpy(train[0]).float())  # the memorization reference
    f_fake = classifier.features(fake.float()) if f_fake is None else f_fake
    f_floor = f_train[floor_idx]
    test_moments = FrechetMoments.of(f_test)
    quality = fid_kid_features(f_test, f_fake, seed=cfg.seed, real_moments=test_moments, fake_moments=fake_moments)
    floor = fid_kid_features(f_test, f_floor, seed=cfg.seed, real_moments=test_moments)
    intervals = {}
    if cfg.fid_n_boot > 0:
        intervals["fad"] = fid_ci(f_test, f_fake, n_boot=cfg.fid_n_boot, seed=cfg.seed)
        intervals["fad_floor_train_vs_test"] = fid_ci(f_test, f_floor, n_boot=cfg.fid_n_boot, seed=cfg.seed)
    by_k = prdc_per_k(f_test, f_fake, ks=(3, 5))
    pr, dc = by_k[3], by_k[5]  # P/R with k = 3 (arXiv 1904.06991), D/C with k = 5 (arXiv 2002.09797)
    metrics: dict[str, Any] = {
        "fad": quality["fid"],
        "kid": quality["kid"],
        "kid_std": quality["kid_std"],
        "fad_floor_train_vs_test": floor["fid"],
        "kid_floor_train_vs_test": floor["kid"],
        **{f"{name}_ci95": [ci.lo, ci.hi] for name, ci in intervals.items()},
        "precision": pr["precision"],
        "recall": pr["recall"],
        "density": dc["density"],
        "coverage": dc["coverage"],
        "memorization": memorization_in_features(f_train, f_test, f_fake, seed=cfg.seed),
    }
    # the classifier's pitch class beside YIN's, on the samples with a clear pitch (a sanity check of both)
    yin = np.asarray(yin_labels)
    clear = yin >= 0
    if clear.any() and spec.num_classes == 12:  # the label head predicts pitch classes (notes)
        pred = classifier.predict(fake.float()).numpy()
        metrics["classifier_yin_agreement"] = float((pred[clear] == yin[clear]).mean())
    attributes: dict[str, dict[str, list]] = {}
    for name in classifier.attributes:
        names = list(spec.attributes.get(name, ()))
        k = len(names) or int(classifier.meta["heads"][name])
        labels = classifier.predict(fake.float(), head=name).numpy()
        attributes[name] = {"labels": labels.tolist(), "names": names or [str(i) for i in range(k)]}
        p_gen = shares(labels, k)
        metrics[f"{name}_histogram"] = np.bincount(labels, minlength=k).tolist()
        metrics[f"{name}_values_covered"] = int((p_gen > 0).sum())
        if name in train_attributes:
            ref = np.asarray(train_attributes[name])
            kl = fairness_discrepancy(p_gen, shares(ref[ref >= 0], k))["kl"]
            metrics[f"{name}_kl_to_data"] = max(float(kl), 0.0)  # round-off: -1e-16 for identical shares
    meta = classifier.meta
    card = {
        "feature_extractor": f"audio domain classifier (log-mel CNN, penultimate layer, {f_test.shape[1]}-D)",
        "extractor_sha256": meta.get("sha256"),
        "extractor_test_accuracy": meta.get("test_accuracy"),
        **{f"extractor_{h}_test_accuracy": meta.get(f"{h}_test_accuracy") for h in classifier.attributes},
        "log_mel": {k: meta.get(k) for k in ("n_fft", "hop", "n_mels", "fmin")},
        "floor": f"train ({n_floor}) vs test ({len(test[0])})",
        "precision_recall_k": 3,
        "density_coverage_k": 5,
        "fad_interval": {
            "method": "centred bootstrap (stats.bootstrap_ci), test and generated features resampled independently",
            "level": 0.95,
            "n_boot": cfg.fid_n_boot,
            **{f"bootstrap_bias_{name}": ci.boot_mean - ci.estimate for name, ci in intervals.items()},
        },
    }
    return metrics, attributes, card
