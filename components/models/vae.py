"""Convolutional β-VAE (Kingma & Welling, arXiv 1312.6114; β-VAE: Higgins et al., ICLR 2017).

``ConvEncoder``/``ConvDecoder`` are the networks; :class:`VAE` is the objective (ELBO), the sampler and the
reconstruction / interpolation figures. Images are modelled with a Bernoulli decoder on intensities in
[0, 1] (the usual choice for MNIST-like data; for non-binary pixels the ELBO is a bound on that Bernoulli
likelihood, not a discrete likelihood of the image).
"""

from __future__ import annotations

import math
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from components.data.spec import DataSpec
from components.errors import ConfigError
from components.models.base import Batch, GenerativeModel, reject_options
from components.models.configs import VAEConfig


def _pad_to_multiple(h: int, m: int = 4) -> int:
    return (m - h % m) % m


class ConvEncoder(nn.Module):
    """x (B, C, H, W) -> (mu, logvar), each (B, latent)."""

    def __init__(self, *, channels: int, size: tuple[int, int], width: int, latent_dim: int):
        super().__init__()
        h, w = (s + _pad_to_multiple(s) for s in size)
        self.net = nn.Sequential(
            nn.Conv2d(channels, width, 3, padding=1),
            nn.SiLU(),
            nn.Conv2d(width, 2 * width, 4, stride=2, padding=1),
            nn.SiLU(),  # H/2
            nn.Conv2d(2 * width, 2 * width, 4, stride=2, padding=1),
            nn.SiLU(),  # H/4
            nn.Flatten(),
        )
        self.head = nn.Linear(2 * width * (h // 4) * (w // 4), 2 * latent_dim)

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        mu, logvar = self.head(self.net(x)).chunk(2, dim=-1)  # (B, L), (B, L)
        return mu, logvar.clamp(-12, 12)


class ConvDecoder(nn.Module):
    """z (B, latent) -> Bernoulli logits (B, C, H', W') on the padded grid."""

    def __init__(self, *, channels: int, size: tuple[int, int], width: int, latent_dim: int):
        super().__init__()
        h, w = (s + _pad_to_multiple(s) for s in size)
        self.grid = (2 * width, h // 4, w // 4)
        self.fc = nn.Linear(latent_dim, math.prod(self.grid))
        self.net = nn.Sequential(
            nn.SiLU(),
            nn.ConvTranspose2d(2 * width, width, 4, stride=2, padding=1),
            nn.SiLU(),  # H/2
            nn.ConvTranspose2d(width, width, 4, stride=2, padding=1),
            nn.SiLU(),  # H
            nn.Conv2d(width, channels, 3, padding=1),
        )

    def forward(self, z: Tensor) -> Tensor:
        return self.net(self.fc(z).view(-1, *self.grid))


class VAE(GenerativeModel):
    """The ELBO objective: E_q[log p(x|z)] − β·KL(q(z|x) ‖ N(0, I))."""

    family = "vae"

    def __init__(self, *, spec: DataSpec, config: VAEConfig):
        super().__init__(spec=spec, config=config)
        c, h, w = spec.shape
        self.size = (h, w)
        self.pad = (_pad_to_multiple(h), _pad_to_multiple(w))
        self.latent_dim = config.latent_dim
        self.beta = config.beta
        kw = dict(channels=c, size=(h, w), width=config.width, latent_dim=config.latent_dim)
        self.encoder = ConvEncoder(**kw)
        self.decoder = ConvDecoder(**kw)

    def _padded(self, x: Tensor) -> Tensor:
        return F.pad(x, (0, self.pad[1], 0, self.pad[0])) if any(self.pad) else x

    def decode_logits(self, z: Tensor) -> Tensor:
        return self.decoder(z)[..., : self.size[0], : self.size[1]]  # (B, C, H, W)

    def elbo_terms(self, x: Tensor) -> dict[str, Tensor]:
        """Per-image reconstruction NLL and KL, in nats, averaged over the batch."""
        mu, logvar = self.encoder(self._padded(x))
        z = mu + torch.randn_like(mu) * (0.5 * logvar).exp()  # reparameterisation trick (arXiv 1312.6114 §2.4)
        logits = self.decode_logits(z)
        recon = F.binary_cross_entropy_with_logits(logits, x, reduction="none").flatten(1).sum(1).mean()
        kl = 0.5 * (mu.pow(2) + logvar.exp() - 1 - logvar).sum(1).mean()  # closed form, Appendix B
        return {"recon": recon, "kl": kl}

    def forward(self, batch: Batch) -> dict[str, Tensor]:
        t = self.elbo_terms(batch[0])
        return {"loss": t["recon"] + self.beta * t["kl"], "recon": t["recon"], "kl": t["kl"]}

    @torch.no_grad()
    def sample(self, n: int, *, generator: torch.Generator | None = None, **options: Any) -> Tensor:
        reject_options("vae", options)
        z = torch.randn(n, self.latent_dim, generator=generator, device=_device(self))
        return torch.sigmoid(self.decode_logits(z))  # mean of the Bernoulli decoder

    @torch.no_grad()
    def reconstruct(self, x: Tensor) -> Tensor:
        mu, _ = self.encoder(self._padded(x))
        return torch.sigmoid(self.decode_logits(mu))

    @torch.no_grad()
    def interpolate(self, a: Tensor, b: Tensor, *, steps: int = 8) -> Tensor:
        """Decode the straight line between the posterior means of ``a`` and ``b`` (each (N, C, H, W))."""
        za, _ = self.encoder(self._padded(a))
        zb, _ = self.encoder(self._padded(b))
        t = torch.linspace(0, 1, steps, device=za.device)[None, :, None]  # (1, S, 1)
        z = (za[:, None] * (1 - t) + zb[:, None] * t).flatten(0, 1)  # (N*S, L)
        return torch.sigmoid(self.decode_logits(z))

    @torch.no_grad()
    def likelihood(self, batch: Batch) -> dict[str, Tensor]:
        t = self.elbo_terms(batch[0])
        nelbo = t["recon"] + t["kl"]  # β = 1: the true bound
        dims = math.prod(self.spec.shape)
        return {"nelbo_nats": nelbo, "nelbo_bits_per_dim": nelbo / (dims * math.log(2))}

    @torch.no_grad()
    def evaluation_figures(self, real: Batch, *, generator: torch.Generator) -> dict[str, Tensor]:
        x = real[0][:32]
        rec = self.reconstruct(x)
        pairs = torch.stack([x, rec], dim=1).flatten(0, 1)  # original, reconstruction, ...
        k = min(8, len(x) // 2)
        interp = self.interpolate(x[:k], x[k : 2 * k], steps=8)
        return {"reconstructions": pairs, "interpolation": interp}

    def sampler_info(self) -> dict[str, Any]:
        return {"sampler": "ancestral (prior -> decoder mean)", "weights": "raw"}


def _device(m: nn.Module) -> torch.device:
    return next(m.parameters()).device


def build(config: VAEConfig, spec: DataSpec) -> VAE:
    if spec.kind != "image":
        raise ConfigError(f"vae: expected an image dataset, got {spec.kind!r} dataset {spec.name!r}")
    return VAE(spec=spec, config=config)
