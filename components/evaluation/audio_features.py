"""Audio domain classifier: a small CNN on log-mel spectrograms, trained on the prepared clips, versioned with
the data. Its penultimate layer is the feature space of the audio FD ("fad"), KID, PRDC and memorization.

The Fréchet Audio Distance (Kilgour et al., arXiv 1812.08466) uses a pretrained VGGish; no weights download
here, and VGGish (16 kHz, 0.96 s frames) fits 0.5 s notes at 8 kHz poorly, so the space is this classifier,
as images use their domain classifier (docs/protocols.md §3.1, §11). Two heads share the features: the
dataset's label (the notes' pitch class, 12) and each audited per-sample attribute the dataset has (the
notes' ``timbre``); their test accuracies and the weights' hash go into every protocol card.

Log-mel spectrogram (all torch): ``torch.stft`` with a Hann window of ``n_fft`` samples (~128 ms: a semitone
apart at C3 is 8 Hz, so the bins must be narrow), hop ``n_fft / 8``, power spectrum, a triangular HTK-mel
filterbank of ``n_mels`` bands over [``fmin``, sr / 2] built by :func:`mel_filterbank`, then ``log(· + 1e-8)``.
The CNN convolves over time with the mel bands as channels (so every layer sees the whole spectrum: the pitch
class of a note is a pattern of harmonics spread across octaves), pools mean and max over time, and maps to 64
features.
"""

from __future__ import annotations

import json
import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from safetensors.torch import load_model
from torch import Tensor, nn

from components.evaluation.features import TrainedExtractor, save_classifier

LABEL = "label"  # the head of the dataset's own labels (the notes' pitch class)
KIND = "audio"  # meta["kind"]: tells an audio classifier's folder from an image one
N_MELS = 128
FMIN = 40.0
LOG_EPS = 1e-8
MAX_GAIN_DB = 6.0  # training augmentation: random level change of up to ±6 dB


def stft_size(sample_rate: int) -> tuple[int, int]:
    """``(n_fft, hop)``: the power of two nearest 128 ms of samples (1024 at 8 kHz), and an eighth of it."""
    n_fft = 2 ** int(round(math.log2(0.128 * sample_rate)))
    return n_fft, n_fft // 8


def mel_filterbank(sample_rate: int, n_fft: int, n_mels: int, fmin: float = FMIN, fmax: float | None = None) -> Tensor:
    """(n_mels, n_fft // 2 + 1) triangular filters, centres equally spaced on the HTK mel scale
    (m = 2595 log10(1 + f / 700)) between ``fmin`` and ``fmax`` (default sr / 2), each peaking at 1."""
    fmax = sample_rate / 2 if fmax is None else fmax

    def mel(f: float) -> float:
        return 2595.0 * math.log10(1.0 + f / 700.0)

    m = torch.linspace(mel(fmin), mel(fmax), n_mels + 2, dtype=torch.float64)
    hz = 700.0 * (10.0 ** (m / 2595.0) - 1.0)  # (n_mels + 2,) band edges and centres
    freqs = torch.linspace(0.0, sample_rate / 2, n_fft // 2 + 1, dtype=torch.float64)  # (F,) bin centres
    lo, mid, hi = hz[:-2, None], hz[1:-1, None], hz[2:, None]
    rise, fall = (freqs - lo) / (mid - lo), (hi - freqs) / (hi - mid)
    return torch.clamp(torch.minimum(rise, fall), min=0.0).float()  # (n_mels, F)


class AudioClassifier(nn.Module):
    """x (B, C, T) waveforms in [-1, 1] -> features (B, num_features); ``logits(x)`` -> {head: (B, K_head)}.

    ``forward`` returns the features, so the module plugs into torchmetrics' FID/KID as ``feature=``."""

    def __init__(
        self,
        *,
        sample_rate: int,
        heads: dict[str, int],
        n_mels: int = N_MELS,
        fmin: float = FMIN,
        width: int = 128,
        num_features: int = 64,
    ):
        super().__init__()
        self.sample_rate, self.n_mels, self.fmin = int(sample_rate), int(n_mels), float(fmin)
        self.n_fft, self.hop = stft_size(self.sample_rate)
        self.num_features = num_features
        self.register_buffer("window", torch.hann_window(self.n_fft), persistent=False)
        self.register_buffer("mel", mel_filterbank(self.sample_rate, self.n_fft, n_mels, fmin), persistent=False)
        self.body = nn.Sequential(
            nn.BatchNorm1d(n_mels),  # per-band standardisation of the log-mel input
            nn.Conv1d(n_mels, width, 3, padding=1),
            nn.BatchNorm1d(width),
            nn.ReLU(),
            nn.Conv1d(width, width, 3, padding=1),
            nn.BatchNorm1d(width),
            nn.ReLU(),
            nn.MaxPool1d(2),
            nn.Conv1d(width, width, 3, padding=1),
            nn.BatchNorm1d(width),
            nn.ReLU(),
        )
        self.proj = nn.Linear(2 * width, num_features)
        self.heads = nn.ModuleDict(
            {name: nn.Sequential(nn.ReLU(), nn.Dropout(0.2), nn.Linear(num_features, k)) for name, k in heads.items()}
        )

    def log_mel(self, x: Tensor) -> Tensor:
        """(B, C, T) or (B, T) waveforms -> (B, n_mels, frames) log-mel power (channels averaged)."""
        x = x.float()
        if x.ndim == 3:
            x = x.mean(1)
        spec = torch.stft(x, self.n_fft, self.hop, window=self.window, center=True, return_complex=True)
        return torch.log(torch.einsum("mf,bft->bmt", self.mel, spec.abs().square()) + LOG_EPS)

    def embed(self, mel: Tensor) -> Tensor:
        """(B, n_mels, frames) log-mel -> (B, num_features)."""
        h = self.body(mel)  # (B, width, frames / 2)
        return self.proj(torch.cat([h.mean(-1), h.amax(-1)], dim=1))

    def features(self, x: Tensor) -> Tensor:
        return self.embed(self.log_mel(x))

    def logits(self, x: Tensor) -> dict[str, Tensor]:
        f = self.features(x)
        return {name: head(f) for name, head in self.heads.items()}

    def forward(self, x: Tensor) -> Tensor:
        return self.features(x)


@dataclass(frozen=True)
class TrainedAudioClassifier(TrainedExtractor):
    model: AudioClassifier

    @torch.no_grad()
    def features(self, x: Tensor, *, batch_size: int = 250) -> Tensor:
        return super().features(x, batch_size=batch_size)

    @torch.no_grad()
    def predict(self, x: Tensor, *, head: str = LABEL, batch_size: int = 250) -> Tensor:
        """The argmax of ``head`` for every clip (B,)."""
        self.model.eval()
        fn = self.model.heads[head]
        return torch.cat([fn(self.model.features(b)).argmax(-1) for b in x.split(batch_size)])

    @property
    def attributes(self) -> list[str]:
        """The attribute heads (every head but the label's), in the order they were built."""
        return [h for h in self.model.heads if h != LABEL]


def train_audio_classifier(
    train: tuple[np.ndarray, np.ndarray],
    test: tuple[np.ndarray, np.ndarray],
    *,
    sample_rate: int,
    num_classes: int,
    train_attributes: dict[str, np.ndarray] | None = None,
    test_attributes: dict[str, np.ndarray] | None = None,
    attribute_sizes: dict[str, int] | None = None,
    epochs: int,
    batch_size: int,
    lr: float,
    seed: int,
) -> tuple[AudioClassifier, dict[str, Any]]:
    """Train both heads (label + each attribute of ``attribute_sizes``) on ``train``; return the classifier with
    each head's test accuracy (``test_accuracy`` for the label, ``<attribute>_test_accuracy``) and the wall time
    (``train_seconds``). Labels -1 are ignored. The log-mels are computed once; a random gain of ±6 dB (an
    additive shift of the log power) is the only augmentation. Deterministic from ``seed`` (on one thread count).
    """
    t0 = time.perf_counter()
    sizes = {LABEL: num_classes, **(attribute_sizes or {})}
    torch.manual_seed(seed)
    gen = torch.Generator().manual_seed(seed)
    model = AudioClassifier(sample_rate=sample_rate, heads=sizes)
    targets = {LABEL: train[1], **(train_attributes or {})}
    y = {h: torch.from_numpy(np.asarray(targets[h])).long() for h in sizes}
    with torch.no_grad():
        mel = torch.cat([model.log_mel(b) for b in torch.from_numpy(train[0]).split(250)])  # (N, n_mels, frames)
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=1e-4)
    batch_size = min(batch_size, len(mel))
    steps = epochs * max(1, len(mel) // batch_size)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=lr, total_steps=steps)
    gain = 2 * math.log(10) * MAX_GAIN_DB / 20  # ±6 dB in amplitude: ±2·ln(10^(6/20)) in log power
    model.train()
    for _ in range(epochs):
        perm = torch.randperm(len(mel), generator=gen)
        for i in range(0, len(mel) - batch_size + 1, batch_size):
            idx = perm[i : i + batch_size]
            shift = (torch.rand(len(idx), 1, 1, generator=gen) * 2 - 1) * gain
            f = model.embed(mel[idx] + shift)
            loss = sum(F.cross_entropy(model.heads[h](f), y[h][idx], ignore_index=-1) for h in sizes)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
    model.eval()
    trained = TrainedAudioClassifier(model=model, meta={})
    x_test = torch.from_numpy(test[0])
    truth = {LABEL: test[1], **(test_attributes or {})}
    report: dict[str, Any] = {"n_test": int(len(test[1]))}
    for h in sizes:
        t = np.asarray(truth[h])
        ok = t >= 0
        acc = float((trained.predict(x_test, head=h).numpy()[ok] == t[ok]).mean()) if ok.any() else None
        report["test_accuracy" if h == LABEL else f"{h}_test_accuracy"] = acc
    report["train_seconds"] = round(time.perf_counter() - t0, 2)
    return model, report


def save_audio_classifier(directory: str | Path, model: AudioClassifier, meta: dict[str, Any]) -> dict[str, Any]:
    """Weights (safetensors) and metadata with the weights' sha256 and what :func:`load_audio_classifier` needs
    to rebuild the model (``features.save_classifier``'s layout: ``classifier.safetensors`` + ``meta.json``)."""
    spec = {
        "kind": KIND,
        "sample_rate": model.sample_rate,
        "heads": {h: int(m[-1].out_features) for h, m in model.heads.items()},
        "n_mels": model.n_mels,
        "fmin": model.fmin,
        "n_fft": model.n_fft,
        "hop": model.hop,
        "num_features": model.num_features,
    }
    return save_classifier(directory, model, {**meta, **spec})  # type: ignore[arg-type]  # any nn.Module saves


def is_audio_classifier(directory: str | Path) -> bool:
    path = Path(directory) / "meta.json"
    return path.exists() and json.loads(path.read_text()).get("kind") == KIND


def load_audio_classifier(directory: str | Path) -> TrainedAudioClassifier:
    directory = Path(directory)
    meta = json.loads((directory / "meta.json").read_text())
    if meta.get("kind") != KIND:
        raise ValueError(f"{directory}: expected an audio classifier (meta kind {KIND!r}), got {meta.get('kind')!r}")
    model = AudioClassifier(
        sample_rate=meta["sample_rate"],
        heads=meta["heads"],
        n_mels=meta["n_mels"],
        fmin=meta["fmin"],
        num_features=meta["num_features"],
    )
    load_model(model, str(directory / "classifier.safetensors"))
    return TrainedAudioClassifier(model=model.eval(), meta=meta)
