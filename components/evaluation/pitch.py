"""Pitch of audio clips: the YIN f0 estimator, pitch classes, and the pitch report of generated samples.

YIN (de Cheveigné & Kawahara, "YIN, a fundamental frequency estimator for speech and music", JASA 111(4),
2002), steps 1-5 of §II, per frame of ``frame`` samples (hop ``hop``):

1-2. difference function d(τ) = Σ_j (x_j − x_{j+τ})², j over the integration window (eq. 6), computed as
     E(0) + E(τ) − 2 r(τ) with the cross-correlation r by FFT;
3.   cumulative mean normalised difference d'(τ) = d(τ) τ / Σ_{j=1..τ} d(j), d'(0) = 1 (eq. 8);
4.   absolute threshold: the first τ in [sr/fmax, sr/fmin] where d' dips below ``threshold``, followed down to
     its local minimum; no dip below it: the global minimum of d' (the frame is then unvoiced);
5.   parabolic interpolation of d (not d', which is biased) around that τ: the period in fractional samples.
Step 6 (best local estimate) is left out: a clip's f0 is the median over its voiced frames instead.

A frame is *voiced* when its RMS is above ``silence_db`` dBFS and its aperiodicity d'(τ) at the chosen period is
below ``threshold``. A clip has a *clear pitch* when at least ``min_voiced`` of its frames are voiced: silence,
noise and clicks do not, a sustained note does. Everything is numpy, vectorised over clips and frames (in
chunks of clips to bound memory).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from components.evaluation.shares import KL_EPS, fairness_discrepancy

NUM_PITCH_CLASSES = 12
THRESHOLD = 0.15  # YIN's absolute threshold (the paper's 0.1-0.15 range)
MIN_VOICED = 0.5  # share of voiced frames for a clear pitch
SILENCE_DB = -60.0  # frames quieter than this (RMS, dB re full scale 1.0) are unvoiced
FMIN, FMAX = 60.0, 2000.0  # search range in Hz
_CHUNK = 64  # clips per vectorised block


@dataclass(frozen=True)
class PitchEstimate:
    """Per clip (N,): ``f0`` Hz (median of voiced frames; NaN if none), ``voiced_share`` (0..1),
    ``aperiodicity`` (median d'(τ) at the chosen period over all frames, 0 = periodic, ~1 = noise), ``clear``."""

    f0: np.ndarray
    voiced_share: np.ndarray
    aperiodicity: np.ndarray
    clear: np.ndarray


def _as_clips(samples: Any) -> np.ndarray:
    """Clips as float64 (N, T): (N, T), (N, 1, T) numpy or torch, or one clip (T,)."""
    a = samples.detach().cpu().numpy() if hasattr(samples, "detach") else np.asarray(samples)
    a = np.asarray(a, dtype=np.float64)
    if a.ndim == 3:
        if a.shape[1] != 1:
            raise ValueError(f"yin: expected mono clips (N, 1, T), got shape {a.shape}")
        a = a[:, 0]
    elif a.ndim == 1:
        a = a[None]
    if a.ndim != 2:
        raise ValueError(f"yin: expected clips (N, T) or (N, 1, T), got shape {a.shape}")
    return a


def yin(
    samples: Any,
    sample_rate: int,
    *,
    fmin: float = FMIN,
    fmax: float = FMAX,
    threshold: float = THRESHOLD,
    frame: int | None = None,
    hop: int | None = None,
    min_voiced: float = MIN_VOICED,
    silence_db: float = SILENCE_DB,
) -> PitchEstimate:
    """YIN over a batch of clips (N, T) or (N, 1, T). ``frame`` (the integration window) defaults to
    max(25 ms, the longest period), ``hop`` to frame / 2; each analysed segment is frame + sr/fmin samples."""
    x = _as_clips(samples)
    tau_min = max(2, int(math.floor(sample_rate / fmax)))
    tau_max = int(math.ceil(sample_rate / fmin))
    W = frame or max(int(round(0.025 * sample_rate)), tau_max)
    hop = hop or max(1, W // 2)
    L = W + tau_max + 1  # a segment: the window and the lags beyond it
    if x.shape[1] < L:
        raise ValueError(
            f"yin: expected clips of at least {L} samples (frame {W} + sr/fmin {tau_max}), got {x.shape[1]}"
        )
    blocks = range(0, len(x), _CHUNK)
    parts = [_yin_block(x[i : i + _CHUNK], W, hop, tau_min, tau_max, threshold, silence_db) for i in blocks]
    period = np.concatenate([p[0] for p in parts])  # (N, F) samples, NaN where unvoiced
    aper = np.concatenate([p[1] for p in parts])  # (N, F)
    voiced = np.isfinite(period)
    share = voiced.mean(axis=1)
    f0 = np.full(len(x), np.nan)
    some = voiced.any(axis=1)
    f0[some] = sample_rate / np.nanmedian(period[some], axis=1)  # unvoiced frames hold NaN
    return PitchEstimate(f0=f0, voiced_share=share, aperiodicity=np.median(aper, axis=1), clear=share >= min_voiced)


def _yin_block(
    x: np.ndarray, W: int, hop: int, tau_min: int, tau_max: int, threshold: float, silence_db: float
) -> tuple[np.ndarray, np.ndarray]:
    """Period (samples, NaN if unvoiced) and aperiodicity of each frame: (n, F) each."""
    L = W + tau_max + 1
    seg = np.lib.stride_tricks.sliding_window_view(x, L, axis=1)[:, ::hop]  # (n, F, L)
    n_fft = 1 << (2 * L - 1).bit_length()
    head = np.zeros_like(seg)
    head[..., :W] = seg[..., :W]
    r = np.fft.irfft(np.conj(np.fft.rfft(head, n_fft)) * np.fft.rfft(seg, n_fft), n_fft)[..., : tau_max + 1]
    # r[τ] = Σ_{j<W} x_j x_{j+τ}                                                     (n, F, tau_max + 1)
    c = np.concatenate([np.zeros(seg.shape[:-1] + (1,)), np.cumsum(seg**2, axis=-1)], axis=-1)  # (n, F, L + 1)
    tau = np.arange(tau_max + 1)
    energy = c[..., tau + W] - c[..., tau]  # E(τ) = Σ_{j<W} x_{j+τ}²
    d = np.maximum(energy[..., :1] + energy - 2 * r, 0.0)  # eq. 6 (round-off can dip below 0)
    d[..., 0] = 0.0
    cum = np.cumsum(d[..., 1:], axis=-1)  # Σ_{j=1..τ} d(j)
    dn = np.ones_like(d)
    with np.errstate(divide="ignore", invalid="ignore"):
        dn[..., 1:] = np.where(cum > 0, d[..., 1:] * tau[1:] / cum, 1.0)  # eq. 8
    search = dn[..., tau_min : tau_max + 1]  # (n, F, K) lags tau_min..tau_max
    below = search < threshold
    has_dip = below.any(axis=-1)
    first = np.argmax(below, axis=-1)  # first lag under the threshold
    k = np.arange(search.shape[-1])
    rising = np.concatenate([search[..., 1:] > search[..., :-1], np.ones(search.shape[:-1] + (1,), bool)], axis=-1)
    stop = np.argmax(rising & (k >= first[..., None]), axis=-1)  # follow the dip down to its local minimum
    best = np.where(has_dip, stop, np.argmin(search, axis=-1)) + tau_min  # (n, F) integer lag
    aper = np.take_along_axis(dn, best[..., None], axis=-1)[..., 0]
    # step 5: parabola through d(τ-1), d(τ), d(τ+1)
    lo, mid, hi = (
        np.take_along_axis(d, i[..., None], -1)[..., 0] for i in (best - 1, best, np.minimum(best + 1, tau_max))
    )
    curv = lo - 2 * mid + hi
    with np.errstate(divide="ignore", invalid="ignore"):
        shift = np.where(curv > 0, 0.5 * (lo - hi) / curv, 0.0)
    period = best + np.clip(shift, -1.0, 1.0)
    rms_db = 10 * np.log10(np.maximum(energy[..., 0] / W, 1e-20))
    voiced = has_dip & (aper < threshold) & (rms_db > silence_db)
    return np.where(voiced, period, np.nan), np.where(rms_db > silence_db, aper, 1.0)


def pitch_classes(f0: Any) -> np.ndarray:
    """Pitch class of each f0 (Hz): round(69 + 12 log2(f0 / 440)) mod 12, C = 0; -1 where f0 is not a
    positive finite number."""
    f = np.asarray(f0, dtype=np.float64)
    ok = np.isfinite(f) & (f > 0)
    with np.errstate(divide="ignore", invalid="ignore"):
        midi = np.round(69 + 12 * np.log2(np.where(ok, f, 440.0) / 440.0))
    return np.where(ok, np.mod(midi, NUM_PITCH_CLASSES), -1).astype(np.int64)


def pitch_class(f0: float) -> int:
    """Pitch class of one f0 (Hz), C = 0 .. B = 11 (MIDI rounding, A4 = 440 Hz); -1 for no pitch."""
    return int(pitch_classes(np.array([f0]))[0])


def pitch_report(
    samples: Any,
    sample_rate: int,
    reference_labels: Any,
    *,
    threshold: float = THRESHOLD,
    min_voiced: float = MIN_VOICED,
) -> dict[str, Any]:
    """Pitch-class coverage of generated clips against the data's pitch-class labels.

    - ``clear_pitch_share``: share of clips with a clear pitch (module docstring's rule);
    - ``histogram``: count of clear-pitch clips per pitch class (12);
    - ``modes_covered``: pitch classes with at least one clear-pitch clip (0..12);
    - ``kl_to_data``: KL(p_gen ‖ p_data) in nats between the pitch-class shares of the clear-pitch clips and
      of ``reference_labels`` (``fairness_discrepancy``: q + 1e-10, renormalised). With no clear-pitch clip
      at all it is the largest KL any histogram can reach, that of a point mass on the rarest reference class
      (≈ −log min_k q_k): the worst score, as the 2-D mode metrics score total collapse with log K;
    - ``labels``: each clip's pitch class, −1 where the pitch is not clear (the audited attribute);
    - ``num_samples``.
    """
    est = yin(samples, sample_rate, threshold=threshold, min_voiced=min_voiced)
    labels = np.where(est.clear, pitch_classes(est.f0), -1)
    hist = np.bincount(labels[labels >= 0], minlength=NUM_PITCH_CLASSES)[:NUM_PITCH_CLASSES]
    ref = np.asarray(reference_labels, dtype=np.int64).reshape(-1)
    ref = ref[ref >= 0]
    if len(ref) == 0 or ref.max() >= NUM_PITCH_CLASSES:
        raise ValueError(f"pitch_report: expected reference pitch classes in [0, 12), got {np.unique(ref).tolist()}")
    q = np.bincount(ref, minlength=NUM_PITCH_CLASSES) / len(ref)
    if hist.sum() > 0:
        kl = fairness_discrepancy(hist / hist.sum(), q)["kl"]
    else:
        worst = np.zeros(NUM_PITCH_CLASSES)
        worst[int(np.argmin(q))] = 1.0
        kl = fairness_discrepancy(worst, q, eps=KL_EPS)["kl"]
    return {
        "clear_pitch_share": float(est.clear.mean()),
        "modes_covered": int((hist > 0).sum()),
        "kl_to_data": max(float(kl), 0.0),  # round-off can leave -1e-16 for identical histograms
        "histogram": hist.tolist(),
        "labels": labels.tolist(),
        "num_samples": int(len(labels)),
    }


def harmonic_profile(
    samples: Any,
    sample_rate: int,
    f0: Any = None,
    *,
    n_harmonics: int = 5,
    width: float = 0.15,
    fmin: float = FMIN,
    fmax: float = FMAX,
) -> tuple[np.ndarray, np.ndarray]:
    """The spectral shape of each clip around its pitch: what tells timbres apart, and how noisy it is.

    From the Hann-windowed power spectrum of each clip (N, T) with fundamental ``f0`` (N,) Hz: ``levels``
    (N, n_harmonics − 1), the power of harmonics 2..n_harmonics in dB relative to the fundamental's, each the
    power within ±``width`` × f0 of k × f0 (NaN above Nyquist); ``floor`` (N,), the power outside every
    harmonic band below Nyquist in dB relative to the clip's total (white noise at SNR s dB reads about
    −s + 10 log10(share of the spectrum outside the bands)). Rows with a NaN or non-positive f0 are NaN.
    ``f0=None``: each clip's strongest spectral peak in [fmin, fmax], from the same spectrum -- the fundamental
    of sounds whose partials fall with their number (every notes timbre), where YIN on a noisy clip may lock
    an octave below and make the harmonics read louder than the fundamental.
    """
    x = _as_clips(samples)
    if not 0 < width < 0.5:
        raise ValueError(f"harmonic_profile: expected 0 < width < 0.5, got {width}")
    power = np.abs(np.fft.rfft(x * np.hanning(x.shape[1]), axis=1)) ** 2  # (N, F)
    freqs = np.fft.rfftfreq(x.shape[1], 1.0 / sample_rate)  # (F,)
    if f0 is None:
        search = (freqs >= fmin) & (freqs <= fmax)
        peak = power[:, search].argmax(1)  # (N,)
        f0 = np.where(power[:, search].max(1) > 0, freqs[search][peak], np.nan)  # silence: no f0
    f0 = np.asarray(f0, dtype=np.float64).reshape(-1)
    if len(f0) != len(x):
        raise ValueError(f"harmonic_profile: expected one f0 per clip ({len(x)}), got {len(f0)}")
    levels = np.full((len(x), n_harmonics - 1), np.nan)
    floor = np.full(len(x), np.nan)
    for i in np.flatnonzero(np.isfinite(f0) & (f0 > 0)):
        k = np.rint(freqs / f0[i])  # the nearest harmonic of each bin
        near = (k >= 1) & (np.abs(freqs - k * f0[i]) <= width * f0[i])
        band = [power[i, near & (k == j)].sum() for j in range(1, n_harmonics + 1)]
        for j in range(2, n_harmonics + 1):
            if j * f0[i] < sample_rate / 2:
                levels[i, j - 2] = 10 * np.log10(band[j - 1] / band[0] + 1e-30)
        floor[i] = 10 * np.log10(power[i, ~near].sum() / power[i].sum() + 1e-30)
    return levels, floor
