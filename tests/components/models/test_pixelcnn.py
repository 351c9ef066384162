import math

import pytest
import torch

from components.data.spec import DataSpec
from components.errors import ConfigError
from components.models import build_model
from components.models.base import OptimConfig
from components.models.configs import PixelCNNConfig as Config
from components.models.pixelcnn import build, dequantise, quantise

SPEC = DataSpec(name="t", kind="image", shape=(1, 6, 5), levels=17)
TINY = {"dim": 8, "n_layers": 4, "kernel_size": 3, "head_dim": 16}


def _model(spec: DataSpec = SPEC, **overrides) -> torch.nn.Module:
    torch.manual_seed(0)
    return build(Config(**{**TINY, **overrides}), spec)


def _images(n: int, spec: DataSpec = SPEC, levels: int = 17) -> torch.Tensor:
    g = torch.Generator().manual_seed(1)
    return dequantise(torch.randint(0, levels, (n, *spec.shape), generator=g), levels)


@pytest.mark.parametrize("channels", [1, 3])
def test_masks_are_causal_in_raster_order(channels):
    """d logits(pixel i) / d input(pixel j) is zero for j >= i, and non-zero for j < i (no blind spot)."""
    spec = DataSpec(name="t", kind="image", shape=(channels, 5, 5), levels=4)
    net = _model(spec, levels=4, n_layers=5).net.double()
    x = torch.randint(0, 4, (1, *spec.shape))
    e = net.embed(x).detach().requires_grad_()  # (1, D, H, W): the input, as features
    logits = net.forward_embedded(e)  # (1, L, C, H, W)
    H, W = spec.shape[1:]
    for i in range(H * W):
        (grad,) = torch.autograd.grad(logits[..., i // W, i % W].sum(), e, retain_graph=True)
        dependence = grad.abs().sum(1).flatten()  # (H * W,)
        assert (dependence[i:] == 0).all(), f"pixel {i} depends on pixels {dependence[i:].nonzero().flatten() + i}"
        assert (dependence[:i] > 0).all(), f"pixel {i} is blind to pixels {(dependence[:i] == 0).nonzero().flatten()}"


def test_incremental_pixel_logits_match_the_full_forward():
    spec = DataSpec(name="t", kind="image", shape=(2, 6, 3), levels=5)  # taller than the vertical reach
    net = _model(spec, levels=5, n_layers=2).net.eval()
    x = torch.randint(0, 5, (2, *spec.shape))
    full = net(x)  # (3, L, C, H, W)
    assert net.reach < spec.shape[1]
    for row in range(spec.shape[1]):
        ctx = net.row_context(x, row)
        for col in range(spec.shape[2]):
            torch.testing.assert_close(net.pixel_logits(x, row, col, ctx), full[..., row, col])


@pytest.mark.parametrize("levels", [17, 4])
def test_uniform_model_has_log2_levels_bits_per_dim(levels):
    model = _model(levels=levels)
    last = model.net.head[-1]
    torch.nn.init.zeros_(last.weight)
    torch.nn.init.zeros_(last.bias)
    x = _images(4)
    bpd = model.likelihood((x, None))["nll_bits_per_dim"]
    assert bpd.item() == pytest.approx(math.log2(levels), rel=1e-6)
    out = model((x, None))
    assert out["loss"].item() == pytest.approx(math.log(levels), rel=1e-6)  # nats per dim
    assert out["bits_per_dim"].item() == pytest.approx(math.log2(levels), rel=1e-6)


def test_quantisation_is_exact_at_native_levels_and_coarsens():
    for levels in (17, 256):
        idx = torch.arange(levels)
        torch.testing.assert_close(quantise(idx.float() / (levels - 1), levels), idx)
    assert quantise(torch.tensor([0.0, 0.24, 0.26, 0.74, 0.76, 1.0]), 4).tolist() == [0, 0, 1, 2, 3, 3]


def test_training_lowers_the_nll():
    model = _model()
    x = _images(8)
    x[:, :, :, :2] = 0.0  # some structure to learn
    step = model.make_train_step(wrap=lambda m: m, optim=OptimConfig(lr=1e-2))
    first = step((x, None))["loss"].item()
    for _ in range(15):
        last = step((x, None))["loss"].item()
    assert last < 0.8 * first


def test_sample_shapes_range_levels_and_seeding():
    model = _model(levels=4).eval()
    a = model.sample(3, generator=torch.Generator().manual_seed(0))
    b = model.sample(3, generator=torch.Generator().manual_seed(0))
    assert a.shape == (3, *SPEC.shape) and a.dtype == torch.float32
    torch.testing.assert_close(a, b)
    assert set(torch.unique(a * 3).round().tolist()) <= {0.0, 1.0, 2.0, 3.0}
    greedy = model.sample(2, generator=torch.Generator().manual_seed(0), top_k=1)
    torch.testing.assert_close(greedy[0], greedy[1])  # top_k=1 is deterministic
    rgb = DataSpec(name="rgb", kind="image", shape=(3, 3, 2), levels=256)
    assert _model(rgb, levels=8).sample(2).shape == (2, 3, 3, 2)


def test_completion_keeps_the_given_rows():
    model = _model().eval()
    x = _images(4)
    out = model.complete(x, 3, generator=torch.Generator().manual_seed(0))
    assert out.shape == x.shape
    torch.testing.assert_close(out[:, :, :3], x[:, :, :3])  # native levels: the given rows come back exactly
    figs = model.evaluation_figures((x, torch.zeros(4)), generator=torch.Generator().manual_seed(0))
    grid = figs["completion"]
    assert grid.shape == (16, *SPEC.shape)  # 4 real images, then 3 rows of 4 completions
    for k in range(1, 4):
        torch.testing.assert_close(grid[4 * k : 4 * k + 4, :, :3], x[:, :, :3])


def test_build_validates_levels_and_kind():
    assert build_model("pixelcnn", TINY, SPEC).levels == 17  # the dataset's own by default
    with pytest.raises(ConfigError, match="at most the dataset's 17 levels, got 32"):
        build_model("pixelcnn", {**TINY, "levels": 32}, SPEC)
    with pytest.raises(ConfigError, match="odd"):
        build_model("pixelcnn", {**TINY, "kernel_size": 4}, SPEC)
    with pytest.raises(ConfigError, match="^pixelcnn: expected an image dataset, got 'text' dataset 'n'"):
        build_model("pixelcnn", TINY, DataSpec(name="n", kind="text", shape=(5,), vocab=("a",)))
