import pytest
import torch

from components.data import load_spec
from components.models import build_model
from components.models.store import WEIGHTS, save_trained
from components.training.warm_start import load_weights


def test_champion_weights_load_from_safetensors_bytes_and_refuse_another_architecture(digits_root, tmp_path):
    spec = load_spec(digits_root, "digits")
    torch.manual_seed(0)
    champion = build_model("vae", {"latent_dim": 4, "width": 8}, spec)
    save_trained(tmp_path / "m", champion, {"family": "vae", "model": {"latent_dim": 4, "width": 8}})
    data = (tmp_path / "m" / WEIGHTS).read_bytes()

    torch.manual_seed(1)
    fresh = build_model("vae", {"latent_dim": 4, "width": 8}, spec)
    before, after = fresh.state_dict(), champion.state_dict()
    assert not all(torch.equal(before[k], after[k]) for k in after)
    load_weights(fresh, data)
    for k, v in champion.state_dict().items():
        assert torch.equal(fresh.state_dict()[k], v), k

    other = build_model("vae", {"latent_dim": 8, "width": 8}, spec)
    with pytest.raises(RuntimeError):
        load_weights(other, data)
