"""GAN family: DCGAN-style conv networks for images, MLPs for 2-D points, and the adversarial objective.

- GAN and the non-saturating generator loss: Goodfellow et al., arXiv 1406.2661.
- DCGAN architecture and initialisation: Radford et al., arXiv 1511.06434.
- Hinge loss: Lim & Ye, arXiv 1705.02894 (as used by SAGAN, arXiv 1805.08318).
- WGAN-GP: Gulrajani et al., arXiv 1704.00028.
- Spectral normalisation: Miyato et al., arXiv 1802.05957.
- Packing (PacGAN): Lin et al., arXiv 1712.04086; the discriminator judges m samples at once.
- Small data: DiffAugment (Zhao et al., arXiv 2006.10738), the R1 penalty (Mescheder et al., arXiv 1801.04406),
  an EMA of the generator's weights for sampling (Yazıcı et al., arXiv 1806.04498) and two learning rates
  (TTUR, Heusel et al., arXiv 1706.08500: ``lr_d`` / ``lr_g``).

Training alternates ``d_steps`` discriminator steps with one generator step, each with its own optimiser;
the generator and the discriminator are wrapped for data parallelism separately (see
:meth:`GAN.make_train_step`).
"""

from __future__ import annotations

import copy
import math
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from components.data.spec import DataSpec
from components.errors import ConfigError, DataError
from components.models.base import (
    Batch,
    GenerativeModel,
    OptimConfig,
    TrainStep,
    Wrap,
    autocast,
    ema_update,
    eval_mode,
    grad_norm,
    reject_options,
)
from components.models.configs import GANConfig, GANLoss

# ---------------------------------------------------------------------------------------------- losses


def discriminator_loss(kind: GANLoss, real: Tensor, fake: Tensor) -> Tensor:
    """Discriminator loss from logits (critic values) on real and generated (packed) samples."""
    if kind == "ns":  # -log sigmoid(D(x)) - log(1 - sigmoid(D(G(z)))), arXiv 1406.2661
        return F.softplus(-real).mean() + F.softplus(fake).mean()
    if kind == "hinge":  # arXiv 1705.02894
        return F.relu(1.0 - real).mean() + F.relu(1.0 + fake).mean()
    return fake.mean() - real.mean()  # Wasserstein critic loss (penalty added separately), arXiv 1704.00028


def generator_loss(kind: GANLoss, fake: Tensor) -> Tensor:
    """Generator loss from the discriminator's logits on generated (packed) samples."""
    if kind == "ns":  # non-saturating: -log sigmoid(D(G(z))), arXiv 1406.2661 §3
        return F.softplus(-fake).mean()
    return -fake.mean()  # hinge and WGAN share the generator loss


def gradient_penalty(critic: nn.Module, real: Tensor, fake: Tensor) -> Tensor:
    """WGAN-GP penalty E[(||grad D(x_hat)||_2 - 1)^2] on random interpolates (arXiv 1704.00028, Alg. 1)."""
    real, fake = real.float(), fake.float()
    eps = torch.rand(real.shape[0], *([1] * (real.dim() - 1)), device=real.device)  # (B, 1, ...)
    # grad enabled also when called for evaluation under no_grad; float32: bf16 second derivatives are coarse
    with torch.enable_grad(), autocast(real, False):
        x_hat = (eps * real + (1 - eps) * fake).detach().requires_grad_(True)
        (grads,) = torch.autograd.grad(critic(x_hat).sum(), x_hat, create_graph=True)
    return (grads.flatten(1).norm(dim=1) - 1).pow(2).mean()


def r1_penalty(critic: nn.Module, real: Tensor) -> Tensor:
    """R1 = E[||∇_x D(x)||²] on real (packed) inputs (Mescheder et al., arXiv 1801.04406, eq. 9; weight γ/2)."""
    with torch.enable_grad(), autocast(real, False):  # float32: bf16 second derivatives are coarse
        x = real.float().detach().requires_grad_(True)
        (grads,) = torch.autograd.grad(critic(x).sum(), x, create_graph=True)
    return grads.flatten(1).pow(2).sum(1).mean()


# ------------------------------------------------------------------------------------ DiffAugment


def diff_augment(x: Tensor, policy: tuple[str, ...]) -> Tensor:
    """Random differentiable transforms of images in [0, 1], (B, C, H, W), applied to reals *and* fakes before
    every discriminator call, in D's and in G's step (DiffAugment, Zhao et al. arXiv 2006.10738 §3.2), so D
    never sees an un-augmented image and G's gradient flows through the same transform. The policies follow
    the paper's code: color (brightness ±0.5, saturation ×[0, 2], contrast ×[0.5, 1.5], in [-1, 1] units),
    translation (up to 1/8 of the size) and cutout (a square of half the size). Deviation: translation and
    cutout fill with 0 of [0, 1] (the digits' black background), not 0 of [-1, 1] (mid-grey)."""
    for name in policy:
        x = _AUGMENTS[name](x)
    return x


def _rand(x: Tensor) -> Tensor:
    return torch.rand(x.shape[0], 1, 1, 1, device=x.device, dtype=x.dtype)  # (B, 1, 1, 1)


def _color(x: Tensor) -> Tensor:
    x = x + (_rand(x) - 0.5) / 2  # brightness ±0.5 in [-1, 1] units = ±0.25 here
    if x.shape[1] == 3:  # saturation: grey images have none
        mean = x.mean(dim=1, keepdim=True)
        x = (x - mean) * (_rand(x) * 2) + mean
    mean = x.mean(dim=(1, 2, 3), keepdim=True)
    return (x - mean) * (_rand(x) + 0.5) + mean  # contrast


def _translation(x: Tensor, ratio: float = 0.125) -> Tensor:
    b, _, h, w = x.shape
    sh, sw = int(h * ratio + 0.5), int(w * ratio + 0.5)
    dy = torch.randint(-sh, sh + 1, (b, 1), device=x.device)  # (B, 1)
    dx = torch.randint(-sw, sw + 1, (b, 1), device=x.device)
    rows = torch.arange(h, device=x.device)[None] + sh - dy  # (B, H): out[r] = in[r - dy]
    cols = torch.arange(w, device=x.device)[None] + sw - dx  # (B, W)
    padded = F.pad(x, (sw, sw, sh, sh)).permute(0, 2, 3, 1)  # (B, H + 2sh, W + 2sw, C)
    batch = torch.arange(b, device=x.device)[:, None, None]  # (B, 1, 1)
    return padded[batch, rows[:, :, None], cols[:, None, :]].permute(0, 3, 1, 2)  # (B, C, H, W)


def _cutout(x: Tensor, ratio: float = 0.5) -> Tensor:
    b, _, h, w = x.shape
    ch, cw = int(h * ratio + 0.5), int(w * ratio + 0.5)
    cy = torch.randint(0, h + (1 - ch % 2), (b, 1), device=x.device) - ch // 2  # (B, 1) top edge
    cx = torch.randint(0, w + (1 - cw % 2), (b, 1), device=x.device) - cw // 2
    r, c = torch.arange(h, device=x.device)[None], torch.arange(w, device=x.device)[None]  # (1, H), (1, W)
    in_r, in_c = (r >= cy) & (r < cy + ch), (c >= cx) & (c < cx + cw)  # (B, H), (B, W)
    keep = ~(in_r[:, :, None] & in_c[:, None, :])  # (B, H, W)
    return x * keep[:, None].to(x.dtype)


_AUGMENTS = {"color": _color, "translation": _translation, "cutout": _cutout}


def pack_samples(x: Tensor, m: int) -> Tensor:
    """Concatenate groups of ``m`` consecutive samples along the channel / feature axis (PacGAN).

    (B, C, H, W) -> (B // m, m * C, H, W); (B, D) -> (B // m, m * D). A remainder of ``B mod m`` samples is
    dropped.
    """
    if x.shape[0] < m:
        raise DataError(f"gan: expected a batch of at least model.pack = {m} samples, got {x.shape[0]}")
    b = x.shape[0] // m * m
    return x[:b].reshape(b // m, m * x.shape[1], *x.shape[2:])


# -------------------------------------------------------------------------------------------- networks


def _sn(layer: nn.Module, on: bool) -> nn.Module:
    return nn.utils.parametrizations.spectral_norm(layer) if on else layer  # arXiv 1802.05957


class Maxout(nn.Module):
    """Linear layer whose units are the max of ``pieces`` affine maps (maxout, arXiv 1302.4389)."""

    def __init__(self, *, dim_in: int, dim_out: int, pieces: int, spectral_norm: bool = False):
        super().__init__()
        self.pieces = pieces
        self.linear = _sn(nn.Linear(dim_in, dim_out * pieces), spectral_norm)

    def forward(self, x: Tensor) -> Tensor:
        y = self.linear(x)  # (B, out * k)
        return y.view(*y.shape[:-1], -1, self.pieces).amax(-1)  # (B, out)


class MLPGenerator(nn.Module):
    """z -> point: ``depth`` hidden layers of Linear + BatchNorm + ReLU, linear output (PacGAN's 2-D G)."""

    def __init__(self, *, latent_dim: int, dim: int, width: int, depth: int):
        super().__init__()
        layers: list[nn.Module] = []
        for i in range(depth):  # bias-free before BatchNorm, as in PacGAN's 2DGrid code
            d_in = latent_dim if i == 0 else width
            layers += [nn.Linear(d_in, width, bias=False), nn.BatchNorm1d(width), nn.ReLU()]
        self.net = nn.Sequential(*layers, nn.Linear(width, dim))

    def forward(self, z: Tensor) -> Tensor:
        return self.net(z)  # (B, D)


class FourierFeatures(nn.Module):
    """Fixed random Fourier features of each packed point: x -> [sin(xB), cos(xB)], B ~ N(0, scale^2).

    A ReLU MLP on raw 2-D coordinates learns high frequencies slowly (spectral bias; Tancik et al., arXiv
    2006.10739, features after Rahimi & Recht 2007), so a plain MLP discriminator needs many thousands of
    steps to see the 0.05-wide modes of grid25. Features are computed per sample and concatenated, so a
    packed input stays m samples side by side.
    """

    def __init__(self, *, dim: int, features: int, scale: float, pack: int):
        super().__init__()
        self.dim, self.pack = dim, pack
        self.register_buffer("freqs", torch.randn(dim, features) * scale)  # (D, F)

    def forward(self, x: Tensor) -> Tensor:
        proj = x.view(x.shape[0], self.pack, self.dim) @ self.freqs  # (N, m, F)
        return torch.cat([proj.sin(), proj.cos()], dim=-1).flatten(1)  # (N, m * 2F)


class MLPDiscriminator(nn.Module):
    """Packed points -> one logit: optional Fourier features, ``depth`` maxout (or LeakyReLU) hidden layers,
    linear output."""

    def __init__(
        self,
        *,
        dim: int,
        width: int,
        depth: int,
        maxout: int,
        pack: int,
        spectral_norm: bool,
        fourier: int = 0,
        fourier_scale: float = 2.0,
    ):
        super().__init__()
        layers: list[nn.Module] = []
        if fourier:
            layers.append(FourierFeatures(dim=dim, features=fourier, scale=fourier_scale, pack=pack))
            dim = 2 * fourier
        for i in range(depth):
            d_in = dim * pack if i == 0 else width
            if maxout > 1:  # PacGAN's D: 3 maxout layers of 200 units with 5 pieces
                layers.append(Maxout(dim_in=d_in, dim_out=width, pieces=maxout, spectral_norm=spectral_norm))
            else:
                layers += [_sn(nn.Linear(d_in, width), spectral_norm), nn.LeakyReLU(0.2)]
        self.net = nn.Sequential(*layers, _sn(nn.Linear(width, 1), spectral_norm))

    def forward(self, x: Tensor) -> Tensor:
        return self.net(x).squeeze(-1)  # (B // m,)


def _stages(h: int, w: int) -> int:
    """Number of 2x up/down-sampling stages: the coarsest map is 4..7 pixels on its shorter side."""
    return max(0, int(math.floor(math.log2(min(h, w) / 4))))


class Generator(nn.Module):
    """DCGAN generator (arXiv 1511.06434): z -> (C, H, W) in [0, 1].

    A linear layer makes a coarse map of ``ceil(H / 2^n) x ceil(W / 2^n)``, ``n`` transposed convolutions
    double it (halving the channels down to ``width``), and a centre crop gives exactly (H, W):
    8x8 digits: 4x4 -> 8x8; 28x28 MNIST: 7x7 -> 14x14 -> 28x28; 32x32: 4 -> 8 -> 16 -> 32.
    """

    def __init__(self, *, latent_dim: int, shape: tuple[int, int, int], width: int):
        super().__init__()
        c, self.h, self.w = shape
        n = _stages(self.h, self.w)
        self.base = (math.ceil(self.h / 2**n), math.ceil(self.w / 2**n))
        self.ch = width * 2**n
        self.project = nn.Sequential(
            nn.Linear(latent_dim, self.ch * self.base[0] * self.base[1], bias=False),
            nn.Unflatten(1, (self.ch, *self.base)),
            nn.BatchNorm2d(self.ch),
            nn.ReLU(),
        )
        ups: list[nn.Module] = []
        for i in range(n):
            ch_in = self.ch // 2**i
            ups += [
                nn.ConvTranspose2d(ch_in, ch_in // 2, 4, 2, 1, bias=False),
                nn.BatchNorm2d(ch_in // 2),
                nn.ReLU(),
            ]
        self.ups = nn.Sequential(*ups)
        self.out = nn.Conv2d(width, c, 3, padding=1)

    def forward(self, z: Tensor) -> Tensor:
        x = self.ups(self.project(z))  # (B, width, base_h * 2^n, base_w * 2^n)
        top, left = (x.shape[2] - self.h) // 2, (x.shape[3] - self.w) // 2
        x = x[:, :, top : top + self.h, left : left + self.w]  # (B, width, H, W)
        return torch.sigmoid(self.out(x))  # (B, C, H, W) in [0, 1]


class Discriminator(nn.Module):
    """DCGAN discriminator: strided convolutions with LeakyReLU(0.2), no BatchNorm (WGAN-GP and packing need
    per-sample outputs), then a linear layer to one logit. Input: m packed images, (B // m, m * C, H, W)."""

    def __init__(self, *, shape: tuple[int, int, int], width: int, pack: int, spectral_norm: bool):
        super().__init__()
        c, h, w = shape
        n = max(1, _stages(h, w))
        layers: list[nn.Module] = []
        ch_in = c * pack
        for i in range(n):
            layers += [_sn(nn.Conv2d(ch_in, width * 2**i, 4, 2, 1), spectral_norm), nn.LeakyReLU(0.2)]
            ch_in, h, w = width * 2**i, h // 2, w // 2
        self.features = nn.Sequential(*layers, nn.Flatten())
        self.head = _sn(nn.Linear(ch_in * h * w, 1), spectral_norm)

    def forward(self, x: Tensor) -> Tensor:
        return self.head(self.features(x)).squeeze(-1)  # (B // m,)


def _init_weights(module: nn.Module, std: float) -> None:
    """DCGAN initialisation: N(0, std) weights, zero biases (arXiv 1511.06434 §4; PacGAN uses std 0.02)."""
    for m in module.modules():
        if isinstance(m, nn.Linear | nn.Conv2d | nn.ConvTranspose2d):
            sn = nn.utils.parametrize.is_parametrized(m, "weight")  # spectral norm: init the raw weight
            nn.init.normal_(m.parametrizations.weight.original if sn else m.weight, 0.0, std)
            if m.bias is not None:
                nn.init.zeros_(m.bias)


# ------------------------------------------------------------------------------------------- objective


class GAN(GenerativeModel):
    """Adversarial objective around a generator and a (packed) discriminator."""

    family = "gan"

    def __init__(self, *, spec: DataSpec, config: GANConfig):
        super().__init__(spec=spec, config=config)
        self.cfg = config
        if spec.kind == "points":
            (dim,) = spec.shape
            self.generator: nn.Module = MLPGenerator(
                latent_dim=config.latent_dim,
                dim=dim,
                width=config.g_width or config.width,
                depth=config.g_depth,
            )
            self.discriminator: nn.Module = MLPDiscriminator(
                dim=dim,
                width=config.width,
                depth=config.d_depth,
                maxout=config.maxout,
                fourier=config.fourier,
                fourier_scale=config.fourier_scale,
                pack=config.pack,
                spectral_norm=config.spectral_norm,
            )
        else:
            shape = (spec.shape[0], spec.shape[1], spec.shape[2])
            self.generator = Generator(latent_dim=config.latent_dim, shape=shape, width=config.width)
            self.discriminator = Discriminator(
                shape=shape, width=config.width, pack=config.pack, spectral_norm=config.spectral_norm
            )
        if config.init_std is not None:
            _init_weights(self.generator, config.init_std)
            _init_weights(self.discriminator, config.init_std)
        if config.ema_decay is not None:  # saved as g_ema.*; DDP ignores it (no grad)
            self.g_ema = copy.deepcopy(self.generator).requires_grad_(False)
            self.register_buffer("g_steps", torch.zeros((), dtype=torch.long))

    def noise(self, n: int, *, generator: torch.Generator | None = None) -> Tensor:
        """Latent codes z ~ N(0, I), (n, latent_dim), on the model's device."""
        z = torch.randn(n, self.cfg.latent_dim, generator=generator)
        return z.to(next(self.parameters()).device)

    def _augment(self, x: Tensor) -> Tensor:
        return diff_augment(x, self.cfg.diffaugment) if self.cfg.diffaugment else x

    def _d_objective(self, d: nn.Module, real: Tensor, fake: Tensor) -> dict[str, Tensor]:
        """Discriminator loss on packed (augmented) reals and fakes; one forward of ``d`` over both."""
        m = self.cfg.pack
        real_p = pack_samples(self._augment(real), m)  # (B // m, m * C, ...)
        fake_p = pack_samples(self._augment(fake), m)
        logits = d(torch.cat([real_p, fake_p])).float()  # (2 * B // m,)
        real_l, fake_l = logits.chunk(2)
        loss = discriminator_loss(self.cfg.loss, real_l, fake_l)
        out = {"loss_d": loss, "d_real": real_l.mean(), "d_fake": fake_l.mean()}
        if self.cfg.loss == "wgan-gp":
            out["penalty"] = gradient_penalty(d, real_p, fake_p)
            out["loss_d"] = loss + self.cfg.gp_weight * out["penalty"]
        if self.cfg.r1_gamma > 0:
            out["r1"] = r1_penalty(d, real_p)
            out["loss_d"] = out["loss_d"] + self.cfg.r1_gamma / 2 * out["r1"]
        return out

    def forward(self, batch: Batch) -> dict[str, Tensor]:
        """Both players' losses on one batch: ``loss = loss_d + loss_g`` (no parameter update)."""
        real = batch[0]
        fake = self.generator(self.noise(real.shape[0]))
        out = self._d_objective(self.discriminator, real, fake.detach())
        logits = self.discriminator(pack_samples(self._augment(fake), self.cfg.pack))
        out["loss_g"] = generator_loss(self.cfg.loss, logits)
        return {"loss": out["loss_d"] + out["loss_g"], **out}

    @torch.no_grad()
    def after_step(self) -> None:
        """Generator EMA: θ_ema ← d·θ_ema + (1−d)·θ after each generator step, a copy for the first
        ``ema_start`` steps; BatchNorm's running statistics are copied (as StyleGAN's Gs does)."""
        if self.cfg.ema_decay is None:
            return
        self.g_steps += 1
        weight = torch.where(self.g_steps <= self.cfg.ema_start, 1.0, 1.0 - self.cfg.ema_decay)
        ema_update(self.g_ema, self.generator, weight)

    def _sampling_generator(self, use_ema: bool | None) -> nn.Module:
        ema = self.cfg.ema_decay is not None if use_ema is None else use_ema
        if ema and self.cfg.ema_decay is None:
            raise ConfigError("gan.sample: expected use_ema only for a model trained with ema_decay, got use_ema=True")
        return self.g_ema if ema else self.generator

    def make_train_step(self, *, wrap: Wrap, optim: OptimConfig) -> TrainStep:
        """Alternating updates: ``d_steps`` discriminator steps, then one generator step.

        ``wrap`` is applied to the generator and the discriminator separately, so each data-parallel wrapper
        sees every one of its parameters receive a gradient in each of its backward passes (no unused
        parameters). The discriminator step runs the wrapped D on reals and detached fakes; the generator
        step runs the wrapped G through the *unwrapped* D: D's gradients from that pass are thrown away at
        the next D step, so they need no all-reduce. Logged: ``loss = loss_d + loss_g``, both losses, both
        gradient norms (after the all-reduce, so identical on every rank), mean logits and, for wgan-gp, the
        penalty. With ``d_steps > 1`` the values of the last D step are logged.
        """
        cfg = self.cfg
        g, d = wrap(self.generator), wrap(self.discriminator)
        betas = cfg.betas or optim.betas
        wd = optim.weight_decay
        opt_d = torch.optim.AdamW(
            self.discriminator.parameters(), lr=cfg.lr_d or optim.lr, betas=betas, weight_decay=wd
        )
        opt_g = torch.optim.AdamW(self.generator.parameters(), lr=cfg.lr_g or optim.lr, betas=betas, weight_decay=wd)

        def step(batch: Batch) -> dict[str, Tensor]:
            real = batch[0]
            n = real.shape[0] // cfg.pack * cfg.pack
            for _ in range(cfg.d_steps):
                with torch.no_grad(), autocast(real, optim.amp):
                    fake = g(self.noise(n))  # (n, ...) no graph into G
                with autocast(real, optim.amp):
                    out = self._d_objective(d, real[:n], fake)
                opt_d.zero_grad(set_to_none=True)
                out["loss_d"].backward()
                out["grad_norm_d"] = grad_norm(self.discriminator.parameters(), optim.grad_clip)
                opt_d.step()

            with autocast(real, optim.amp):
                fake = g(self.noise(n))  # (n, ...)
                logits = self.discriminator(pack_samples(self._augment(fake), cfg.pack)).float()
                loss_g = generator_loss(cfg.loss, logits)
            opt_g.zero_grad(set_to_none=True)
            loss_g.backward()
            out["grad_norm_g"] = grad_norm(self.generator.parameters(), optim.grad_clip)
            opt_g.step()
            self.after_step()
            out["loss_g"] = loss_g
            out["loss"] = out["loss_d"] + loss_g
            return {k: v.detach() for k, v in out.items()}

        return TrainStep(step, {"opt_d": opt_d, "opt_g": opt_g})

    @torch.no_grad()
    def sample(self, n: int, *, generator: torch.Generator | None = None, **options: Any) -> Tensor:
        """``n`` samples (images in [0, 1] or points), drawn in chunks of ``batch_size`` (default 500) with
        BatchNorm's running statistics, so a sample does not depend on the others in its chunk."""
        batch_size = int(options.pop("batch_size", 500))
        net = self._sampling_generator(options.pop("use_ema", None))
        reject_options("gan", options, ("batch_size", "use_ema"))
        z = self.noise(n, generator=generator)  # (n, latent_dim)
        with eval_mode(net):
            return torch.cat([net(zc) for zc in z.split(batch_size)]).float()

    @torch.no_grad()
    def evaluation_figures(self, real: Batch, *, generator: torch.Generator) -> dict[str, Tensor]:
        """Images: linear latent interpolations, 8 rows of 8 steps between two random codes."""
        if self.spec.kind != "image":
            return {}
        z0, z1 = self.noise(8, generator=generator), self.noise(8, generator=generator)  # (8, latent)
        t = torch.linspace(0, 1, 8, device=z0.device)[None, :, None]  # (1, 8, 1)
        z = (z0[:, None] * (1 - t) + z1[:, None] * t).flatten(0, 1)  # (64, latent)
        net = self._sampling_generator(None)
        with eval_mode(net):
            return {"latent_interpolation": net(z).float()}

    def sampler_info(self) -> dict[str, Any]:
        return {
            "sampler": "generator forward pass",
            "latent": f"N(0, I_{self.cfg.latent_dim})",
            "batchnorm": "running statistics",
            "ema": self.cfg.ema_decay is not None,
            "diffaugment": list(self.cfg.diffaugment),
        }


def build(config: GANConfig, spec: DataSpec) -> GAN:
    """A GAN for an image dataset (C, H, W) or a points dataset (D,)."""
    if spec.kind == "points" and len(spec.shape) != 1:
        raise ConfigError(f"gan: expected points of shape (D,), got {spec.shape} ({spec.name})")
    if spec.kind == "image" and (len(spec.shape) != 3 or min(spec.shape[1:]) < 4):
        raise ConfigError(f"gan: expected images of shape (C, H, W) with H, W >= 4, got {spec.shape} ({spec.name})")
    if spec.kind not in ("image", "points"):
        raise ConfigError(f"gan: expected an 'image' or 'points' dataset, got kind {spec.kind!r} ({spec.name})")
    if config.diffaugment and spec.kind != "image":
        raise ConfigError(f"gan: expected diffaugment only for images, got it for {spec.kind} ({spec.name})")
    return GAN(spec=spec, config=config)
