"""Gated PixelCNN: an exact-likelihood autoregressive model of images, pixel by pixel in raster order.

van den Oord et al., "Conditional Image Generation with PixelCNN Decoders", arXiv 1606.05328. Pixels are
quantised to ``levels`` intensity levels and each one gets a softmax over the levels, conditioned on all
pixels above it and to its left. A vertical stack (rows strictly above) and a horizontal stack (the current
row, strictly left at the first layer) remove the blind spot of the original masked PixelCNN
(arXiv 1601.06759). The channels of one pixel are modelled as independent given the pixels before it (no
R→G→B masking inside a pixel): still an exact likelihood, of a slightly weaker model; digits are grayscale.

The NLL is in nats per dimension for training and bits per dimension (``/ ln 2``) for reporting; it is the
discrete likelihood of the data quantised to ``levels`` levels, so compare bits/dim only at equal levels
(literature MNIST numbers use 256).
"""

from __future__ import annotations

import math
from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from components.data.spec import DataSpec
from components.errors import ConfigError
from components.models.base import Batch, GenerativeModel, reject_options
from components.models.configs import PixelCNNConfig


def quantise(x: Tensor, levels: int) -> Tensor:
    """Images in [0, 1] -> level indices in {0, .., levels-1} (equal-width bins; exact at native levels)."""
    return (x * levels).floor().clamp_(0, levels - 1).long()


def dequantise(idx: Tensor, levels: int) -> Tensor:
    """Level indices -> images in [0, 1]."""
    return idx.float() / (levels - 1)


def gate(x: Tensor) -> Tensor:
    """Gated activation tanh(a) ⊙ σ(b) over the two channel halves (arXiv 1606.05328 eq. 2)."""
    a, b = x.chunk(2, dim=1)
    return torch.tanh(a) * torch.sigmoid(b)


def multinomial(probs: Tensor, generator: torch.Generator | None) -> Tensor:
    """One draw per row of ``probs`` (N, K), on the generator's device (a CPU one may drive a GPU model)."""
    device = generator.device if generator is not None else probs.device
    return torch.multinomial(probs.to(device), 1, generator=generator).to(probs.device)  # (N, 1)


class GatedLayer(nn.Module):
    """One gated layer with a vertical and a horizontal stack (arXiv 1606.05328 Fig. 2).

    The vertical conv (kernel ⌈k/2⌉×k, padded on top) sees the rows at and above the current one; the
    horizontal conv (kernel 1×⌈k/2⌉, padded on the left) the current pixel and those on its left. Mask type
    A (first layer) removes the current row / pixel, so the vertical stack only ever sees rows strictly
    above, and the horizontal stack strictly earlier pixels; type B layers may then include them.
    """

    def __init__(self, *, dim: int, kernel_size: int, mask_type: str):
        super().__init__()
        self.k = kernel_size // 2
        self.mask_type = mask_type
        self.vert = nn.Conv2d(dim, 2 * dim, (self.k + 1, 2 * self.k + 1))
        self.vert_to_horiz = nn.Conv2d(2 * dim, 2 * dim, 1)
        self.horiz = nn.Conv2d(dim, 2 * dim, (1, self.k + 1))
        self.horiz_out = nn.Conv2d(dim, dim, 1)
        v_mask, h_mask = torch.ones_like(self.vert.weight), torch.ones_like(self.horiz.weight)
        if mask_type == "A":
            v_mask[:, :, -1] = 0  # not the current row
            h_mask[:, :, :, -1] = 0  # not the current pixel
        self.register_buffer("v_mask", v_mask, persistent=False)
        self.register_buffer("h_mask", h_mask, persistent=False)

    def vertical(self, v: Tensor) -> Tensor:
        """Pre-activation of the vertical stack (B, 2D, H, W) from its input (B, D, H, W)."""
        v = F.pad(v, (self.k, self.k, self.k, 0))  # (B, D, H + k, W + 2k): left, right, top
        return F.conv2d(v, self.vert.weight * self.v_mask, self.vert.bias)  # (B, 2D, H, W)

    def horizontal(self, h: Tensor, v_pre: Tensor) -> Tensor:
        """Next horizontal stack (B, D, H, W') from the current one and the vertical pre-activation."""
        h_pre = F.conv2d(F.pad(h, (self.k, 0)), self.horiz.weight * self.h_mask, self.horiz.bias)  # (B, 2D, H, W')
        out = self.horiz_out(gate(h_pre + self.vert_to_horiz(v_pre)))  # (B, D, H, W')
        return out if self.mask_type == "A" else h + out  # no residual at A: h still holds the current pixel

    def forward(self, v: Tensor, h: Tensor) -> tuple[Tensor, Tensor]:
        v_pre = self.vertical(v)
        return gate(v_pre), self.horizontal(h, v_pre)


class GatedPixelCNNNet(nn.Module):
    """Level indices (B, C, H, W) -> logits (B, levels, C, H, W) of each pixel given the ones before it."""

    def __init__(self, *, channels: int, levels: int, dim: int, n_layers: int, kernel_size: int, head_dim: int):
        super().__init__()
        self.channels, self.levels = channels, levels
        self.embedding = nn.Embedding(channels * levels, dim)
        self.layers = nn.ModuleList(
            GatedLayer(dim=dim, kernel_size=kernel_size, mask_type="A" if i == 0 else "B") for i in range(n_layers)
        )
        self.head = nn.Sequential(
            nn.ReLU(), nn.Conv2d(dim, head_dim, 1), nn.ReLU(), nn.Conv2d(head_dim, channels * levels, 1)
        )
        self.register_buffer("offsets", torch.arange(channels) * levels, persistent=False)
        self.reach = n_layers * (kernel_size // 2)  # rows above that the vertical stack can see

    def embed(self, x: Tensor) -> Tensor:
        """Level indices (B, C, H, W) -> features (B, D, H, W); the channels' embeddings are summed."""
        e = self.embedding(x + self.offsets[:, None, None])  # (B, C, H, W, D)
        return e.sum(1).permute(0, 3, 1, 2)  # (B, D, H, W)

    def logits(self, h: Tensor) -> Tensor:
        """Final horizontal features (B, D, H, W) -> logits (B, levels, C, H, W)."""
        out = self.head(h)  # (B, C * L, H, W)
        B, _, H, W = out.shape
        return out.view(B, self.channels, self.levels, H, W).transpose(1, 2)

    def forward_embedded(self, e: Tensor) -> Tensor:
        v = h = e  # (B, D, H, W)
        for layer in self.layers:
            v, h = layer(v, h)
        return self.logits(h)

    def forward(self, x: Tensor) -> Tensor:
        return self.forward_embedded(self.embed(x))

    # Incremental evaluation for sampling: the vertical stack of a row depends only on the rows above, so
    # it is computed once per row; each pixel then only runs the horizontal stack over its own row.

    def row_context(self, x: Tensor, row: int) -> list[Tensor]:
        """Each layer's vertical pre-activation at ``row`` (B, 2D, 1, W), from the rows above it."""
        top = max(0, row - self.reach)  # rows above `top` are out of the receptive field
        v = self.embed(x[:, :, top : row + 1])  # (B, D, row + 1 - top, W)
        ctx = []
        for layer in self.layers:
            v_pre = layer.vertical(v)  # (B, 2D, rows, W)
            ctx.append(v_pre[:, :, -1:])
            v = gate(v_pre)
        return ctx

    def pixel_logits(self, x: Tensor, row: int, col: int, ctx: list[Tensor]) -> Tensor:
        """Logits (B, levels, C) of pixel (row, col), given ``ctx = row_context(x, row)``."""
        h = self.embed(x[:, :, row : row + 1, : col + 1])  # (B, D, 1, col + 1)
        for layer, v_pre in zip(self.layers, ctx, strict=True):
            h = layer.horizontal(h, v_pre[..., : col + 1])
        return self.logits(h[..., -1:])[..., 0, 0]  # (B, L, C)


class PixelCNN(GenerativeModel):
    """Maximum likelihood: cross-entropy of each pixel's level; sampling and inpainting in raster order."""

    family = "pixelcnn"
    sample_params: ClassVar[dict[str, Any]] = {"temperature": 1.0}  # the registered sampler's params schema

    def __init__(self, *, spec: DataSpec, config: PixelCNNConfig, levels: int):
        super().__init__(spec=spec, config=config)
        self.levels = levels
        self.net = GatedPixelCNNNet(
            channels=spec.shape[0],
            levels=levels,
            dim=config.dim,
            n_layers=config.n_layers,
            kernel_size=config.kernel_size,
            head_dim=config.head_dim,
        )

    def nll_nats(self, x: Tensor) -> Tensor:
        """Mean NLL per dimension in nats of images (B, C, H, W) in [0, 1], quantised to ``levels``."""
        idx = quantise(x, self.levels)  # (B, C, H, W)
        return F.cross_entropy(self.net(idx), idx)  # logits (B, L, C, H, W)

    def forward(self, batch: Batch) -> dict[str, Tensor]:
        loss = self.nll_nats(batch[0])
        return {"loss": loss, "bits_per_dim": loss.detach() / math.log(2)}

    @torch.no_grad()
    def likelihood(self, batch: Batch) -> dict[str, Tensor]:
        return {"nll_bits_per_dim": self.nll_nats(batch[0]) / math.log(2)}

    @torch.no_grad()
    def sample(
        self,
        n: int,
        *,
        generator: torch.Generator | None = None,
        temperature: float = 1.0,
        top_k: int | None = None,
        **unknown: Any,
    ) -> Tensor:
        """``n`` images (n, C, H, W) in [0, 1], drawn pixel by pixel."""
        reject_options("pixelcnn", unknown, ("temperature", "top_k"))
        device = self.net.embedding.weight.device
        idx = torch.zeros((n, *self.spec.shape), dtype=torch.long, device=device)  # (n, C, H, W)
        return dequantise(self._fill(idx, 0, generator, temperature, top_k, where="pixelcnn.sample"), self.levels)

    @torch.no_grad()
    def complete(
        self,
        x_top: Tensor,
        rows_given: int,
        *,
        generator: torch.Generator | None = None,
        temperature: float = 1.0,
        top_k: int | None = None,
    ) -> Tensor:
        """Inpainting: keep the first ``rows_given`` rows of ``x_top`` (n, C, H, W) and sample the rest."""
        H = self.spec.shape[1]
        if not 0 <= rows_given <= H:
            raise ValueError(f"pixelcnn.complete: expected 0 <= rows_given <= {H}, got {rows_given}")
        idx = quantise(x_top.to(self.net.embedding.weight.device), self.levels)
        filled = self._fill(idx, rows_given, generator, temperature, top_k, where="pixelcnn.complete")
        return dequantise(filled, self.levels)

    def _fill(
        self,
        idx: Tensor,
        start_row: int,
        generator: torch.Generator | None,
        temperature: float,
        top_k: int | None,
        *,
        where: str,
    ) -> Tensor:
        if temperature <= 0:
            raise ConfigError(f"{where}: expected temperature > 0, got {temperature}")
        was_training = self.training
        self.eval()
        n, C, H, W = idx.shape
        for row in range(start_row, H):
            ctx = self.net.row_context(idx, row)
            for col in range(W):
                logits = self.net.pixel_logits(idx, row, col, ctx).transpose(1, 2) / temperature  # (n, C, L)
                if top_k is not None:
                    kth = torch.topk(logits, min(top_k, self.levels), dim=-1).values[..., -1:]  # (n, C, 1)
                    logits = logits.masked_fill(logits < kth, -math.inf)
                probs = F.softmax(logits, dim=-1).reshape(n * C, self.levels)
                idx[:, :, row, col] = multinomial(probs, generator).view(n, C)
        self.train(was_training)
        return idx

    def evaluation_figures(self, real: Batch, *, generator: torch.Generator) -> dict[str, Tensor]:
        """``completion`` (4n, C, H, W), n = 8: the real images (quantised), then 3 completions of each.

        Drawn as a grid of n columns: the first row is real, the rows below complete its top half.
        """
        x = real[0][:: max(1, len(real[0]) // 8)][:8]  # spread over the batch (splits are sorted by class)
        n, C, H, W = x.shape
        completions = self.complete(x.repeat(3, 1, 1, 1), H // 2, generator=generator).cpu()  # (3n, C, H, W)
        return {"completion": torch.cat([dequantise(quantise(x.cpu(), self.levels), self.levels), completions])}

    def sampler_info(self) -> dict[str, Any]:
        return {"sampler": "ancestral, pixel by pixel in raster order", "levels": self.levels}


def build(config: PixelCNNConfig, spec: DataSpec) -> PixelCNN:
    if spec.kind != "image":
        raise ConfigError(f"pixelcnn: expected an image dataset, got {spec.kind!r} dataset {spec.name!r}")
    if config.kernel_size % 2 == 0:
        raise ConfigError(f"model.kernel_size: expected an odd number, got {config.kernel_size}")
    native = spec.levels or 256
    levels = config.levels or native
    if levels > native:
        raise ConfigError(f"model.levels: expected at most the dataset's {native} levels, got {levels}")
    return PixelCNN(spec=spec, config=config, levels=levels)
