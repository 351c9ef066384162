from components.data import load_spec
from components.models import build_model
from components.training.probe import mode_probe


def test_mode_probe_counts_modes_on_mixtures_only(digits_root):
    from components.data import get_source
    from components.data.spec import DataSpec

    raw = get_source("ring8")(n_samples=400, seed=0)
    spec = DataSpec(name="ring8", kind="points", shape=(2,), extras=raw.extras)
    model = build_model("gan", {"latent_dim": 2, "width": 16}, spec)
    probe = mode_probe(model, spec, n=500)
    assert set(probe) == {"probe_modes_captured", "probe_pct_high_quality", "probe_reverse_kl"}
    assert 0 <= probe["probe_modes_captured"] <= 8
    image_spec = load_spec(digits_root, "digits")
    assert mode_probe(build_model("vae", {"latent_dim": 4, "width": 8}, image_spec), image_spec) == {}
