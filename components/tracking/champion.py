"""Warm start (``retrain.warm_start: true``): initialise training from the registered champion's weights.

The champion's weights come from the registry's own artifact (``model.safetensors`` beside its
``config.json``), never from a pickle. They are used only when the architecture matches: same family, same
family config (after defaults) and same data spec (shape, classes, levels, vocabulary); otherwise training
starts from scratch and the reason is recorded.
"""

from __future__ import annotations

import json
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from components.data.spec import DataSpec
from components.models import build_model, parse_family_config
from components.models.configs import FamilyConfig
from components.training.warm_start import load_weights


@dataclass(frozen=True)
class WarmStart:
    weights: bytes | None  # the champion's model.safetensors, or None: train from scratch
    source: str | None  # "name/version"
    weights_sha256: str | None
    reason: str

    def to_dict(self) -> dict[str, Any]:
        return {"source": self.source, "weights_sha256": self.weights_sha256, "reason": self.reason}


def _spec_key(spec: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in spec.items() if k not in ("name", "extras")}


def champion_weights(name: str, *, family: str, model: FamilyConfig, spec: DataSpec) -> WarmStart:
    """The champion of registered model ``name`` as initial weights, if its architecture matches."""
    import mlflow.artifacts
    from mlflow.tracking import MlflowClient

    from components.io import sha256_file
    from components.tracking import registry

    c = MlflowClient()
    version = registry.alias_version(c, name, registry.CHAMPION)
    if version is None:
        return WarmStart(None, None, None, f"{name} has no champion yet: training from scratch")
    source = f"{name}/{version}"
    with tempfile.TemporaryDirectory() as tmp:
        local = Path(mlflow.artifacts.download_artifacts(f"models:/{source}", dst_path=tmp))
        configs = sorted(local.glob("artifacts/*/config.json"))
        if not configs:
            return WarmStart(None, source, None, f"{source} holds no config.json: training from scratch")
        info = json.loads(configs[0].read_text())
        weights = configs[0].with_name("model.safetensors")
        if info.get("family") != family:
            return WarmStart(None, source, None, f"{source} is a {info.get('family')} model: training from scratch")
        ours = model.model_dump()
        theirs = parse_family_config(family, info.get("model", {})).model_dump()
        if ours != theirs:
            changed = sorted(k for k in ours if ours.get(k) != theirs.get(k))
            return WarmStart(None, source, None, f"model params {changed} differ from {source}: training from scratch")
        if _spec_key(info.get("spec", {})) != _spec_key(json.loads(json.dumps(spec.to_dict()))):
            reason = f"the data's shape/classes/levels differ from {source}: training from scratch"
            return WarmStart(None, source, None, reason)
        data = weights.read_bytes()
        try:
            load_weights(build_model(family, model, spec), data)
        except Exception as e:  # shapes that the config comparison missed
            return WarmStart(None, source, None, f"{source}'s weights do not fit ({e}): training from scratch")
        return WarmStart(data, source, sha256_file(weights), f"initialised from champion {source}")
