import pytest
import torch

from components.data.spec import DataSpec
from components.errors import ConfigError
from components.models import build_model
from components.models.configs import VAEConfig as Config
from components.models.vae import VAE


def _spec(c=1, h=8, w=8):
    return DataSpec(name="t", kind="image", shape=(c, h, w), class_names=("a", "b"))


@pytest.mark.parametrize("shape", [(1, 8, 8), (1, 28, 28), (3, 10, 10)])
def test_shapes_for_every_image_size(shape):
    m = VAE(spec=_spec(*shape), config=Config(latent_dim=4, width=8))
    x = torch.rand(5, *shape)
    out = m((x, torch.zeros(5)))
    assert set(out) == {"loss", "recon", "kl"} and out["loss"].ndim == 0
    assert m.sample(3).shape == (3, *shape)
    assert m.reconstruct(x).shape == x.shape
    assert m.interpolate(x[:2], x[2:4], steps=5).shape == (10, *shape)
    s = m.sample(2)
    assert 0 <= s.min() and s.max() <= 1


def test_elbo_matches_its_terms_and_beta():
    torch.manual_seed(0)
    m = VAE(spec=_spec(), config=Config(latent_dim=4, width=8, beta=4.0))
    x = torch.rand(6, 1, 8, 8)
    torch.manual_seed(1)
    out = m((x, None))
    assert torch.allclose(out["loss"], out["recon"] + 4.0 * out["kl"])
    assert out["kl"] >= 0
    lik = m.likelihood((x, None))
    assert lik["nelbo_bits_per_dim"] == pytest.approx(float(lik["nelbo_nats"]) / (64 * 0.6931471805599453), rel=1e-5)


def test_sampling_is_seeded():
    m = VAE(spec=_spec(), config=Config(latent_dim=4, width=8))
    a = m.sample(4, generator=torch.Generator().manual_seed(7))
    b = m.sample(4, generator=torch.Generator().manual_seed(7))
    assert torch.equal(a, b)


def test_build_rejects_non_images_and_bad_config():
    with pytest.raises(ConfigError, match="expected an image dataset"):
        build_model("vae", {}, DataSpec(name="p", kind="points", shape=(2,)))
    with pytest.raises(ConfigError, match="model.latent_dim"):
        build_model("vae", {"latent_dim": -1}, _spec())
