"""WaveNet: causality, the receptive field, naive == cached sampling, conditioning, a fit to a tone. (The family
contract every family keeps, WaveNet included: tests/components/models/test_family.py.)"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from components.data.spec import DataSpec
from components.errors import ConfigError
from components.models.base import OptimConfig
from components.models.configs import WaveNetConfig as Config
from components.models.wavenet import WaveNet, build, mu_law_decode, mu_law_encode

AUDIO = DataSpec(name="notes", kind="audio", shape=(1, 48), class_names=("C", "C#", "D"))
TINY = {"residual_channels": 8, "skip_channels": 8, "dilation_cycles": 2, "layers_per_cycle": 3}


def _model(spec: DataSpec = AUDIO, **overrides) -> WaveNet:
    torch.manual_seed(0)
    return build(Config(**{**TINY, **overrides}), spec)


def _batch(n: int = 4, spec: DataSpec = AUDIO) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    x = mu_law_decode(torch.randint(0, 256, (n, *spec.shape), generator=g))  # (n, 1, T) in [-1, 1]
    return x, torch.randint(0, spec.num_classes, (n,), generator=g)


def _sharpen(model: WaveNet) -> WaveNet:
    """Larger weights: peaked, input-dependent logits (a random init is close to uniform)."""
    with torch.no_grad():
        for p in model.parameters():
            p.mul_(3)
    return model.eval()


# -- the network


@pytest.mark.parametrize(("kernel_size", "input"), [(2, "embedding"), (3, "embedding"), (2, "scalar")])
def test_logits_at_t_ignore_the_sample_at_t_and_after_and_see_the_receptive_field(kernel_size, input):
    model = _sharpen(_model(kernel_size=kernel_size, conditional=True, input=input))
    net, rf, T = model.net, model.net.receptive_field, 48
    assert rf == 2 * (1 + 2 + 4) * (kernel_size - 1) + 1 and rf < T
    idx = torch.randint(0, 256, (2, T), generator=torch.Generator().manual_seed(1))
    y = torch.tensor([0, 2])
    logits = net(idx, y)  # (2, Q, T)
    for t in (0, 5, 20, T - 1):
        future = idx.clone()
        future[:, t:] = torch.randint(0, 256, (2, T - t), generator=torch.Generator().manual_seed(t))
        assert torch.equal(net(future, y)[..., : t + 1], logits[..., : t + 1]), t  # exactly: no leak from >= t
    for t in (rf, T - 1):
        past = idx.clone()
        past[:, t - 1] = (past[:, t - 1] + 128) % 256
        assert not torch.equal(net(past, y)[..., t], logits[..., t])  # the previous sample is seen
        edge, beyond = idx.clone(), idx.clone()
        edge[:, t - rf] = (edge[:, t - rf] + 128) % 256  # the oldest sample in the receptive field
        beyond[:, t - rf - 1] = (beyond[:, t - rf - 1] + 128) % 256
        assert not torch.equal(net(edge, y)[..., t], logits[..., t])
        assert torch.equal(net(beyond, y)[..., t], logits[..., t])


@pytest.mark.parametrize("kernel_size", [2, 3])
def test_the_cached_step_matches_the_full_forward(kernel_size):
    model = _sharpen(_model(kernel_size=kernel_size, conditional=True))
    idx = torch.randint(0, 256, (3, 48), generator=torch.Generator().manual_seed(2))
    y = torch.tensor([0, 1, 2])
    full = model.net(idx, y)
    cache = model.net.start_cache(3, y)
    for t in range(48):
        step = model.net.step(idx[:, t - 1] if t else None, t, cache)
        torch.testing.assert_close(step, full[..., t], rtol=1e-5, atol=1e-4)


@pytest.mark.parametrize(
    ("conditional", "kernel_size", "input"),
    [
        (False, 2, "embedding"),
        (True, 2, "embedding"),
        (True, 3, "embedding"),
        (True, 2, "scalar"),
        (False, 3, "scalar"),
    ],
)
def test_cached_and_naive_sampling_draw_identical_clips(conditional, kernel_size, input):
    model = _sharpen(_model(conditional=conditional, kernel_size=kernel_size, input=input))
    a = model.sample(3, generator=torch.Generator().manual_seed(5), sampler="cached")
    b = model.sample(3, generator=torch.Generator().manual_seed(5), sampler="naive")
    assert torch.equal(a, b)
    c = model.sample(3, generator=torch.Generator().manual_seed(6), sampler="cached")
    assert not torch.equal(a, c)


def test_a_uniform_model_has_log2_levels_bits_per_sample():
    model = _model(mu=15)
    last = model.net.head[-1]
    nn.init.zeros_(last.weight)
    nn.init.zeros_(last.bias)
    x, y = _batch()
    assert model.likelihood((x, y))["nll_bits_per_sample"].item() == pytest.approx(4.0, rel=1e-6)
    out = model((x, y))
    assert out["loss"].item() == pytest.approx(math.log(16), rel=1e-6)  # nats per sample


def test_a_few_steps_fit_a_tone():
    """Tiny sanity of the objective: 40 Adam steps on one repeated tone lower the NLL well below uniform."""
    model = _model()
    t = torch.arange(48)
    x = (0.6 * torch.sin(2 * math.pi * t / 8)).expand(8, 1, 48).contiguous()
    step = model.make_train_step(wrap=lambda m: m, optim=OptimConfig(lr=3e-2))
    first = step((x, torch.zeros(8, dtype=torch.long)))["loss"].item()
    for _ in range(40):
        last = step((x, torch.zeros(8, dtype=torch.long)))["loss"].item()
    assert last < 0.5 * first and first == pytest.approx(math.log(256), rel=0.1)


# -- conditioning and options


def test_labels_condition_the_samples_and_are_checked():
    model = _sharpen(_model(conditional=True))
    g = lambda: torch.Generator().manual_seed(3)  # noqa: E731
    zero, two = model.sample(2, generator=g(), labels=0), model.sample(2, generator=g(), labels=[2, 2])
    assert not torch.equal(zero, two)
    assert torch.equal(two, model.sample(2, generator=g(), labels=torch.tensor([2, 2]), sampler="naive"))
    assert model.sampler_info()["labels"] == "given" and model.sampler_info()["sampler"] == "naive"
    model.sample(2, generator=g())
    assert model.sampler_info()["labels"] == "uniform"
    with pytest.raises(ConfigError, match=r"^wavenet\.sample: expected labels as one class or 2 classes in \[0, 3\)"):
        model.sample(2, generator=g(), labels=[0, 3])
    with pytest.raises(ConfigError, match=r"^wavenet\.sample: expected no labels for an unconditional model"):
        _model().sample(2, generator=g(), labels=0)
    with pytest.raises(ConfigError, match=r"expected class labels in \[0, 3\) for every clip"):
        model((_batch()[0], torch.tensor([0, 1, -1, 2])))


def test_unset_labels_follow_the_training_labels_shares_stratified_and_both_samplers_agree():
    model = _sharpen(_model(conditional=True)).train()
    x, _ = _batch(8)
    model((x, torch.tensor([0, 0, 0, 0, 0, 0, 1, 2])))  # shares 3/4, 1/8, 1/8
    assert model.label_counts.tolist() == [6, 1, 1]
    model.eval()
    with torch.no_grad():
        model((x, torch.zeros(8, dtype=torch.long)))  # evaluation passes count nothing
    assert model.label_counts.tolist() == [6, 1, 1]
    g = lambda: torch.Generator().manual_seed(4)  # noqa: E731
    y, source = model._sample_labels(16, None, None, g(), torch.device("cpu"))
    assert source == "training label shares" and torch.bincount(y, minlength=3).tolist() == [12, 2, 2]
    y, _ = model._sample_labels(6, None, None, g(), torch.device("cpu"))  # 4.5, 0.75, 0.75: 4 + 1 + 1 more
    assert torch.bincount(y, minlength=3)[0] >= 4 and len(y) == 6
    a = model.sample(3, generator=g(), sampler="cached")
    assert torch.equal(a, model.sample(3, generator=g(), sampler="naive"))
    assert model.sampler_info()["labels"] == "training label shares"
    assert "label_counts" in model.state_dict()  # saved with the weights: the evaluate stage samples at them


NOTES = DataSpec(
    name="notes", kind="audio", shape=(1, 48), class_names=("C", "C#", "D"), attributes={"timbre": ("a", "b")}
)


def test_attribute_conditioning_counts_cells_draws_them_and_conditions_the_samples():
    """condition_on: [timbre]: batches (x, y, timbre); joint (class, timbre) counts; unset draws keep both shares."""
    model = _model(NOTES, conditional=True, condition_on=["timbre"])
    (emb,) = model.net.attribute_cond
    assert emb.weight.abs().sum() == 0  # starts as the class-conditional net
    with torch.no_grad():
        emb.weight.normal_()  # as if trained
    model = _sharpen(model).train()
    assert model.batch_attributes == ("timbre",) and tuple(model.label_counts.shape) == (3, 2)
    x, _ = _batch(8, NOTES)
    y, t = torch.tensor([0, 0, 0, 0, 1, 1, 2, 2]), torch.tensor([0, 0, 0, 1, 1, 1, 0, 1])
    model((x, y, t))
    assert model.label_counts.tolist() == [[3, 1], [0, 2], [1, 1]]
    model.eval()
    g = lambda: torch.Generator().manual_seed(4)  # noqa: E731
    cols, source = model._sample_labels(16, None, None, g(), torch.device("cpu"))  # shares x 2: exact
    assert source == "training label shares" and cols.shape == (16, 2)
    assert torch.bincount(cols[:, 0] * 2 + cols[:, 1], minlength=6).tolist() == [6, 2, 0, 4, 2, 2]
    cols, source = model._sample_labels(50, 1, None, g(), torch.device("cpu"))  # class 1 was only seen as timbre 1
    assert source.startswith("partly given") and cols[:, 0].eq(1).all() and cols[:, 1].eq(1).all()
    cols, _ = model._sample_labels(4, None, {"timbre": 0}, g(), torch.device("cpu"))  # timbre 0: classes 0 and 2
    assert cols[:, 1].eq(0).all() and not cols[:, 0].eq(1).any()
    cols, source = model._sample_labels(2, [0, 2], {"timbre": [1, 0]}, g(), torch.device("cpu"))
    assert source == "given" and cols.tolist() == [[0, 1], [2, 0]]
    a = model.sample(2, generator=g(), labels=0, attributes={"timbre": 0})
    assert not torch.equal(a, model.sample(2, generator=g(), labels=0, attributes={"timbre": 1}))
    assert torch.equal(a, model.sample(2, generator=g(), labels=0, attributes={"timbre": 0}, sampler="naive"))
    both = model.sample(4, generator=g())
    assert torch.equal(both, model.sample(4, generator=g(), sampler="naive"))
    with pytest.raises(
        ConfigError, match=r"expected attributes among \['timbre'\] \(model\.condition_on\), got \['midi'\]"
    ):
        model.sample(1, attributes={"midi": 0})
    with pytest.raises(ConfigError, match=r"expected timbre as one id or 2 ids in \[0, 2\)"):
        model.sample(2, attributes={"timbre": [0, 2]})
    with pytest.raises(ConfigError, match=r"expected batches \(x, y, timbre\), got 2 tensors"):
        model((x, y))
    with pytest.raises(ConfigError, match=r"expected timbre ids in \[0, 2\) for every clip"):
        model((x, y, t + 1))
    with pytest.raises(ConfigError, match=r"model\.condition_on: expected conditional: true"):
        build(Config(condition_on=["timbre"]), NOTES)
    with pytest.raises(ConfigError, match=r"expected distinct attributes of 'notes' among \['timbre'\], got \['pan'\]"):
        build(Config(conditional=True, condition_on=["pan"]), NOTES)


def test_bad_sampler_options_and_datasets_are_config_errors():
    model = _model()
    with pytest.raises(ConfigError, match=r"^wavenet\.sample: expected sampler 'cached' or 'naive', got 'fast'"):
        model.sample(1, sampler="fast")
    with pytest.raises(ConfigError, match=r"^wavenet\.sample: expected temperature > 0, got 0"):
        model.sample(1, temperature=0)
    image = DataSpec(name="img", kind="image", shape=(1, 8, 8), levels=17)
    with pytest.raises(ConfigError, match=r"family 'wavenet' expected an audio dataset, got 'img' of kind 'image'"):
        build(Config(), image)
    stereo = DataSpec(name="st", kind="audio", shape=(2, 48))
    with pytest.raises(ConfigError, match=r"expected mono clips of shape \(1, T\) .*mono: true"):
        build(Config(), stereo)
    with pytest.raises(ConfigError, match=r"model\.conditional: expected a labelled dataset"):
        build(Config(conditional=True), DataSpec(name="u", kind="audio", shape=(1, 48)))


def test_spectrogram_figure_shows_real_then_generated():
    spec = DataSpec(name="n", kind="audio", shape=(1, 512), class_names=("a", "b"))
    model = build(Config(**TINY, conditional=True), spec)
    x, _ = _batch(16, spec)
    figs = model.evaluation_figures((x, torch.zeros(16, dtype=torch.long)), generator=torch.Generator().manual_seed(0))
    pic = figs["spectrograms"]
    assert pic.shape == (16, 1, 129, 9) and pic.min() >= 0 and pic.max() <= 1


# -- the family contract (tests/components/models/test_family.py), for a waveform family


def test_mu_law_inverts_at_every_level_and_compands():
    levels = torch.arange(256)
    wave_ = mu_law_decode(levels)
    assert wave_.dtype == torch.float32 and wave_[0] == -1 and wave_[-1] == 1 and (wave_.diff() > 0).all()
    assert torch.equal(mu_law_encode(wave_), levels)
    x = torch.linspace(-1.5, 1.5, 1001)
    idx = mu_law_encode(x)
    assert idx.dtype == torch.long and idx.min() == 0 and idx.max() == 255 and mu_law_encode(torch.zeros(1)) == 128
    small, large = (mu_law_decode(mu_law_encode(v)) - v for v in (torch.tensor(0.01), torch.tensor(0.9)))
    assert abs(small) < 1e-3 < abs(large) < 0.02  # finer steps near 0 (§2.2)
    assert torch.equal(mu_law_encode(np.array([0.5])), mu_law_encode(torch.tensor([0.5])))


def test_a_train_crop_inside_the_clip_sees_the_receptive_field_before_it_and_scores_only_the_window():
    spec = DataSpec(name="notes", kind="audio", shape=(1, 96), class_names=("C", "C#", "D"))
    model = _sharpen(_model(spec, conditional=True, train_crop=32)).train()
    x, y = _batch(3, spec)
    idx = mu_law_encode(x[:, 0])
    full = model.net(idx, y)  # (B, Q, T): every position with its whole receptive field

    def window(seed: int) -> int:  # the start the forward draws from the global RNG after manual_seed(seed)
        torch.manual_seed(seed)
        return 0 if torch.rand(()) < 0.5 else int(torch.randint(0, 96 - 32 + 1, ()))

    inside = next(s for s in range(100) if window(s) >= model.net.receptive_field)
    at_zero = next(s for s in range(100) if window(s) == 0)
    for seed in (inside, at_zero):
        start = window(seed)
        want = F.cross_entropy(full[..., start : start + 32], idx[:, start : start + 32])
        torch.manual_seed(seed)
        torch.testing.assert_close(model((x, y))["loss"], want, rtol=1e-5, atol=1e-6)
