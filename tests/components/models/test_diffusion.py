"""Diffusion family: schedules, parameterisations, samplers, EMA, inpainting, likelihood, overfitting."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from scipy.stats import norm
from torch import nn
from torch.distributions import Normal, kl_divergence

from components.config import TrainConfig
from components.data.spec import DataSpec
from components.errors import ConfigError
from components.models import build_model
from components.models.configs import DiffusionConfig as Config
from components.models.diffusion import GaussianDiffusion, beta_schedule, build
from components.training.loop import fit

TINY = {"dim": 8, "dim_mults": (1, 2), "timesteps": 20, "sampling_steps": 5}


@pytest.fixture(autouse=True)
def one_thread():
    """These models are tiny: one thread avoids OpenMP hand-offs that cost more than they save."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def image_model(shape=(1, 8, 8), levels=17, **kw) -> GaussianDiffusion:
    torch.manual_seed(0)
    spec = DataSpec(name="img", kind="image", shape=shape, levels=levels)
    return build(Config(**{**TINY, **kw}), spec)


def points_model(**kw) -> GaussianDiffusion:
    torch.manual_seed(0)
    spec = DataSpec(name="pts", kind="points", shape=(2,))
    return build(Config(**{**TINY, "mlp_dim": 32, "mlp_depth": 2, **kw}), spec)


# ----- schedules


@pytest.mark.parametrize("kind", ["linear", "cosine"])
def test_schedule_is_a_valid_noising_process(kind):
    betas = beta_schedule(kind, 1000)
    alphas_cumprod = torch.cumprod(1 - betas, 0)
    assert betas.shape == (1000,) and (betas > 0).all() and (betas <= 0.999).all()
    assert (alphas_cumprod[1:] < alphas_cumprod[:-1]).all()  # strictly more noise at every step
    assert alphas_cumprod[0] > 0.999 and alphas_cumprod[-1] < 1e-4


def test_linear_schedule_endpoints_match_ho_et_al():
    betas = beta_schedule("linear", 1000)
    assert betas[0].item() == pytest.approx(1e-4) and betas[-1].item() == pytest.approx(0.02)


def test_cosine_schedule_matches_nichol_dhariwal_eq17():
    T, s = 1000, 0.008
    alphas_cumprod = torch.cumprod(1 - beta_schedule("cosine", T), 0).numpy()
    f = np.cos((np.arange(T + 1) / T + s) / (1 + s) * np.pi / 2) ** 2
    expected = f[1:] / f[0]  # ᾱ_t for t = 1..T; ᾱ_0 = 1
    # equal up to the β ≤ 0.999 clip, which only bites at the very last step (f(T) = 0)
    np.testing.assert_allclose(alphas_cumprod[:-1], expected[:-1], rtol=1e-9, atol=1e-12)
    assert beta_schedule("cosine", T)[-1].item() == pytest.approx(0.999)


def test_unknown_schedule_is_a_config_error():
    with pytest.raises(ConfigError, match="^beta_schedule: expected schedule 'linear' or 'cosine', got 'sigmoid'"):
        beta_schedule("sigmoid", 10)


# ----- forward process and parameterisations


def test_q_sample_moments():
    m = points_model(timesteps=100)
    x0 = torch.tensor([[1.5, -0.5]]).expand(40_000, 2)
    t = torch.full((40_000,), 30)
    g = torch.Generator().manual_seed(0)
    x_t = m.q_sample(x0, t, torch.randn(x0.shape, generator=g))
    ab = m.alphas_cumprod[30].item()
    torch.testing.assert_close(x_t.mean(0), math.sqrt(ab) * x0[0], atol=0.02, rtol=0)
    torch.testing.assert_close(x_t.var(0), torch.full((2,), 1 - ab), atol=0.02, rtol=0)


def test_eps_v_x0_conversions_round_trip():
    m = image_model(timesteps=50)
    g = torch.Generator().manual_seed(0)
    x0, eps = torch.rand(6, 1, 8, 8, generator=g) * 2 - 1, torch.randn(6, 1, 8, 8, generator=g)
    t = torch.tensor([0, 1, 10, 25, 48, 49])
    x_t = m.q_sample(x0, t, eps)
    v = m.v_from(x0, t, eps)
    torch.testing.assert_close(m.x0_from_v(x_t, t, v), x0, atol=1e-5, rtol=0)
    torch.testing.assert_close(m.eps_from_v(x_t, t, v), eps, atol=1e-5, rtol=0)
    torch.testing.assert_close(m.eps_from_x0(x_t, t, x0), eps, atol=1e-3, rtol=0)  # ÷√(1−ᾱ) is small at t=0
    torch.testing.assert_close(m.x0_from_eps(x_t, t, eps), x0, atol=1e-3, rtol=0)  # ÷√ᾱ is small at t=T−1


@pytest.mark.parametrize("objective", ["eps", "v"])
def test_training_loss_regresses_the_objective_target(objective):
    x = torch.rand(64, 1, 8, 8)
    x0 = x * 2 - 1

    class Oracle(nn.Module):  # knows x₀, so it can recover ε (and v) from x_t exactly: the loss must be ~0
        def forward(self, x_t, t):
            eps = m.eps_from_x0(x_t, t, x0)
            return eps if objective == "eps" else m.v_from(x0, t, eps)

    m = image_model(objective=objective)
    m.net = Oracle()
    assert m((x, torch.zeros(64)))["loss"].item() == pytest.approx(0.0, abs=1e-6)
    m.net = nn.Identity()  # predicting x_t itself is far off
    m.net.forward = lambda x_t, t: torch.zeros_like(x_t)
    assert m((x, torch.zeros(64)))["loss"].item() > 0.1


@pytest.mark.parametrize("objective", ["eps", "v"])
def test_min_snr_weighting(objective):
    # Hang et al. arXiv 2303.09556: the x₀-space weight min(SNR, γ), expressed for an ε or a v target
    m = image_model(objective=objective, min_snr_gamma=5.0)
    snr = m.alphas_cumprod / (1 - m.alphas_cumprod)
    x0_weight = snr.clamp(max=5.0)
    target_weight = x0_weight / snr if objective == "eps" else x0_weight / (snr + 1)
    torch.testing.assert_close(m.loss_weight, target_weight)
    assert m.loss_weight.max() <= 1.0 + 1e-6 and m.loss_weight.min() > 0
    # the loss is the mean over the batch of weight[t] · per-sample MSE, with forward's own draws
    x = torch.rand(16, 1, 8, 8)
    x0 = x * 2 - 1
    torch.manual_seed(3)
    t = torch.randint(0, m.T, (16,))
    noise = torch.randn_like(x0)
    with torch.no_grad():
        target = noise if objective == "eps" else m.v_from(x0, t, noise)
        mse = (m.net(m.q_sample(x0, t, noise), t) - target).pow(2).flatten(1).mean(1)
        torch.manual_seed(3)
        got = m((x, torch.zeros(16)))["loss"]
    torch.testing.assert_close(got, (target_weight[t] * mse).mean())
    assert not torch.isclose(got, mse.mean())


# ----- samplers


@pytest.mark.parametrize("make", [image_model, points_model])
def test_ddim_eta0_is_deterministic_given_the_initial_noise(make):
    m = make()
    out = m.sample(3, generator=torch.Generator().manual_seed(7), sampler="ddim", steps=5, eta=0.0)
    # the same x_T pushed through the DDIM steps with no generator: η = 0 must draw no noise at all
    x = torch.randn((3, *m.spec.shape), generator=torch.Generator().manual_seed(7))
    rng = torch.get_rng_state()
    with torch.no_grad():
        for t, t_next in m._ddim_times(5):
            x = m.ddim_step(m.ema, x, t, t_next, eta=0.0, generator=None)
    assert torch.equal(torch.get_rng_state(), rng)
    torch.testing.assert_close(out, m.from_model_space(x))
    other = m.sample(3, generator=torch.Generator().manual_seed(8), sampler="ddim", steps=5, eta=0.0)
    assert not torch.allclose(out, other)


@pytest.mark.parametrize("make", [image_model, points_model])
def test_ddim_with_all_steps_and_eta1_is_ddpm(make):
    # Song et al. arXiv 2010.02502 §4.1: η = 1 over all T steps gives σ_t² = β̃_t, i.e. the DDPM sampler;
    # DDPM here uses the posterior-mean formula (Ho et al. eq. 7), so this checks one against the other.
    m = make()
    ddpm = m.sample(4, generator=torch.Generator().manual_seed(3), sampler="ddpm")
    ddim = m.sample(4, generator=torch.Generator().manual_seed(3), sampler="ddim", steps=m.T, eta=1.0)
    torch.testing.assert_close(ddim, ddpm, atol=1e-4, rtol=1e-4)
    assert m.sampler_info() == {
        "sampler": "ddim", "steps": 20, "eta": 1.0, "ema": True, "timesteps": 20, "schedule": "cosine",
        "objective": "eps",
    }  # fmt: skip


def test_ddim_variance_at_eta1_is_the_posterior_variance():
    m = points_model(timesteps=1000)
    t, t_next = 500, 499
    a, a_next = m.alphas_cumprod[t].item(), m.alphas_cumprod[t_next].item()
    sigma2 = (1 - a_next) / (1 - a) * (1 - a / a_next)
    assert sigma2 == pytest.approx(m.posterior_variance[t].item(), rel=1e-4)


class GaussianOracle(nn.Module):
    """The exact v-prediction for data x₀ ~ N(μ, s²) per coordinate: E[x₀ | x_t] is linear in x_t."""

    def __init__(self, m: GaussianDiffusion, *, mu: float, s: float):
        super().__init__()
        self.a, self.sig = m.sqrt_alphas_cumprod.double(), m.sqrt_one_minus_alphas_cumprod.double()
        self.mu, self.s = mu, s

    def forward(self, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:  # x (B, D), t (B,) -> v (B, D)
        a, sig, x = self.a[t][:, None], self.sig[t][:, None], x.double()
        x0 = self.mu + a * self.s**2 * (x - a * self.mu) / (a**2 * self.s**2 + sig**2)
        return (a * (x - a * x0) / sig - sig * x0).float()  # v = α ε − σ x₀


def test_dpm_solver_follows_the_probability_flow_ode_closer_than_ddim():
    # Known answer: for Gaussian data the probability-flow ODE keeps each sample's z-score, so from x_T the
    # exact trajectory reaches x_t = α_t μ + √(α_t² s² + σ_t²) z; both samplers end with x̂₀ of their last grid
    # time. DPM-Solver++(2M) (arXiv 2211.01095) is second order: at 10 and 20 steps it must be far closer.
    mu, s = 0.7, 0.3
    m = points_model(timesteps=1000, objective="v")
    m.ema = GaussianOracle(m, mu=mu, s=s)
    x_T = torch.randn((256, 2), generator=torch.Generator().manual_seed(0)).double()
    a, sig = m.sqrt_alphas_cumprod.double(), m.sqrt_one_minus_alphas_cumprod.double()
    errors = {}
    for steps in (10, 20, 1000):
        t = m._ddim_times(steps)[-1][0]
        z = (x_T - a[-1] * mu) / (a[-1] ** 2 * s**2 + sig[-1] ** 2).sqrt()
        x_t = a[t] * mu + (a[t] ** 2 * s**2 + sig[t] ** 2).sqrt() * z
        exact = mu + a[t] * s**2 * (x_t - a[t] * mu) / (a[t] ** 2 * s**2 + sig[t] ** 2)
        for sampler in ("ddim", "dpmpp2m"):
            out = m.sample(256, generator=torch.Generator().manual_seed(0), sampler=sampler, steps=steps)
            errors[sampler, steps] = (out.double() - exact).abs().max().item()
    for steps in (10, 20):  # measured: 0.0082 vs 0.10 and 0.016 vs 0.085
        assert errors["dpmpp2m", steps] < errors["ddim", steps] / 4, errors
    assert errors["dpmpp2m", 1000] < 1e-3 and errors["ddim", 1000] < 1e-2, errors
    assert m.sampler_info()["eta"] == 0.0 and m.sampler_info()["sampler"] == "dpmpp2m"


def test_sample_options_are_validated():
    m = image_model()
    expected = "^diffusion.sample: expected sampler 'ddim', 'ddpm' or 'dpmpp2m', got 'euler'"
    with pytest.raises(ConfigError, match=expected):
        m.sample(2, sampler="euler")
    with pytest.raises(ConfigError, match="^diffusion.sample: expected 1 <= steps <= timesteps = 20, got 21"):
        m.sample(2, steps=21)
    with pytest.raises(ConfigError, match="expected options among"):
        m.sample(2, guidance=3.0)
    with pytest.raises(ValueError, match="sampling_steps <= timesteps"):
        Config(timesteps=10, sampling_steps=50)


# ----- EMA


def test_ema_update_math_and_start():
    m = points_model(ema_decay=0.9, ema_start=2)
    opt = torch.optim.SGD(m.net.parameters(), lr=0.1)

    def train_step():
        opt.zero_grad()
        m((torch.randn(8, 2), torch.zeros(8)))["loss"].backward()
        opt.step()
        m.after_step()

    for _ in range(2):  # the first ema_start steps copy the weights
        train_step()
        for e, p in zip(m.ema.parameters(), m.net.parameters(), strict=True):
            assert torch.equal(e, p)
    before = [e.clone() for e in m.ema.parameters()]
    train_step()
    for e, e0, p in zip(m.ema.parameters(), before, m.net.parameters(), strict=True):
        torch.testing.assert_close(e, 0.9 * e0 + 0.1 * p)
    assert int(m.step) == 3


def test_ema_is_saved_with_the_model_and_ignored_by_the_optimizer():
    m = image_model()
    trainable = [p for p in m.parameters() if p.requires_grad]
    assert len(trainable) == len(list(m.net.parameters()))  # DDP all-reduces only these
    with torch.no_grad():
        for p in m.ema.parameters():
            p.add_(1.0)
    m.step += 5
    state = m.state_dict()
    assert any(k.startswith("ema.") for k in state) and "step" in state
    assert not any("alphas_cumprod" in k for k in state)  # derived from the config, not saved
    fresh = image_model()
    fresh.load_state_dict(state)
    for a, b in zip(fresh.ema.parameters(), m.ema.parameters(), strict=True):
        assert torch.equal(a, b)
    assert int(fresh.step) == 5
    # sampling uses the EMA weights by default and the raw weights on request
    g = lambda: torch.Generator().manual_seed(0)  # noqa: E731
    assert not torch.allclose(m.sample(2, generator=g()), m.sample(2, generator=g(), use_ema=False))
    assert m.sampler_info()["ema"] is False


# ----- inpainting


@pytest.mark.parametrize("resample", [1, 3])
def test_inpainting_keeps_known_pixels(resample):
    m = image_model()
    g = torch.Generator().manual_seed(0)
    image = torch.rand(3, 1, 8, 8, generator=g)
    mask = (torch.rand(3, 1, 8, 8, generator=g) > 0.5).float()
    out = m.inpaint(image, mask, generator=g, steps=4, resample=resample)
    assert out.shape == image.shape and out.min() >= 0 and out.max() <= 1
    torch.testing.assert_close(out[mask == 1], image[mask == 1], atol=1e-6, rtol=0)
    assert not torch.allclose(out[mask == 0], image[mask == 0])


def test_evaluation_figure_is_masked_result_original():
    m = image_model()
    x = torch.rand(10, 1, 8, 8)
    fig = m.evaluation_figures((x, torch.zeros(10)), generator=torch.Generator().manual_seed(0))["inpainting"]
    assert fig.shape == (8, 1, 8, 3 * 8 + 2)
    torch.testing.assert_close(fig[..., 18:], x[:8])  # the original on the right
    torch.testing.assert_close(fig[..., :4, 9:17], x[:8, :, :4], atol=1e-6, rtol=0)  # known top half kept
    assert (fig[..., 4:, :8] == 0.5).all()  # hidden half shown grey
    assert points_model().evaluation_figures((torch.randn(4, 2),), generator=torch.Generator()) == {}


# ----- shapes


@pytest.mark.parametrize(
    "shape, kw",
    [
        ((1, 8, 8), {}),
        ((1, 28, 28), {"dim_mults": (1, 2, 2)}),  # 28 → 14 → 7
        ((1, 28, 28), {"dim_mults": (1, 2, 2, 2)}),  # padded to 32
        ((3, 28, 28), {"patch": 2, "objective": "v"}),
        ((3, 10, 6), {"dim_mults": (1, 2, 2), "schedule": "linear"}),
    ],
)
def test_image_shapes(shape, kw):
    m = build_model("diffusion", {**TINY, **kw}, DataSpec(name="i", kind="image", shape=shape, levels=256))
    x = torch.rand(2, *shape)
    out = m((x, torch.zeros(2)))
    assert out["loss"].shape == () and torch.isfinite(out["loss"])
    s = m.sample(3, generator=torch.Generator().manual_seed(0), steps=3)
    assert s.shape == (3, *shape) and s.min() >= 0 and s.max() <= 1
    bpd = m.likelihood((x, torch.zeros(2)))["nll_bits_per_dim"]
    assert bpd.shape == () and torch.isfinite(bpd) and bpd > 0


def test_points_shapes_and_no_likelihood():
    m = points_model(point_scale=4.0)
    assert m((torch.randn(5, 2), torch.zeros(5)))["loss"].shape == ()
    assert m.sample(7, generator=torch.Generator().manual_seed(0), sampler="ddpm").shape == (7, 2)
    assert m.likelihood((torch.randn(5, 2), torch.zeros(5))) == {}


def test_text_is_refused():
    with pytest.raises(ConfigError, match="expected an 'image' or 'points' dataset"):
        build(Config(), DataSpec(name="names", kind="text", shape=(12,)))


# ----- likelihood bound


def test_vb_terms_match_torch_distributions():
    m = image_model(levels=17)
    g = torch.Generator().manual_seed(0)
    x0 = torch.randint(0, 17, (3, 1, 8, 8), generator=g).float() / 16 * 2 - 1
    noise = torch.randn(x0.shape, generator=g)
    with torch.no_grad():
        t = torch.tensor([3, 7, 19])
        got = m.vb_terms(m.net, x0, t, noise)
        x_t = m.q_sample(x0, t, noise)
        _, x0_hat = m.predict(m.net, x_t, t)
        c1, c2 = m.posterior_mean_coef1[t].view(-1, 1, 1, 1), m.posterior_mean_coef2[t].view(-1, 1, 1, 1)
        std = m.posterior_variance[t].sqrt().view(-1, 1, 1, 1)
        want = kl_divergence(Normal(c1 * x0 + c2 * x_t, std), Normal(c1 * x0_hat + c2 * x_t, std))
        torch.testing.assert_close(got, want.flatten(1).sum(1), rtol=1e-4, atol=1e-4)

        t = torch.zeros(3, dtype=torch.long)
        got = m.vb_terms(m.net, x0, t, noise)
        x_t = m.q_sample(x0, t, noise)
        _, x0_hat = m.predict(m.net, x_t, t)
        mean = x0_hat  # coef1[0] = 1, coef2[0] = 0
        dist = Normal(mean.double(), m.posterior_variance[1].double().sqrt())
        lo = torch.where(x0 < -0.99, torch.tensor(-math.inf), x0 - 1 / 16).double()
        hi = torch.where(x0 > 0.99, torch.tensor(math.inf), x0 + 1 / 16).double()
        want = -torch.log(dist.cdf(hi) - dist.cdf(lo)).flatten(1).sum(1)
        torch.testing.assert_close(got.double(), want, rtol=1e-4, atol=1e-3)


def test_likelihood_of_a_perfect_denoiser_is_decoder_plus_prior():
    # An oracle that knows x₀ makes every KL term 0, so the bound is the t = 0 decoder term plus the
    # prior term, both in closed form (Ho et al. eq. 5 and 13).
    m = image_model(levels=256, timesteps=1000)
    x = torch.randint(0, 256, (2, 1, 8, 8), generator=torch.Generator().manual_seed(0)).float() / 255
    x0 = x * 2 - 1

    class Oracle(nn.Module):
        def forward(self, x_t, t):
            return m.eps_from_x0(x_t, t, x0)

    m.ema = Oracle()
    torch.manual_seed(0)
    got = m.likelihood((x, torch.zeros(2)))["nll_bits_per_dim"].item()

    sd = math.sqrt(m.posterior_variance[1].item())
    h = 1 / 255
    z = x0.double().numpy()
    p = np.where(
        z < -0.999,
        norm.cdf(h / sd),
        np.where(z > 0.999, norm.sf(-h / sd), norm.cdf(h / sd) - norm.cdf(-h / sd)),
    )
    ab = m.alphas_cumprod[-1].item()
    prior = 0.5 * (-1 - math.log(1 - ab) + (1 - ab) + ab * z**2)
    want = (-np.log(p) + prior).sum(axis=(1, 2, 3)).mean() / (64 * math.log(2))
    assert got == pytest.approx(want, rel=1e-3)


# ----- learning


def test_mlp_denoiser_overfits_two_points():
    points = torch.tensor([[-1.0, 0.5], [1.0, -0.5]])
    x = points.repeat(1024, 1)  # (2048, 2)
    m = points_model(timesteps=100, mlp_dim=64, mlp_depth=2, ema_decay=0.9, schedule="linear")
    cfg = TrainConfig(epochs=30, batch_size=128, lr=3e-3, num_workers=0)
    fit(m, (x, torch.zeros(len(x), dtype=torch.long)), cfg)
    s = m.sample(400, generator=torch.Generator().manual_seed(0), sampler="ddpm")
    d = torch.cdist(s, points)  # (400, 2)
    assert (d.min(1).values < 0.15).float().mean() > 0.95
    assert 0.35 < (d.argmin(1) == 0).float().mean() < 0.65  # both points, neither dropped


def test_registered_sampler_defaults_follow_the_config():
    from components.data.spec import DataSpec
    from components.models import build_model

    spec = DataSpec(name="t", kind="image", shape=(1, 8, 8), levels=17)
    model = build_model("diffusion", {"dim": 8, "dim_mults": [1], "eta": 1.0, "sampling_steps": 20}, spec)
    assert model.sampler_defaults() == {"sampler": "ddim", "steps": 20, "eta": 1.0}
    assert set(model.sampler_defaults()) == set(type(model).sample_params)
