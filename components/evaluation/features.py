"""Domain feature extractor: a small CNN classifier trained on the prepared images, versioned with the data.

Inception features neither download here nor suit 8×8 / 28×28 digits (docs/protocols.md §3.1), so
FID/KID/PRDC use the penultimate layer of a classifier trained on the dataset itself. Its test accuracy and
weights hash go into every protocol card.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from safetensors.torch import load_model, save_model
from torch import Tensor, nn

from components.io import atomic_path, sha256_file


class DomainClassifier(nn.Module):
    """x (B, C, H, W) in [0, 1] -> logits (B, K); ``features(x)`` -> (B, num_features) for FID/KID/PRDC.

    ``forward`` returns the features so the module plugs straight into torchmetrics' FID/KID
    (``feature=<module with num_features>``).
    """

    def __init__(self, *, channels: int, num_classes: int, width: int = 32, num_features: int = 64):
        super().__init__()
        self.num_features = num_features
        self.body = nn.Sequential(
            nn.Conv2d(channels, width, 3, padding=1),
            nn.BatchNorm2d(width),
            nn.ReLU(),
            nn.MaxPool2d(2),  # H/2
            nn.Conv2d(width, 2 * width, 3, padding=1),
            nn.BatchNorm2d(2 * width),
            nn.ReLU(),
            nn.MaxPool2d(2),  # H/4
            nn.Conv2d(2 * width, 2 * width, 3, padding=1),
            nn.BatchNorm2d(2 * width),
            nn.ReLU(),
            nn.AdaptiveAvgPool2d(2),
            nn.Flatten(),  # (B, 8 * width)
            nn.Linear(8 * width, num_features),
        )
        self.head = nn.Sequential(nn.ReLU(), nn.Dropout(0.2), nn.Linear(num_features, num_classes))

    def features(self, x: Tensor) -> Tensor:
        return self.body(x.float())  # (B, F)

    def logits(self, x: Tensor) -> Tensor:
        return self.head(self.features(x))  # (B, K)

    def forward(self, x: Tensor) -> Tensor:
        return self.features(x)


@dataclass(frozen=True)
class TrainedExtractor:
    """A trained feature extractor (``model(x)`` -> (B, F) features, as torchmetrics' ``feature=`` wants)
    and its metadata; the domain classifier and the SimCLR encoder (``simclr.TrainedEncoder``) are ones."""

    model: nn.Module
    meta: dict[str, Any]

    @torch.no_grad()
    def features(self, x: Tensor, *, batch_size: int = 1000) -> Tensor:
        self.model.eval()
        return torch.cat([self.model(b) for b in x.split(batch_size)])


@dataclass(frozen=True)
class TrainedClassifier(TrainedExtractor):
    model: DomainClassifier

    @torch.no_grad()
    def predict(self, x: Tensor, *, batch_size: int = 1000) -> Tensor:
        self.model.eval()
        return torch.cat([self.model.logits(b).argmax(-1) for b in x.split(batch_size)])


def _shift(x: Tensor, gen: torch.Generator, max_shift: int) -> Tensor:
    """Random translation by up to ``max_shift`` pixels (cheap augmentation for digits)."""
    if max_shift == 0:
        return x
    dx, dy = (int(v) for v in torch.randint(-max_shift, max_shift + 1, (2,), generator=gen))
    return torch.roll(x, shifts=(dy, dx), dims=(2, 3))


def train_classifier(
    train: tuple[np.ndarray, np.ndarray],
    test: tuple[np.ndarray, np.ndarray],
    *,
    num_classes: int,
    epochs: int,
    batch_size: int,
    lr: float,
    seed: int,
) -> tuple[DomainClassifier, dict[str, float]]:
    """Train the classifier on ``train``; return it with its accuracy on ``test``."""
    torch.manual_seed(seed)
    gen = torch.Generator().manual_seed(seed)
    x, y = torch.from_numpy(train[0]).float(), torch.from_numpy(train[1]).long()
    model = DomainClassifier(channels=x.shape[1], num_classes=num_classes)
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=1e-4)
    steps = epochs * max(1, len(x) // batch_size)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=lr, total_steps=steps)
    max_shift = 1 if x.shape[-1] <= 8 else 2
    model.train()
    for _ in range(epochs):
        perm = torch.randperm(len(x), generator=gen)
        for i in range(0, len(x) - batch_size + 1, batch_size):
            idx = perm[i : i + batch_size]
            loss = F.cross_entropy(model.logits(_shift(x[idx], gen, max_shift)), y[idx])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
    model.eval()
    with torch.no_grad():
        pred = model.logits(torch.from_numpy(test[0]).float()).argmax(-1).numpy()
    return model, {"test_accuracy": float((pred == test[1]).mean()), "n_test": int(len(test[1]))}


def save_classifier(directory: str | Path, model: DomainClassifier, meta: dict[str, Any]) -> dict[str, Any]:
    """Save weights (safetensors) and metadata (incl. the weights' sha256) atomically."""
    with atomic_path(directory) as tmp:
        tmp.mkdir()
        save_model(model, str(tmp / "classifier.safetensors"))
        meta = {**meta, "sha256": sha256_file(tmp / "classifier.safetensors")}
        (tmp / "meta.json").write_text(json.dumps(meta, indent=2, sort_keys=True) + "\n")
    return meta


def load_classifier(directory: str | Path) -> TrainedClassifier:
    directory = Path(directory)
    meta = json.loads((directory / "meta.json").read_text())
    model = DomainClassifier(channels=meta["channels"], num_classes=meta["num_classes"])
    load_model(model, str(directory / "classifier.safetensors"))
    return TrainedClassifier(model=model.eval(), meta=meta)
