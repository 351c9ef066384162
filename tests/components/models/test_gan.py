"""GAN family: network shapes, packing, the three losses against hand computations, alternating updates,
and a real two-process DistributedDataParallel run."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from pydantic import ValidationError
from torch import nn

from components.data.spec import DataSpec
from components.errors import ConfigError, DataError
from components.models.base import OptimConfig
from components.models.configs import GANConfig as Config
from components.models.gan import (
    GAN,
    FourierFeatures,
    build,
    diff_augment,
    discriminator_loss,
    generator_loss,
    gradient_penalty,
    pack_samples,
    r1_penalty,
)

POINTS = DataSpec(name="grid", kind="points", shape=(2,))
TINY = {"latent_dim": 4, "width": 8}


def image_spec(c: int, h: int, w: int) -> DataSpec:
    return DataSpec(name="img", kind="image", shape=(c, h, w))


def identity(m: nn.Module) -> nn.Module:
    return m


@pytest.mark.parametrize("shape", [(1, 8, 8), (1, 28, 28), (3, 32, 32), (3, 12, 20)])
@pytest.mark.parametrize("pack", [1, 3])
def test_image_shapes(shape: tuple[int, int, int], pack: int) -> None:
    torch.manual_seed(0)
    model = build(Config(**TINY, pack=pack), image_spec(*shape))
    x = model.sample(6, generator=torch.Generator().manual_seed(0))
    assert x.shape == (6, *shape)
    assert x.min() >= 0 and x.max() <= 1
    logits = model.discriminator(pack_samples(x, pack))
    assert logits.shape == (6 // pack,)


def test_points_shapes() -> None:
    model = build(Config(**TINY, g_depth=2, d_depth=2, maxout=5, pack=2), POINTS)
    x = model.sample(10)
    assert x.shape == (10, 2)
    assert model.discriminator(pack_samples(x, 2)).shape == (5,)
    assert model.discriminator.net[0].linear.in_features == 2 * 2  # m = 2 packed points of dimension 2


def test_fourier_features_are_computed_per_packed_sample() -> None:
    torch.manual_seed(0)
    packed = FourierFeatures(dim=2, features=3, scale=1.0, pack=2)
    single = FourierFeatures(dim=2, features=3, scale=1.0, pack=1)
    single.freqs.copy_(packed.freqs)
    x = torch.randn(4, 2)
    feats = packed(pack_samples(x, 2))  # (2, 2 * 6)
    assert torch.allclose(feats, single(x).view(2, 12))  # sample 2i's features, then sample 2i + 1's
    sin, cos = single(x).chunk(2, dim=1)
    assert torch.allclose(sin**2 + cos**2, torch.ones(4, 3))
    assert torch.allclose(sin, torch.sin(x @ single.freqs))
    model = build(Config(**TINY, fourier=5, pack=3), POINTS)
    assert model.discriminator(torch.randn(2, 6)).shape == (2,)


def test_pack_concatenates_consecutive_samples_along_channels() -> None:
    x = torch.arange(7 * 2 * 3 * 3, dtype=torch.float32).view(7, 2, 3, 3)  # (B=7, C=2, 3, 3)
    packed = pack_samples(x, 3)
    assert packed.shape == (2, 6, 3, 3)  # the 7th sample is dropped
    for i in range(2):
        for j in range(3):
            assert torch.equal(packed[i, 2 * j : 2 * j + 2], x[3 * i + j])
    pts = torch.arange(10.0).view(5, 2)
    assert torch.equal(pack_samples(pts, 2), torch.tensor([[0.0, 1, 2, 3], [4, 5, 6, 7]]))
    with pytest.raises(DataError, match="^gan: expected a batch of at least model.pack = 4 samples, got 3"):
        pack_samples(pts[:3], 4)


def test_losses_match_hand_computation() -> None:
    real, fake = torch.tensor([1.0, -2.0]), torch.tensor([0.5, 3.0])
    sp = lambda t: math.log1p(math.exp(t))  # noqa: E731  softplus
    ns_d = (sp(-1.0) + sp(2.0)) / 2 + (sp(0.5) + sp(3.0)) / 2  # -log σ(D(x)) - log(1 - σ(D(G(z))))
    assert discriminator_loss("ns", real, fake).item() == pytest.approx(ns_d, rel=1e-6)
    assert generator_loss("ns", fake).item() == pytest.approx((sp(-0.5) + sp(-3.0)) / 2, rel=1e-6)
    # hinge: mean(max(0, 1 - r)) + mean(max(0, 1 + f)) = (0 + 3) / 2 + (1.5 + 4) / 2
    assert discriminator_loss("hinge", real, fake).item() == pytest.approx(4.25)
    assert generator_loss("hinge", fake).item() == pytest.approx(-1.75)
    # wgan critic: mean(f) - mean(r) = 1.75 - (-0.5)
    assert discriminator_loss("wgan-gp", real, fake).item() == pytest.approx(2.25)
    assert generator_loss("wgan-gp", fake).item() == pytest.approx(-1.75)


@pytest.mark.parametrize(("scale", "expected"), [(3.0, 4.0), (1.0, 0.0), (0.5, 0.25)])
def test_gradient_penalty_of_a_linear_critic(scale: float, expected: float) -> None:
    critic = nn.Linear(4, 1, bias=False)
    with torch.no_grad():
        critic.weight.copy_(torch.tensor([[0.6, 0.8, 0.0, 0.0]]) * scale)  # ||grad D|| = scale everywhere
    penalty = gradient_penalty(lambda x: critic(x).squeeze(-1), torch.randn(16, 4), torch.randn(16, 4))
    assert penalty.item() == pytest.approx(expected, abs=1e-5)  # (||grad|| - 1)^2


def _snapshot(module: nn.Module) -> list[torch.Tensor]:
    return [p.detach().clone() for p in module.parameters()]


def _same(a: list[torch.Tensor], b: list[torch.Tensor]) -> bool:
    return all(torch.equal(x, y) for x, y in zip(a, b, strict=True))


@pytest.mark.parametrize(
    ("spec", "extra"),
    [
        (POINTS, {"loss": "ns", "pack": 2, "d_steps": 2}),
        (POINTS, {"loss": "hinge", "spectral_norm": True, "maxout": 3}),
        (POINTS, {"loss": "wgan-gp", "pack": 4}),
        (image_spec(1, 8, 8), {"loss": "ns", "pack": 2}),
        (image_spec(1, 8, 8), {"loss": "hinge", "spectral_norm": True}),
        (image_spec(1, 8, 8), {"loss": "wgan-gp"}),
        (
            image_spec(1, 8, 8),
            {"loss": "hinge", "diffaugment": ["color", "translation", "cutout"], "r1_gamma": 1.0, "ema_decay": 0.9},
        ),
    ],
)
def test_step_updates_each_network_only_with_its_own_optimizer(spec: DataSpec, extra: dict) -> None:
    torch.manual_seed(0)
    model = build(Config(**TINY, **extra), spec)
    step = model.make_train_step(wrap=identity, optim=OptimConfig(lr=1e-2))
    opt_d, opt_g = step.optimizers["opt_d"], step.optimizers["opt_g"]
    owned = lambda opt: {id(p) for g in opt.param_groups for p in g["params"]}  # noqa: E731
    assert owned(opt_d) == {id(p) for p in model.discriminator.parameters()}
    assert owned(opt_g) == {id(p) for p in model.generator.parameters()}

    calls = {"d": 0, "g": 0}

    def guard(opt: torch.optim.Optimizer, other: nn.Module, key: str) -> None:
        original = opt.step

        def checked_step(*args, **kwargs):
            before = _snapshot(other)
            result = original(*args, **kwargs)
            assert _same(before, _snapshot(other)), f"the {key} step changed the other network"
            calls[key] += 1
            return result

        opt.step = checked_step

    guard(opt_d, model.generator, "d")
    guard(opt_g, model.discriminator, "g")
    g0, d0 = _snapshot(model.generator), _snapshot(model.discriminator)
    x = torch.rand(8, *spec.shape)
    logs = step((x, torch.full((8,), -1)))
    assert calls == {"d": extra.get("d_steps", 1), "g": 1}
    assert not _same(g0, _snapshot(model.generator)) and not _same(d0, _snapshot(model.discriminator))
    expected = {"loss", "loss_d", "loss_g", "grad_norm_d", "grad_norm_g", "d_real", "d_fake"}
    expected |= {"penalty"} if extra["loss"] == "wgan-gp" else set()
    assert set(logs) == expected | ({"r1"} if extra.get("r1_gamma") else set())
    assert all(v.dim() == 0 and torch.isfinite(v) and not v.requires_grad for v in logs.values())
    assert logs["loss"].item() == pytest.approx(logs["loss_d"].item() + logs["loss_g"].item(), rel=1e-5)


def test_r1_penalty_of_a_linear_critic() -> None:
    critic = nn.Linear(4, 1, bias=False)
    with torch.no_grad():
        critic.weight.copy_(torch.tensor([[1.0, 2.0, 0.0, -2.0]]))  # ∇D = w everywhere: R1 = ||w||² = 9
    assert r1_penalty(lambda x: critic(x).squeeze(-1), torch.randn(16, 4)).item() == pytest.approx(9.0)


def test_diffaugment_translation_and_cutout_move_and_hide_pixels_differentiably() -> None:
    torch.manual_seed(0)
    x = torch.zeros(64, 1, 16, 16)
    x[:, :, 8, 8] = 1.0  # one bright pixel
    moved = diff_augment(x, ("translation",))  # shifts of at most 16 / 8 = 2 pixels, zero fill
    pos = moved.flatten(1).argmax(1)
    dy, dx = pos // 16 - 8, pos % 16 - 8
    assert torch.equal(moved.flatten(1).sum(1), torch.ones(64))  # the pixel stays inside: nothing lost
    assert (
        dy.abs().max() == 2
        and dx.abs().max() == 2
        and len({(a, b) for a, b in zip(dy.tolist(), dx.tolist(), strict=True)}) > 15
    )
    ones = torch.ones(64, 1, 16, 16)
    hidden = 256 - diff_augment(ones, ("cutout",)).flatten(1).sum(1)  # an 8x8 square, clipped at the edges
    assert hidden.max() == 64 and hidden.min() >= 16 and (hidden == 64).float().mean() > 0.2
    x = torch.rand(8, 3, 16, 16, requires_grad=True)
    diff_augment(x, ("color", "translation", "cutout")).sum().backward()
    assert x.grad is not None and x.grad.abs().sum() > 0  # G's gradient flows through the transform


def test_generator_ema_is_used_for_sampling_and_saved() -> None:
    torch.manual_seed(0)
    model = build(Config(**TINY, ema_decay=0.5, ema_start=1), image_spec(1, 8, 8))
    step = model.make_train_step(wrap=identity, optim=OptimConfig(lr=1e-2))
    x = (torch.rand(8, 1, 8, 8), torch.full((8,), -1))
    step(x)  # step 1 <= ema_start: a copy
    assert _same(_snapshot(model.g_ema), _snapshot(model.generator))
    before, g_before = _snapshot(model.g_ema), _snapshot(model.generator)
    step(x)
    expected = [0.5 * e + 0.5 * g for e, g in zip(before, _snapshot(model.generator), strict=True)]
    assert all(torch.allclose(a, b) for a, b in zip(_snapshot(model.g_ema), expected, strict=True))
    assert not _same(g_before, _snapshot(model.generator))
    seeded = lambda **kw: model.sample(4, generator=torch.Generator().manual_seed(1), **kw)  # noqa: E731
    assert torch.equal(seeded(), seeded(use_ema=True)) and not torch.equal(seeded(), seeded(use_ema=False))
    assert any(k.startswith("g_ema.") for k in model.state_dict()) and model.sampler_info()["ema"] is True
    plain = build(Config(**TINY), image_spec(1, 8, 8))
    with pytest.raises(ConfigError, match="^gan.sample: expected use_ema only for a model trained with ema_decay"):
        plain.sample(2, use_ema=True)
    assert not any(k.startswith("g_ema.") for k in plain.state_dict())


def test_forward_returns_both_losses_without_updating() -> None:
    torch.manual_seed(0)
    model = build(Config(**TINY, loss="wgan-gp", pack=2), POINTS)
    before = _snapshot(model)
    with torch.no_grad():  # the gradient penalty still works when evaluated without grad
        out = model((torch.randn(6, 2), torch.full((6,), -1)))
    assert out["loss"].item() == pytest.approx(out["loss_d"].item() + out["loss_g"].item(), rel=1e-5)
    assert out["penalty"].item() > 0 and _same(before, _snapshot(model))


def test_sampling_is_seeded_and_leaves_batchnorm_statistics_alone() -> None:
    torch.manual_seed(0)
    model = build(Config(**TINY), image_spec(1, 8, 8))
    model.train()
    buffers = [b.clone() for b in model.generator.buffers()]
    a = model.sample(5, generator=torch.Generator().manual_seed(3), batch_size=2)
    b = model.sample(5, generator=torch.Generator().manual_seed(3))
    assert torch.allclose(a, b, atol=1e-6)  # chunking does not change a sample
    assert _same(buffers, list(model.generator.buffers())) and model.generator.training
    with pytest.raises(ConfigError, match="batch_size"):
        model.sample(2, steps=10)


def test_spectral_norm_bounds_the_discriminator_layers() -> None:
    torch.manual_seed(0)
    model = build(Config(**TINY, spectral_norm=True, d_depth=2), POINTS)
    for _ in range(30):  # one power iteration per training-mode forward
        model.discriminator(torch.randn(4, 2))
    for layer in model.discriminator.modules():
        if isinstance(layer, nn.Linear):
            assert torch.linalg.matrix_norm(layer.weight.detach(), 2).item() == pytest.approx(1.0, abs=1e-3)


def test_config_and_build_errors() -> None:
    with pytest.raises(ValidationError):
        Config(loss="lsgan")
    with pytest.raises(ValidationError):
        Config(packing=2)
    with pytest.raises(ConfigError, match=r"^gan: expected an 'image' or 'points' dataset, got kind 'text' \(t\)"):
        build(Config(), DataSpec(name="t", kind="text", shape=(12,)))
    with pytest.raises(ConfigError, match="H, W >= 4"):
        build(Config(), image_spec(1, 2, 2))
    with pytest.raises(ValidationError):
        Config(diffaugment=["mixup"])
    with pytest.raises(ConfigError, match=r"^gan: expected diffaugment only for images, got it for points \(grid\)"):
        build(Config(diffaugment=["translation"]), POINTS)
    assert isinstance(build(Config(), image_spec(1, 8, 8)), GAN)


# ------------------------------------------------------------------------------------ data parallelism

DDP_CASES = [
    {"loss": "ns", "pack": 2, "d_steps": 2},
    {"loss": "wgan-gp", "spectral_norm": True, "fourier": 4},
    {"loss": "hinge", "r1_gamma": 1.0, "ema_decay": 0.9},  # R1's double backward through DDP; the EMA in sync
]


def _ddp_worker(rank: int, world: int, init_file: str) -> None:
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=world)
    torch.set_num_threads(1)
    try:
        for case in DDP_CASES:
            torch.manual_seed(0)  # same initial weights (DDP would broadcast rank 0's anyway)
            model = build(Config(latent_dim=2, width=8, g_depth=2, d_depth=2, **case), POINTS)
            step = model.make_train_step(
                wrap=lambda m: nn.parallel.DistributedDataParallel(m), optim=OptimConfig(lr=1e-2)
            )
            torch.manual_seed(100 + rank)  # each rank draws different data and noise
            before = _snapshot(model)
            for _ in range(2):  # an unused parameter would raise in the second step's forward
                logs = step((torch.randn(8, 2) + rank, torch.full((8,), -1)))
            # parameters and the logged grad norms agree; buffers (BatchNorm statistics) are rank-local
            # between forwards: DDP broadcasts rank 0's at the start of each forward
            state = [p.detach() for p in model.parameters()]
            state.append(torch.stack([logs["grad_norm_d"], logs["grad_norm_g"]]))
            for t in state:
                gathered = [torch.empty_like(t) for _ in range(world)]
                dist.all_gather(gathered, t.contiguous())
                assert torch.equal(gathered[0], gathered[1]), f"{case}: ranks disagree"
            assert not _same(before, _snapshot(model)), f"{case}: nothing was trained"
    finally:
        dist.destroy_process_group()


def test_two_process_ddp_keeps_both_networks_in_sync(tmp_path: Path) -> None:
    mp.spawn(_ddp_worker, args=(2, str(tmp_path / "rendezvous")), nprocs=2, join=True)
