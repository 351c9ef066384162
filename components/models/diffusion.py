"""Denoising diffusion: DDPM training (arXiv 2006.11239), DDPM/DDIM sampling (arXiv 2010.02502), inpainting.

After lucidrains' denoising-diffusion-pytorch: the networks map ``(x_t, t) -> prediction`` and know nothing
about noise schedules (:class:`Unet` for images, :class:`MLPDenoiser` for 2-D points); the objective
:class:`GaussianDiffusion` owns the schedule, the loss, the samplers, inpainting and the likelihood bound.

- Images arrive in [0, 1] and are diffused in [-1, 1] (Ho et al. §3.3); samples are mapped back to [0, 1].
  Points are diffused as ``x / point_scale`` (pick ``point_scale`` so the data has roughly unit spread).
- Prediction target: ε (Ho et al.) or v = √ᾱ ε − √(1−ᾱ) x₀ (Salimans & Ho, arXiv 2202.00512).
- An EMA copy of the network lives inside the module (``ema.*`` in the state dict), so it is checkpointed
  with the model and identical on every data-parallel rank: its parameters do not require grad (DDP leaves
  them alone) and :meth:`GaussianDiffusion.after_step` updates them deterministically from the
  all-reduced weights. Sampling, inpainting and the likelihood use the EMA weights unless ``use_ema=False``.
"""

from __future__ import annotations

import copy
import math
from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from components.data.spec import DataSpec
from components.errors import ConfigError
from components.models.base import Batch, GenerativeModel, ema_update, eval_mode, reject_options
from components.models.configs import DiffusionConfig, DiffusionSampler

# ---------------------------------------------------------------------------------------------------------
# schedules and Gaussian helpers (pure functions)


def beta_schedule(kind: str, timesteps: int) -> Tensor:
    """β₁..β_T in float64."""
    if kind == "linear":
        scale = 1000 / timesteps  # Ho et al. arXiv 2006.11239 §4: 1e-4 .. 0.02 for T = 1000, rescaled for other T
        return torch.linspace(scale * 1e-4, scale * 0.02, timesteps, dtype=torch.float64)
    if kind == "cosine":
        # Nichol & Dhariwal arXiv 2102.09672 eq. 17: ᾱ_t = f(t)/f(0), f(t) = cos²((t/T + s)/(1 + s) · π/2)
        s = 0.008
        t = torch.linspace(0, timesteps, timesteps + 1, dtype=torch.float64)
        f = torch.cos((t / timesteps + s) / (1 + s) * math.pi / 2) ** 2
        alphas_cumprod = f / f[0]
        return (1 - alphas_cumprod[1:] / alphas_cumprod[:-1]).clamp(0, 0.999)  # β_t ≤ 0.999 (same paper)
    raise ConfigError(f"beta_schedule: expected schedule 'linear' or 'cosine', got {kind!r}")


def normal_kl(mean1: Tensor, logvar1: Tensor, mean2: Tensor, logvar2: Tensor) -> Tensor:
    """KL(N(mean1, e^logvar1) ‖ N(mean2, e^logvar2)) elementwise, in nats."""
    return 0.5 * (-1.0 + logvar2 - logvar1 + torch.exp(logvar1 - logvar2) + (mean1 - mean2) ** 2 * torch.exp(-logvar2))


def discretized_gaussian_log_likelihood(x: Tensor, *, mean: Tensor, log_scale: Tensor, half_bin: float) -> Tensor:
    """log P(x) elementwise for data on a grid in [-1, 1] with bins of half-width ``half_bin``.

    The Gaussian decoder of Ho et al. arXiv 2006.11239 eq. 13; the edge bins extend to ±∞.
    """
    inv_std = torch.exp(-log_scale)
    upper = torch.special.ndtr((x - mean + half_bin) * inv_std)
    lower = torch.special.ndtr((x - mean - half_bin) * inv_std)
    log_cdf_upper = torch.special.log_ndtr((x - mean + half_bin) * inv_std)  # bin (-∞, -1 + half_bin]
    log_sf_lower = torch.special.log_ndtr(-(x - mean - half_bin) * inv_std)  # bin [1 - half_bin, ∞)
    mid = torch.log((upper - lower).clamp_min(1e-12))
    edge = half_bin / 2
    return torch.where(x < -1 + edge, log_cdf_upper, torch.where(x > 1 - edge, log_sf_lower, mid))


# ---------------------------------------------------------------------------------------------------------
# networks


class SinusoidalPosEmb(nn.Module):
    """Timestep embedding of the Transformer (arXiv 1706.03762 §3.5), as used by Ho et al."""

    def __init__(self, dim: int):
        super().__init__()
        self.dim = dim

    def forward(self, t: Tensor) -> Tensor:  # (B,) -> (B, dim)
        half = self.dim // 2
        freqs = torch.exp(-math.log(10000) * torch.arange(half, device=t.device) / max(half - 1, 1))
        args = t.float()[:, None] * freqs[None]  # (B, half)
        return torch.cat([args.sin(), args.cos()], dim=-1)


def _groups(channels: int) -> int:
    return math.gcd(8, channels)


class ResnetBlock(nn.Module):
    """Pre-activation residual block; the time embedding scales and shifts the second normalisation."""

    def __init__(self, dim_in: int, dim_out: int, *, time_dim: int, dropout: float = 0.0):
        super().__init__()
        self.norm1 = nn.GroupNorm(_groups(dim_in), dim_in)
        self.conv1 = nn.Conv2d(dim_in, dim_out, 3, padding=1)
        self.time = nn.Linear(time_dim, dim_out * 2)
        self.norm2 = nn.GroupNorm(_groups(dim_out), dim_out)
        self.dropout = nn.Dropout(dropout)
        self.conv2 = nn.Conv2d(dim_out, dim_out, 3, padding=1)
        self.skip = nn.Conv2d(dim_in, dim_out, 1) if dim_in != dim_out else nn.Identity()

    def forward(self, x: Tensor, temb: Tensor) -> Tensor:  # x (B, C_in, H, W), temb (B, time_dim)
        h = self.conv1(F.silu(self.norm1(x)))  # (B, C_out, H, W)
        scale, shift = self.time(F.silu(temb))[:, :, None, None].chunk(2, dim=1)  # (B, C_out, 1, 1) each
        h = self.norm2(h) * (1 + scale) + shift
        h = self.conv2(self.dropout(F.silu(h)))
        return h + self.skip(x)


class Attention(nn.Module):
    """Multi-head self-attention over the H·W positions of a feature map."""

    def __init__(self, dim: int, *, heads: int = 4):
        super().__init__()
        self.heads = heads if dim % heads == 0 else 1
        self.norm = nn.GroupNorm(_groups(dim), dim)
        self.qkv = nn.Conv2d(dim, dim * 3, 1)
        self.out = nn.Conv2d(dim, dim, 1)

    def forward(self, x: Tensor) -> Tensor:  # (B, C, H, W)
        B, C, H, W = x.shape
        qkv = self.qkv(self.norm(x)).reshape(B, 3, self.heads, C // self.heads, H * W)
        q, k, v = qkv.transpose(-1, -2).unbind(1)  # (B, heads, H·W, C/heads) each
        h = F.scaled_dot_product_attention(q, k, v)  # (B, heads, H·W, C/heads)
        return x + self.out(h.transpose(-1, -2).reshape(B, C, H, W))


class Unet(nn.Module):
    """A small U-Net (arXiv 1505.04597 as adapted by Ho et al.) predicting ε or v from ``(x_t, t)``.

    ``patch`` > 1 first folds ``patch × patch`` pixel blocks into channels (space-to-depth, as in
    "simple diffusion", Hoogeboom et al. arXiv 2301.11093 §3) and unfolds the output: the network then runs
    at 1/patch of the resolution, which is what makes 28×28 affordable on a CPU. Then ``len(dim_mults)``
    levels, each with two residual blocks whose outputs are skip connections; the resolution halves between
    levels (``len(dim_mults) - 1`` times). Inputs whose height or width is not a multiple of
    ``patch · 2 ** (len(dim_mults) - 1)`` are zero-padded at the bottom/right and the output is cropped back:
    28×28 needs no padding with patch 1 and 3 levels (28 → 14 → 7) or patch 2 and 2 levels (14 → 7), and is
    padded to 32×32 with patch 1 and 4 levels; 8×8 works with up to 4 levels (8 → 4 → 2 → 1).
    """

    def __init__(
        self,
        *,
        channels: int,
        dim: int = 32,
        dim_mults: tuple[int, ...] = (1, 2, 2),
        attn: bool = True,
        dropout: float = 0.0,
        patch: int = 1,
    ):
        super().__init__()
        dims = [dim, *(dim * m for m in dim_mults)]
        in_out = list(zip(dims[:-1], dims[1:], strict=True))
        time_dim = dim * 4
        self.factor = 2 ** (len(dim_mults) - 1) * patch
        self.init_conv = nn.Sequential(nn.PixelUnshuffle(patch), nn.Conv2d(channels * patch**2, dim, 3, padding=1))
        self.time_mlp = nn.Sequential(
            SinusoidalPosEmb(dim), nn.Linear(dim, time_dim), nn.GELU(), nn.Linear(time_dim, time_dim)
        )

        def block(d_in: int, d_out: int) -> ResnetBlock:
            return ResnetBlock(d_in, d_out, time_dim=time_dim, dropout=dropout)

        self.downs = nn.ModuleList()
        for i, (d_in, d_out) in enumerate(in_out):
            last = i == len(in_out) - 1
            resample = nn.Conv2d(d_in, d_out, 3, padding=1) if last else Downsample(d_in, d_out)
            self.downs.append(nn.ModuleList([block(d_in, d_in), block(d_in, d_in), resample]))
        mid = dims[-1]
        self.mid1 = block(mid, mid)
        self.mid_attn = Attention(mid) if attn else nn.Identity()
        self.mid2 = block(mid, mid)
        self.ups = nn.ModuleList()
        for i, (d_in, d_out) in enumerate(reversed(in_out)):
            last = i == len(in_out) - 1
            resample = nn.Conv2d(d_out, d_in, 3, padding=1) if last else Upsample(d_out, d_in)
            self.ups.append(nn.ModuleList([block(d_out + d_in, d_out), block(d_out + d_in, d_out), resample]))
        self.final_block = block(dim * 2, dim)
        self.final_conv = nn.Sequential(nn.Conv2d(dim, channels * patch**2, 1), nn.PixelShuffle(patch))

    def forward(self, x: Tensor, t: Tensor) -> Tensor:  # x (B, C, H, W), t (B,) -> (B, C, H, W)
        H, W = x.shape[-2:]
        x = F.pad(x, (0, -W % self.factor, 0, -H % self.factor))  # (B, C, H', W'), multiples of factor
        x = self.init_conv(x)  # (B, dim, H'/patch, W'/patch)
        first = x
        temb = self.time_mlp(t)  # (B, 4·dim)
        skips = []
        for block1, block2, down in self.downs:
            x = block1(x, temb)
            skips.append(x)
            x = block2(x, temb)
            skips.append(x)
            x = down(x)  # (B, d_out, H/2, W/2), or same size at the last level
        x = self.mid2(self.mid_attn(self.mid1(x, temb)), temb)
        for block1, block2, up in self.ups:
            x = block1(torch.cat([x, skips.pop()], dim=1), temb)
            x = block2(torch.cat([x, skips.pop()], dim=1), temb)
            x = up(x)  # (B, d_in, 2H, 2W), or same size at the first level
        x = self.final_block(torch.cat([x, first], dim=1), temb)  # (B, dim, H'/patch, W'/patch)
        return self.final_conv(x)[..., :H, :W]


def Downsample(dim_in: int, dim_out: int) -> nn.Module:
    """Halve the resolution without discarding pixels: space-to-depth then a 1×1 convolution."""
    return nn.Sequential(nn.PixelUnshuffle(2), nn.Conv2d(dim_in * 4, dim_out, 1))


def Upsample(dim_in: int, dim_out: int) -> nn.Module:
    return nn.Sequential(nn.Upsample(scale_factor=2, mode="nearest"), nn.Conv2d(dim_in, dim_out, 3, padding=1))


class MLPDenoiser(nn.Module):
    """Residual MLP predicting ε or v for low-dimensional points; the time embedding enters every block."""

    def __init__(self, *, dim_in: int, dim: int = 128, depth: int = 3):
        super().__init__()
        self.time_mlp = nn.Sequential(SinusoidalPosEmb(dim), nn.Linear(dim, dim), nn.SiLU(), nn.Linear(dim, dim))
        self.proj_in = nn.Linear(dim_in, dim)
        self.blocks = nn.ModuleList(
            nn.Sequential(nn.LayerNorm(dim), nn.Linear(dim, dim * 2), nn.SiLU(), nn.Linear(dim * 2, dim))
            for _ in range(depth)
        )
        self.proj_out = nn.Sequential(nn.LayerNorm(dim), nn.Linear(dim, dim_in))

    def forward(self, x: Tensor, t: Tensor) -> Tensor:  # x (B, D), t (B,) -> (B, D)
        temb = self.time_mlp(t)  # (B, dim)
        h = self.proj_in(x)  # (B, dim)
        for block in self.blocks:
            h = h + block(h + temb)
        return self.proj_out(h)


# ---------------------------------------------------------------------------------------------------------
# the objective


class GaussianDiffusion(GenerativeModel):
    """DDPM objective (Ho et al. arXiv 2006.11239) with DDPM/DDIM samplers, EMA weights and inpainting."""

    family = "diffusion"
    #: the registered sampler's params schema (defaults used when a request names none)
    sample_params: ClassVar[dict[str, Any]] = {"sampler": "ddim", "steps": 50, "eta": 0.0}

    def __init__(self, *, net: nn.Module, spec: DataSpec, config: DiffusionConfig):
        super().__init__(spec=spec, config=config)
        self.net = net
        self.ema = copy.deepcopy(net).requires_grad_(False)  # saved as ema.*; DDP ignores it (no grad)
        self.register_buffer("step", torch.zeros((), dtype=torch.long))  # optimizer steps seen by the EMA
        self.T = config.timesteps
        self.clip = spec.kind == "image"  # x̂₀ is clipped to the data range [-1, 1] when sampling images

        betas = beta_schedule(config.schedule, config.timesteps)  # (T,) float64
        alphas_cumprod = torch.cumprod(1 - betas, dim=0)
        alphas_cumprod_prev = F.pad(alphas_cumprod[:-1], (1, 0), value=1.0)
        # q(x_{t-1} | x_t, x_0) = N(coef1 x_0 + coef2 x_t, β̃_t): Ho et al. eqs. 6-7
        posterior_variance = betas * (1 - alphas_cumprod_prev) / (1 - alphas_cumprod)
        buffers = {
            "betas": betas,
            "alphas_cumprod": alphas_cumprod,
            "alphas_cumprod_prev": alphas_cumprod_prev,
            "sqrt_alphas_cumprod": alphas_cumprod.sqrt(),
            "sqrt_one_minus_alphas_cumprod": (1 - alphas_cumprod).sqrt(),
            "posterior_variance": posterior_variance,
            # β̃_0 = 0: use β̃_1 there, as improved-diffusion does (only the t = 0 decoder sees it)
            "posterior_log_variance_clipped": torch.log(torch.cat([posterior_variance[1:2], posterior_variance[1:]])),
            "posterior_mean_coef1": betas * alphas_cumprod_prev.sqrt() / (1 - alphas_cumprod),
            "posterior_mean_coef2": (1 - alphas_cumprod_prev) * (1 - betas).sqrt() / (1 - alphas_cumprod),
        }
        for name, value in buffers.items():  # derived from the config, so not saved in the state dict
            self.register_buffer(name, value.float(), persistent=False)
        # Min-SNR-γ weighting (Hang et al. arXiv 2303.09556): w_t = min(SNR_t, γ) in x₀ terms, i.e.
        # min(SNR, γ)/SNR for an ε target and min(SNR, γ)/(SNR + 1) for a v target
        snr = alphas_cumprod / (1 - alphas_cumprod)
        clipped = snr.clamp(max=config.min_snr_gamma or math.inf)
        weight = clipped / snr if config.objective == "eps" else clipped / (snr + 1)
        self.register_buffer("loss_weight", weight.float(), persistent=False)
        self._alphas_cumprod = alphas_cumprod.tolist()  # float64 scalars for the samplers' step sizes
        self._last_sampling: dict[str, Any] | None = None

    # ----- data space <-> diffusion space
    def to_model_space(self, x: Tensor) -> Tensor:
        return x * 2 - 1 if self.clip else x / self.config.point_scale

    def from_model_space(self, x: Tensor) -> Tensor:
        return ((x + 1) / 2).clamp(0, 1) if self.clip else x * self.config.point_scale

    # ----- forward process and parameterisations
    @staticmethod
    def _at(a: Tensor, t: Tensor, x: Tensor) -> Tensor:
        """a[t] shaped to broadcast against x: (B,) -> (B, 1, ..., 1)."""
        return a[t].reshape(-1, *([1] * (x.dim() - 1)))

    def _scales(self, t: Tensor, x: Tensor) -> tuple[Tensor, Tensor]:
        """(√ᾱ_t, √(1−ᾱ_t)), each (B, 1, ..., 1) to broadcast against x."""
        return self._at(self.sqrt_alphas_cumprod, t, x), self._at(self.sqrt_one_minus_alphas_cumprod, t, x)

    def q_sample(self, x0: Tensor, t: Tensor, noise: Tensor) -> Tensor:
        """x_t = √ᾱ_t x₀ + √(1−ᾱ_t) ε  (Ho et al. eq. 4)."""
        a, s = self._scales(t, x0)
        return a * x0 + s * noise

    def v_from(self, x0: Tensor, t: Tensor, noise: Tensor) -> Tensor:
        """v = √ᾱ_t ε − √(1−ᾱ_t) x₀  (Salimans & Ho arXiv 2202.00512 §4)."""
        a, s = self._scales(t, x0)
        return a * noise - s * x0

    def x0_from_eps(self, x_t: Tensor, t: Tensor, eps: Tensor) -> Tensor:
        a, s = self._scales(t, x_t)
        return (x_t - s * eps) / a

    def eps_from_x0(self, x_t: Tensor, t: Tensor, x0: Tensor) -> Tensor:
        a, s = self._scales(t, x_t)
        return (x_t - a * x0) / s

    def x0_from_v(self, x_t: Tensor, t: Tensor, v: Tensor) -> Tensor:
        a, s = self._scales(t, x_t)  # a² + s² = 1
        return a * x_t - s * v

    def eps_from_v(self, x_t: Tensor, t: Tensor, v: Tensor) -> Tensor:
        a, s = self._scales(t, x_t)
        return s * x_t + a * v

    def predict(self, net: nn.Module, x_t: Tensor, t: Tensor) -> tuple[Tensor, Tensor]:
        """(ε̂, x̂₀) from the network; for images x̂₀ is clipped to [-1, 1] and ε̂ re-derived from it."""
        out = net(x_t, t)
        if self.config.objective == "eps":
            eps, x0 = out, self.x0_from_eps(x_t, t, out)
        else:
            eps, x0 = self.eps_from_v(x_t, t, out), self.x0_from_v(x_t, t, out)
        if self.clip:
            x0 = x0.clamp(-1, 1)
            eps = self.eps_from_x0(x_t, t, x0)
        return eps, x0

    # ----- training
    def forward(self, batch: Batch) -> dict[str, Tensor]:
        x0 = self.to_model_space(batch[0])  # (B, *shape)
        t = torch.randint(0, self.T, (x0.shape[0],), device=x0.device)  # (B,)
        noise = torch.randn_like(x0)
        target = noise if self.config.objective == "eps" else self.v_from(x0, t, noise)
        pred = self.net(self.q_sample(x0, t, noise), t)
        if self.config.min_snr_gamma is None:
            return {"loss": F.mse_loss(pred, target)}  # L_simple, Ho et al. eq. 14
        mse = (pred - target).pow(2).flatten(1).mean(1)  # (B,)
        return {"loss": (self.loss_weight[t] * mse).mean()}

    @torch.no_grad()
    def after_step(self) -> None:
        """EMA update: θ_ema ← d·θ_ema + (1−d)·θ, with d = 0 (a copy) for the first ``ema_start`` steps."""
        self.step += 1
        # a tensor weight, so that no device sync is needed: 1 (copy) until ema_start, then 1 − decay
        weight = torch.where(self.step <= self.config.ema_start, 1.0, 1.0 - self.config.ema_decay)
        ema_update(self.ema, self.net, weight)

    # ----- sampling
    def _denoiser(self, use_ema: bool | None) -> nn.Module:
        return self.ema if (self.config.use_ema if use_ema is None else use_ema) else self.net

    def _randn(self, shape: tuple[int, ...], generator: torch.Generator | None) -> Tensor:
        device = generator.device if generator is not None else self.betas.device
        return torch.randn(shape, generator=generator, device=device).to(self.betas.device)

    def _ddim_times(self, steps: int, *, where: str = "diffusion.sample") -> list[tuple[int, int]]:
        """(t, t_next) pairs from T−1 down to −1 (meaning x₀), ``steps`` of them, as lucidrains does."""
        if not 1 <= steps <= self.T:
            raise ConfigError(f"{where}: expected 1 <= steps <= timesteps = {self.T}, got {steps}")
        times = torch.linspace(-1, self.T - 1, steps + 1).long().tolist()[::-1]
        return list(zip(times[:-1], times[1:], strict=True))

    def ddpm_step(self, net: nn.Module, x: Tensor, t: int, generator: torch.Generator | None) -> Tensor:
        """Ancestral step x_t -> x_{t-1} ~ N(μ̃(x_t, x̂₀), β̃_t)  (Ho et al. Algorithm 2, σ²_t = β̃_t)."""
        tt = torch.full((x.shape[0],), t, device=x.device, dtype=torch.long)
        _, x0 = self.predict(net, x, tt)
        mean = self._at(self.posterior_mean_coef1, tt, x) * x0 + self._at(self.posterior_mean_coef2, tt, x) * x
        if t == 0:
            return mean
        std = (0.5 * self._at(self.posterior_log_variance_clipped, tt, x)).exp()
        return mean + std * self._randn(tuple(x.shape), generator)

    def ddim_step(
        self, net: nn.Module, x: Tensor, t: int, t_next: int, *, eta: float, generator: torch.Generator | None
    ) -> Tensor:
        """x_t -> x_{t_next} by Song et al. arXiv 2010.02502 eq. 12; t_next = −1 returns x̂₀."""
        tt = torch.full((x.shape[0],), t, device=x.device, dtype=torch.long)
        eps, x0 = self.predict(net, x, tt)
        if t_next < 0:
            return x0
        a, a_next = self._alphas_cumprod[t], self._alphas_cumprod[t_next]
        sigma = eta * math.sqrt((1 - a_next) / (1 - a) * (1 - a / a_next))  # eq. 16; η = 1 gives DDPM's β̃
        x = math.sqrt(a_next) * x0 + math.sqrt(max(1 - a_next - sigma**2, 0.0)) * eps
        if sigma > 0:
            x = x + sigma * self._randn(tuple(x.shape), generator)
        return x

    def dpm_solver_step(
        self, net: nn.Module, x: Tensor, t: int, t_next: int, *, x0_prev: Tensor | None, h_prev: float | None
    ) -> tuple[Tensor, Tensor, float]:
        """x_t -> x_{t_next} by DPM-Solver++(2M) (Lu et al. arXiv 2211.01095, Algorithm 2, data prediction).

        With λ = log(α/σ), h = λ_next − λ_t and x̂₀ the model's data prediction, the second-order multistep
        update is x_next = (σ_next/σ_t) x_t − α_next (e^{−h} − 1) D, where D = (1 + 1/2r) x̂₀_t − (1/2r) x̂₀_prev
        and r = h_prev / h (eq. 8 and Algorithm 2). The first step (no previous x̂₀) is first order, i.e. DDIM
        with η = 0; t_next = −1 returns x̂₀ as the DDIM sampler does. Returns (x_next, x̂₀_t, h).
        """
        tt = torch.full((x.shape[0],), t, device=x.device, dtype=torch.long)
        _, x0 = self.predict(net, x, tt)
        if t_next < 0:
            return x0, x0, math.inf
        a, a_next = self._alphas_cumprod[t], self._alphas_cumprod[t_next]
        lam, lam_next = 0.5 * math.log(a / (1 - a)), 0.5 * math.log(a_next / (1 - a_next))
        h = lam_next - lam
        d = x0
        if x0_prev is not None and h_prev is not None and math.isfinite(h_prev):
            r = h_prev / h
            d = (1 + 1 / (2 * r)) * x0 - (1 / (2 * r)) * x0_prev
        x = math.sqrt((1 - a_next) / (1 - a)) * x - math.sqrt(a_next) * math.expm1(-h) * d
        return x, x0, h

    @torch.no_grad()
    def sample(
        self,
        n: int,
        *,
        generator: torch.Generator | None = None,
        sampler: DiffusionSampler | None = None,
        steps: int | None = None,
        eta: float | None = None,
        use_ema: bool | None = None,
        **unknown: Any,
    ) -> Tensor:
        """``n`` samples in data space: DDPM ancestral sampling (all T steps), DDIM (``steps``, ``eta``) or
        DPM-Solver++(2M) (``steps``; deterministic, ``eta`` does not apply).

        Unset options take the config's defaults (``sampler``, ``sampling_steps``, ``eta``, ``use_ema``).
        """
        reject_options("diffusion", unknown, ("sampler", "steps", "eta", "use_ema"))
        sampler = sampler or self.config.sampler
        if sampler not in ("ddim", "ddpm", "dpmpp2m"):
            raise ConfigError(f"diffusion.sample: expected sampler 'ddim', 'ddpm' or 'dpmpp2m', got {sampler!r}")
        steps = self.T if sampler == "ddpm" else (steps or self.config.sampling_steps)
        eta = self.config.eta if eta is None else eta
        use_ema = self.config.use_ema if use_ema is None else use_ema
        self._last_sampling = {
            "sampler": sampler,
            "steps": steps,
            "eta": {"ddim": eta, "ddpm": 1.0}.get(sampler, 0.0),  # DPM-Solver++(2M) is deterministic
            "ema": use_ema,
        }
        net = self._denoiser(use_ema)
        with eval_mode(net):
            x = self._randn((n, *self.spec.shape), generator)  # x_T ~ N(0, I)
            if sampler == "ddpm":
                for t in reversed(range(self.T)):
                    x = self.ddpm_step(net, x, t, generator)
            elif sampler == "ddim":
                for t, t_next in self._ddim_times(steps):
                    x = self.ddim_step(net, x, t, t_next, eta=eta, generator=generator)
            else:
                x0_prev, h_prev = None, None
                for t, t_next in self._ddim_times(steps):
                    x, x0_prev, h_prev = self.dpm_solver_step(net, x, t, t_next, x0_prev=x0_prev, h_prev=h_prev)
        return self.from_model_space(x)

    def sampler_defaults(self) -> dict[str, Any]:
        """The config's sampler, steps and eta, so the registered model samples as the evaluation did."""
        c = self.config
        return {"sampler": c.sampler, "steps": c.sampling_steps, "eta": c.eta}

    def sampler_info(self) -> dict[str, Any]:
        """The sampler of the last ``sample`` call (else the config's defaults), plus the schedule."""
        c = self.config
        info = self._last_sampling or {
            "sampler": c.sampler,
            "steps": self.T if c.sampler == "ddpm" else c.sampling_steps,
            "eta": {"ddim": c.eta, "ddpm": 1.0}.get(c.sampler, 0.0),
            "ema": c.use_ema,
        }
        return {**info, "timesteps": self.T, "schedule": c.schedule, "objective": c.objective}

    # ----- inpainting
    @torch.no_grad()
    def inpaint(
        self,
        image: Tensor,
        mask: Tensor,
        *,
        generator: torch.Generator | None = None,
        steps: int | None = None,
        eta: float | None = None,
        resample: int | None = None,
        use_ema: bool | None = None,
    ) -> Tensor:
        """Fill the unknown pixels of ``image`` (n, C, H, W) in [0, 1]; ``mask`` is 1 where pixels are known.

        RePaint (Lugmayr et al. arXiv 2201.09865) on the DDIM time grid: after each reverse step the known
        pixels are replaced by a forward-diffused copy of the image, and each step is repeated ``resample``
        times by diffusing x_{t_next} back to x_t (jump length 1). ``resample=1`` is the plain replacement
        method. The known pixels of the result equal the input exactly (up to float rounding).
        """
        if image.dim() != 4 or tuple(image.shape[1:]) != tuple(self.spec.shape):
            raise ConfigError(
                f"diffusion.inpaint: expected images (n, {', '.join(map(str, self.spec.shape))}), "
                f"got {tuple(image.shape)}"
            )
        steps = steps or self.config.sampling_steps
        eta = self.config.eta if eta is None else eta
        resample = resample or self.config.inpaint_resample
        net = self._denoiser(use_ema)
        x0 = self.to_model_space(image.to(self.betas.device))  # (n, C, H, W) in [-1, 1]
        mask = mask.to(x0).expand_as(x0)
        times = self._ddim_times(steps, where="diffusion.inpaint")

        def known(t: int) -> Tensor:  # the known pixels diffused to time t (t = −1: the pixels themselves)
            if t < 0:
                return x0
            tt = torch.full((x0.shape[0],), t, device=x0.device, dtype=torch.long)
            return self.q_sample(x0, tt, self._randn(tuple(x0.shape), generator))

        with eval_mode(net):
            x = self._randn(tuple(x0.shape), generator)
            x = mask * known(times[0][0]) + (1 - mask) * x
            for t, t_next in times:
                for r in range(resample):
                    x_next = self.ddim_step(net, x, t, t_next, eta=eta, generator=generator)
                    x_next = mask * known(t_next) + (1 - mask) * x_next
                    if r == resample - 1 or t_next < 0:
                        break
                    # back to time t: q(x_t | x_{t_next}) = N(√(ᾱ_t/ᾱ_next) x_next, 1 − ᾱ_t/ᾱ_next)
                    ratio = self._alphas_cumprod[t] / self._alphas_cumprod[t_next]
                    x = math.sqrt(ratio) * x_next + math.sqrt(1 - ratio) * self._randn(tuple(x.shape), generator)
                x = x_next
        return self.from_model_space(mask * x0 + (1 - mask) * x)

    def evaluation_figures(self, real: Batch, *, generator: torch.Generator) -> dict[str, Tensor]:
        """``{"inpainting": (n, C, H, 3W+2)}``: each image is masked input | inpainted | original.

        The bottom half of up to 8 real images is hidden (shown grey) and filled in.
        """
        if self.spec.kind != "image":
            return {}
        x = real[0][:8].to(self.betas.device)  # (n, C, H, W)
        mask = torch.ones_like(x)
        mask[..., x.shape[-2] // 2 :, :] = 0
        result = self.inpaint(x, mask, generator=generator)
        sep = torch.ones_like(x[..., :1])  # (n, C, H, 1) white separator
        masked = x * mask + 0.5 * (1 - mask)
        return {"inpainting": torch.cat([masked, sep, result, sep, x], dim=-1)}

    # ----- likelihood
    def vb_terms(self, net: nn.Module, x0: Tensor, t: Tensor, noise: Tensor) -> Tensor:
        """Per-sample term L_t of the variational bound in nats (Ho et al. eq. 5), for x₀ in [-1, 1].

        t ≥ 1: KL(q(x_{t-1} | x_t, x₀) ‖ p(x_{t-1} | x_t)); t = 0: the discretized decoder −log p(x₀ | x₁).
        The reverse variance is fixed to β̃_t, the one the DDPM sampler uses.
        """
        x_t = self.q_sample(x0, t, noise)
        _, x0_hat = self.predict(net, x_t, t)
        coef1, coef2 = self._at(self.posterior_mean_coef1, t, x0), self._at(self.posterior_mean_coef2, t, x0)
        true_mean, model_mean = coef1 * x0 + coef2 * x_t, coef1 * x0_hat + coef2 * x_t
        logvar = self._at(self.posterior_log_variance_clipped, t, x0).expand_as(x0)
        kl = normal_kl(true_mean, logvar, model_mean, logvar).flatten(1).sum(1)  # (B,)
        half_bin = 1.0 / ((self.spec.levels or 256) - 1)  # levels on [0, 1] -> bins of width 2/(levels−1)
        decoder_nll = (
            -discretized_gaussian_log_likelihood(x0, mean=model_mean, log_scale=0.5 * logvar, half_bin=half_bin)
            .flatten(1)
            .sum(1)
        )  # (B,)
        return torch.where(t == 0, decoder_nll, kl)

    def prior_kl(self, x0: Tensor) -> Tensor:
        """KL(q(x_T | x₀) ‖ N(0, I)) per sample, in nats."""
        t = torch.full((x0.shape[0],), self.T - 1, device=x0.device, dtype=torch.long)
        mean = self._at(self.sqrt_alphas_cumprod, t, x0) * x0
        logvar = torch.log1p(-self._at(self.alphas_cumprod, t, x0)).expand_as(x0)
        return normal_kl(mean, logvar, torch.zeros_like(x0), torch.zeros_like(x0)).flatten(1).sum(1)

    @torch.no_grad()
    def likelihood(self, batch: Batch) -> dict[str, Tensor]:
        """Upper bound on the NLL (the ELBO, Ho et al. eq. 5) in bits/dim, for images only (points: ``{}``).

        L_0 + L_T exactly plus an unbiased one-sample estimate of the middle terms, (T−1)·L_t with
        t ~ U{1..T−1}, per image: two network calls per image. The estimate is noisy per image; averaging
        over a test split shrinks the noise. The data are taken as ``spec.levels`` intensity levels (256 if
        unknown) on [0, 1]. Uses the sampling weights (EMA by default) and the torch global RNG.
        """
        if self.spec.kind != "image":
            return {}
        x0 = self.to_model_space(batch[0].to(self.betas.device))  # (B, C, H, W)
        B = x0.shape[0]
        t0 = torch.zeros(B, device=x0.device, dtype=torch.long)
        t = torch.randint(1, self.T, (B,), device=x0.device)
        net = self._denoiser(None)
        with eval_mode(net):
            decoder = self.vb_terms(net, x0, t0, torch.randn_like(x0))  # (B,) nats
            middle = (self.T - 1) * self.vb_terms(net, x0, t, torch.randn_like(x0))  # (B,)
        nats = decoder + middle + self.prior_kl(x0)
        return {"nll_bits_per_dim": (nats / (x0[0].numel() * math.log(2))).mean()}


def build(config: DiffusionConfig, spec: DataSpec) -> GaussianDiffusion:
    """A :class:`Unet` for images (C, H, W) or an :class:`MLPDenoiser` for points (D,), in the objective."""
    if spec.kind == "image":
        if len(spec.shape) != 3:
            raise ConfigError(f"diffusion: expected image shape (C, H, W), got {spec.shape} ({spec.name})")
        net: nn.Module = Unet(
            channels=spec.shape[0],
            dim=config.dim,
            dim_mults=config.dim_mults,
            attn=config.attn,
            dropout=config.dropout,
            patch=config.patch,
        )
    elif spec.kind == "points":
        if len(spec.shape) != 1:
            raise ConfigError(f"diffusion: expected point shape (D,), got {spec.shape} ({spec.name})")
        net = MLPDenoiser(dim_in=spec.shape[0], dim=config.mlp_dim, depth=config.mlp_depth)
    else:
        raise ConfigError(f"diffusion: expected an 'image' or 'points' dataset, got kind {spec.kind!r} ({spec.name})")
    return GaussianDiffusion(net=net, spec=spec, config=config)
