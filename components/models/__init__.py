"""Family registry: ``family name -> module``. Each module defines ``Config`` and ``build(config, spec)``."""

from __future__ import annotations

import importlib
from types import ModuleType
from typing import Any

from pydantic import ValidationError

from components.data.spec import DataSpec
from components.errors import ConfigError
from components.models.base import FamilyConfig, GenerativeModel

FAMILIES: dict[str, str] = {
    "vae": "components.models.vae",
    "gan": "components.models.gan",
    "pixelcnn": "components.models.pixelcnn",
    "gpt": "components.models.gpt",
    "diffusion": "components.models.diffusion",
}


def family_module(family: str) -> ModuleType:
    if family not in FAMILIES:
        raise ConfigError(f"unknown family {family!r}; expected one of {sorted(FAMILIES)}")
    return importlib.import_module(FAMILIES[family])


def parse_family_config(family: str, raw: dict[str, Any], *, where: str = "model") -> FamilyConfig:
    """Validate a family's hyperparameters; errors name the key, the value and what was expected."""
    from components.config import format_validation_error

    try:
        return family_module(family).Config(**raw)
    except ValidationError as e:
        raise ConfigError(format_validation_error(e, prefix=where)) from None


def build_model(family: str, config: FamilyConfig | dict[str, Any], spec: DataSpec) -> GenerativeModel:
    """Build a family's objective (untrained) for a dataset."""
    if isinstance(config, dict):
        config = parse_family_config(family, config)
    return family_module(family).build(config, spec)
