"""A trained model on disk: ``model.safetensors`` (the state dict) + ``config.json`` (how to rebuild it).

Weights never go through pickle: safetensors on save and load (shared tensors, e.g. tied embeddings, are
handled by ``save_model``/``load_model``).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_model, save_model

from components.data.spec import DataSpec
from components.errors import GenfoundryError
from components.io import atomic_path, sha256_file
from components.models import build_model
from components.models.base import GenerativeModel

WEIGHTS, CONFIG = "model.safetensors", "config.json"


def save_trained(directory: str | Path, model: GenerativeModel, info: dict[str, Any]) -> dict[str, Any]:
    """Write the model directory atomically; ``info`` must hold ``family`` and ``model`` (its config)."""
    with atomic_path(directory) as tmp:
        tmp.mkdir()
        save_model(model.cpu(), str(tmp / WEIGHTS))
        info = {**info, "spec": model.spec.to_dict(), "weights_sha256": sha256_file(tmp / WEIGHTS)}
        (tmp / CONFIG).write_text(json.dumps(info, indent=2, sort_keys=True, default=str) + "\n")
    return info


def load_info(directory: str | Path) -> dict[str, Any]:
    path = Path(directory) / CONFIG
    if not path.exists():
        raise GenfoundryError(
            f"{directory}: expected a trained model (its {CONFIG}), got no {CONFIG}; run its train stage first"
        )
    return json.loads(path.read_text())


def load_trained(directory: str | Path, *, device: str | torch.device = "cpu") -> GenerativeModel:
    """Rebuild the family's model from ``config.json`` and load its safetensors weights."""
    info = load_info(directory)
    model = build_model(info["family"], info["model"], DataSpec.from_dict(info["spec"]))
    load_model(model, str(Path(directory) / WEIGHTS), device=str(device))
    return model.to(device).eval()
