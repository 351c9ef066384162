"""Initial weights for a training run (warm start): safetensors bytes loaded into a freshly built model.

Where the bytes come from (the registered champion) is the tracking layer's business
(:mod:`components.tracking.champion`); training only loads them, never through pickle.
"""

from __future__ import annotations

import tempfile

from torch import nn


def load_weights(model: nn.Module, data: bytes) -> None:
    """Load safetensors bytes into ``model`` (strict; shared tensors handled as ``save_model`` wrote them)."""
    from safetensors.torch import load_model

    with tempfile.NamedTemporaryFile(suffix=".safetensors") as f:
        f.write(data)
        f.flush()
        load_model(model, f.name, strict=True)
