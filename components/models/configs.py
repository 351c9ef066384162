"""Every family's hyperparameters (``experiments.<key>.model`` in params.yaml) as strict pydantic models.

Torch-free on purpose: params.yaml is validated by every stage, the report stage included, and importing a
family's networks (torch) costs seconds. The networks and objectives live in ``components/models/<family>.py``.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field, PositiveFloat, PositiveInt, model_validator

from components.schema import Strict


class FamilyConfig(Strict):
    """Base for a family's hyperparameters: strict (unknown keys and booleans-for-numbers refused), immutable."""


class VAEConfig(FamilyConfig):
    latent_dim: int = Field(16, gt=0)
    width: int = Field(32, gt=0, description="channels of the first conv layer")
    beta: float = Field(1.0, ge=0, description="weight of the KL term (β-VAE)")


GANLoss = Literal["ns", "hinge", "wgan-gp"]
DiffAugment = Literal["color", "translation", "cutout"]


class GANConfig(FamilyConfig):
    """GAN hyperparameters. Unset learning rates and betas fall back to the ``train`` section's."""

    latent_dim: PositiveInt = Field(64, description="size of the Gaussian latent z (PacGAN's 2-D MLPs: 2)")
    width: PositiveInt = Field(
        64, description="images: channels of the finest conv layer; points: discriminator hidden units"
    )
    g_width: PositiveInt | None = Field(None, description="points: generator hidden units (default: width)")
    g_depth: PositiveInt = Field(4, description="points: generator hidden layers")
    d_depth: PositiveInt = Field(3, description="points: discriminator hidden layers")
    maxout: PositiveInt = Field(1, description="points: maxout pieces per discriminator unit; 1 = LeakyReLU")
    fourier: int = Field(0, ge=0, description="points: random Fourier features per sample in D's input; 0 = off")
    fourier_scale: PositiveFloat = Field(2.0, description="points: std of the Fourier frequencies (1 / data unit)")
    loss: GANLoss = "ns"
    gp_weight: float = Field(10.0, ge=0, description="wgan-gp: gradient penalty weight (lambda)")
    spectral_norm: bool = Field(False, description="spectral normalisation of every discriminator layer")
    pack: PositiveInt = Field(1, description="PacGAN packing m: samples the discriminator judges at once")
    d_steps: PositiveInt = Field(1, description="discriminator steps per generator step (same real batch)")
    lr_d: PositiveFloat | None = Field(None, description="discriminator learning rate (default: train.lr)")
    lr_g: PositiveFloat | None = Field(None, description="generator learning rate (default: train.lr)")
    betas: tuple[float, float] | None = Field(None, description="Adam betas (default: train.betas)")
    init_std: PositiveFloat | None = Field(0.02, description="N(0, std) weight init; None: PyTorch default")
    # small-data recipes (images); all off by default
    diffaugment: tuple[DiffAugment, ...] = Field(
        (), description="DiffAugment policy (arXiv 2006.10738) for reals and fakes before D, e.g. [translation, cutout]"
    )
    r1_gamma: float = Field(0.0, ge=0, description="R1 penalty weight γ: γ/2·E||∇D(x_real)||² (arXiv 1801.04406)")
    ema_decay: float | None = Field(
        None, gt=0, lt=1, description="EMA of the generator's weights, used for sampling (arXiv 1806.04498)"
    )
    ema_start: int = Field(0, ge=0, description="generator steps during which the EMA just copies the weights")


class PixelCNNConfig(FamilyConfig):
    levels: int | None = Field(None, ge=2, description="intensity levels (None: the dataset's own)")
    dim: int = Field(64, ge=1, description="channels of each stack")
    n_layers: int = Field(8, ge=1, description="gated layers; the first is mask type A, the rest type B")
    kernel_size: int = Field(5, ge=3, description="odd")
    head_dim: int = Field(128, ge=1, description="hidden channels of the 1×1 output head")


class GPTConfig(FamilyConfig):
    n_layer: int = Field(4, ge=1)
    n_head: int = Field(4, ge=1)
    n_embd: int = Field(128, ge=1)
    dropout: float = Field(0.0, ge=0, lt=1)
    bias: bool = True


DiffusionSampler = Literal["ddim", "ddpm", "dpmpp2m"]  # dpmpp2m: DPM-Solver++(2M), arXiv 2211.01095


class DiffusionConfig(FamilyConfig):
    """Hyperparameters of the diffusion family (``experiments.<key>.model`` in params.yaml)."""

    # network: Unet for images, MLPDenoiser for points
    dim: PositiveInt = Field(32, description="Unet base channels")
    dim_mults: tuple[PositiveInt, ...] = Field((1, 2, 2), min_length=1, description="channel multiplier per level")
    patch: PositiveInt = Field(1, description="Unet runs at 1/patch resolution (space-to-depth at the input)")
    attn: bool = Field(True, description="self-attention in the Unet's middle (lowest resolution)")
    dropout: float = Field(0.0, ge=0, lt=1)
    mlp_dim: PositiveInt = Field(128, description="MLPDenoiser width (points)")
    mlp_depth: PositiveInt = Field(3, description="MLPDenoiser residual blocks (points)")
    point_scale: float = Field(1.0, gt=0, description="points are diffused as x / point_scale")
    # diffusion
    timesteps: int = Field(1000, ge=2)
    schedule: Literal["linear", "cosine"] = "cosine"
    objective: Literal["eps", "v"] = "eps"
    min_snr_gamma: float | None = Field(None, gt=0, description="Min-SNR-γ loss weighting (None: L_simple)")
    ema_decay: float = Field(0.995, ge=0, le=1)
    ema_start: int = Field(0, ge=0, description="optimizer steps during which the EMA just copies the weights")
    # sampling defaults (evaluate.sampler and sample(**options) override them)
    sampler: DiffusionSampler = "ddim"
    sampling_steps: PositiveInt = 50
    eta: float = Field(0.0, ge=0)
    use_ema: bool = True
    inpaint_resample: PositiveInt = Field(5, description="RePaint resampling rounds per step (1: replacement)")

    @model_validator(mode="after")
    def _steps_fit(self) -> DiffusionConfig:
        if self.sampling_steps > self.timesteps:
            raise ValueError(f"expected sampling_steps <= timesteps = {self.timesteps}, got {self.sampling_steps}")
        return self


WaveNetSampler = Literal["cached", "naive"]
WaveNetInput = Literal["embedding", "scalar"]


class WaveNetConfig(FamilyConfig):
    """Hyperparameters of the WaveNet family (arXiv 1609.03499); the receptive field is
    ``dilation_cycles × (2^layers_per_cycle − 1) × (kernel_size − 1) + 1`` samples."""

    residual_channels: PositiveInt = Field(32, description="channels of the residual stream (and of each gate)")
    skip_channels: PositiveInt = Field(64, description="channels of the skip connections and the output head")
    dilation_cycles: PositiveInt = Field(2, description="stacks of dilated layers (dilations 1, 2, 4, ... each)")
    layers_per_cycle: int = Field(8, ge=1, le=16, description="layers per stack: dilations 1 .. 2^(layers - 1)")
    kernel_size: int = Field(2, ge=2, le=8, description="taps of each causal dilated convolution")
    mu: int = Field(255, ge=1, le=1023, description="mu-law companding: a softmax over mu + 1 levels")
    conditional: bool = Field(False, description="global conditioning on the class label (§2.5)")
    condition_on: list[str] = Field(
        default_factory=list,
        description="further per-sample attributes of the dataset (the notes' timbre) to condition on beside the "
        "class, one embedding each, summed into the global bias (§2.5); needs conditional: true",
    )
    input: WaveNetInput = Field(
        "embedding",
        description="what a layer sees of each past sample: embedding: a learned vector per mu-law level (the "
        "paper's one-hot times a matrix); scalar: a linear map of the level's companded value and amplitude",
    )
    train_crop: PositiveInt | None = Field(
        None, description="train on windows of this many samples (half of the batches from the clip's start)"
    )
    # sampling defaults (evaluate.sampler and sample(**options) override them)
    sampler: WaveNetSampler = Field("cached", description="cached: Fast WaveNet queues; naive: recompute")
    temperature: PositiveFloat = Field(
        1.0,
        description="softmax temperature of each sample's draw (default 1: the model's own distribution); below 1 "
        "sharpens it, as FFTNet's conditional sampling multiplies the logits of voiced sounds by a constant c "
        "(Jin et al., ICASSP 2018; c = 1 / temperature)",
    )
