"""The family table: one :class:`Family` record per generative family, and nothing else needs to know one.

A record holds the family's hyperparameter schema (``Config``), where its networks and objective live (``build``
is imported from there only when a model is built: this module is torch-free, so any stage can validate
params.yaml cheaply), the facts about its likelihood that the leaderboard prints, and its capabilities
(protocols of :mod:`components.models.capabilities`) that the CLI offers.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from pydantic import ValidationError

from components.errors import ConfigError, format_validation_error
from components.models.capabilities import CAPABILITIES, Completes, Inpaints
from components.models.configs import (
    DiffusionConfig,
    FamilyConfig,
    GANConfig,
    GPTConfig,
    PixelCNNConfig,
    VAEConfig,
    WaveNetConfig,
)

if TYPE_CHECKING:
    from components.data.spec import DataSpec
    from components.models.base import GenerativeModel


@dataclass(frozen=True)
class Likelihood:
    """One likelihood number a family reports (an ``eval.json`` key), and how to read it."""

    metric: str
    unit: str
    exactness: str  # "exact", or which bound
    data_model: str  # what the number is a likelihood of; may name {levels} and {bigram}


@dataclass(frozen=True)
class Family:
    """Everything the pipeline knows about one family without importing it."""

    name: str
    config: type[FamilyConfig]
    module: str  # defines ``build(config, spec) -> GenerativeModel``
    likelihood: tuple[Likelihood, ...] = ()
    no_likelihood: str = "none: the family defines no likelihood"
    capabilities: tuple[type, ...] = ()  # protocols of components.models.capabilities

    def parse(self, raw: dict[str, Any], *, where: str = "model") -> FamilyConfig:
        """Validate hyperparameters; the error names the key, the value and what was expected."""
        try:
            return self.config(**raw)
        except ValidationError as e:
            raise ConfigError(format_validation_error(e, prefix=where)) from None

    def build(self, config: FamilyConfig | dict[str, Any], spec: DataSpec) -> GenerativeModel:
        """The family's objective (untrained) for a dataset."""
        if isinstance(config, dict):
            config = self.parse(config)
        if not isinstance(config, self.config):
            raise ConfigError(f"{self.name}: expected a {self.config.__name__}, got {type(config).__name__}")
        return importlib.import_module(self.module).build(config, spec)

    def supports(self, capability: type) -> bool:
        return capability in self.capabilities

    @property
    def capability_names(self) -> list[str]:
        return [name for name, proto in CAPABILITIES.items() if proto in self.capabilities]


_ELBO_SAMPLE = "one latent sample per image"
FAMILIES: dict[str, Family] = {
    f.name: f
    for f in (
        Family(
            "vae",
            VAEConfig,
            "components.models.vae",
            likelihood=(
                Likelihood(
                    "test_nelbo_bits_per_dim",
                    "bits/dim",
                    f"upper bound (−ELBO, {_ELBO_SAMPLE})",
                    "Bernoulli decoder on [0, 1] intensities: a continuous-target likelihood, not comparable with "
                    "the discrete bits/dim of other families",
                ),
                Likelihood("test_nelbo_nats", "nats/image", f"upper bound (−ELBO, {_ELBO_SAMPLE})", "as above"),
            ),
        ),
        Family("gan", GANConfig, "components.models.gan", no_likelihood="none: an implicit model (no density)"),
        Family(
            "pixelcnn",
            PixelCNNConfig,
            "components.models.pixelcnn",
            likelihood=(
                Likelihood(
                    "test_nll_bits_per_dim",
                    "bits/dim",
                    "exact",
                    "categorical over {levels} intensity levels, raster order",
                ),
            ),
            capabilities=(Completes,),
        ),
        Family(
            "gpt",
            GPTConfig,
            "components.models.gpt",
            likelihood=(
                Likelihood(
                    "test_nll_nats_per_char",
                    "nats/char",
                    "exact",
                    "characters and EOS, PAD ignored; bigram baseline (add-one, fitted on train) {bigram}",
                ),
            ),
        ),
        Family(
            "diffusion",
            DiffusionConfig,
            "components.models.diffusion",
            likelihood=(
                Likelihood(
                    "test_nll_bits_per_dim",
                    "bits/dim",
                    "upper bound (−ELBO: L_0 + L_T exact, one-sample estimate of the T−1 middle terms per image)",
                    "discretised Gaussian decoder at the dataset's intensity levels",
                ),
            ),
            capabilities=(Inpaints,),
        ),
        Family(
            "wavenet",
            WaveNetConfig,
            "components.models.wavenet",
            likelihood=(
                Likelihood(
                    "test_nll_bits_per_sample",
                    "bits/sample",
                    "exact",
                    "categorical over mu + 1 = 256 mu-law levels per audio sample, in time order",
                ),
            ),
        ),
    )
}


def get_family(name: str) -> Family:
    if name not in FAMILIES:
        raise ConfigError(f"get_family: expected a family among {sorted(FAMILIES)}, got {name!r}")
    return FAMILIES[name]


def parse_family_config(family: str, raw: dict[str, Any], *, where: str = "model") -> FamilyConfig:
    """Validate a family's hyperparameters; errors name the key, the value and what was expected."""
    return get_family(family).parse(raw, where=where)


def build_model(family: str, config: FamilyConfig | dict[str, Any], spec: DataSpec) -> GenerativeModel:
    """Build a family's objective (untrained) for a dataset."""
    return get_family(family).build(config, spec)
