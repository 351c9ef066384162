"""The audio evaluation: its likelihood baselines against known answers, and a tiny WaveNet's report carries every
number selection.metric may name (components.metric_names)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from components.config import EvaluateConfig
from components.data import spec_of
from components.data.audio import load_notes
from components.data.spec import DataSpec
from components.evaluation.audio_harness import level_edges, lpc_nll_bits, mu_law_levels, unigram_nll_bits
from components.metric_names import REPORTED
from components.models import build_model
from components.models.wavenet import mu_law_decode, mu_law_encode


def test_mu_law_levels_match_the_model_side_encoder():
    x = np.linspace(-1, 1, 2001)
    assert np.array_equal(mu_law_levels(x), mu_law_encode(torch.from_numpy(x)).numpy())
    edges = level_edges()
    centres = mu_law_decode(torch.arange(256)).numpy()
    assert len(edges) == 257 and np.all(edges[:-1] <= centres + 1e-6) and np.all(centres <= edges[1:] + 1e-6)
    assert np.array_equal(mu_law_levels(centres), np.arange(256))


def test_the_unigram_of_uniform_levels_costs_eight_bits():
    rng = np.random.default_rng(0)
    x = mu_law_decode(torch.from_numpy(rng.integers(0, 256, (64, 1, 2000)))).numpy()
    assert unigram_nll_bits(x[:32], x[32:]) == pytest.approx(8.0, abs=0.02)


def test_linear_prediction_beats_the_unigram_on_sines_and_scores_a_likelihood():
    t = np.arange(2000) / 8000
    rng = np.random.default_rng(0)
    clips = np.stack(
        [
            0.5 * np.sin(2 * math.pi * f * t + p)
            for f, p in zip(rng.uniform(200, 800, 16), rng.uniform(0, 6, 16), strict=True)
        ]
    )
    x = (clips + 1e-3 * rng.standard_normal(clips.shape))[:, None]
    lpc = lpc_nll_bits(x[:8], x[8:])
    assert 0 < lpc["nll_bits"] < unigram_nll_bits(x[:8], x[8:]) - 2  # prediction pays: far fewer bits
    assert lpc["residual_std"] < 0.05  # (the first samples of each clip are predicted from zeros)


def test_a_tiny_wavenet_reports_every_selectable_number():
    from components.evaluation.audio_harness import evaluate_audio

    raw = load_notes(n_per_class=2, seconds=0.1)
    spec = DataSpec(name="notes", kind="audio", shape=raw.x.shape[1:], class_names=raw.class_names, extras=raw.extras)
    torch.manual_seed(0)
    model = build_model(
        "wavenet", {"residual_channels": 8, "skip_channels": 8, "dilation_cycles": 1, "layers_per_cycle": 3}, spec
    )
    cfg = EvaluateConfig(n_samples=12, batch_size=12)
    result = evaluate_audio(model, spec, train=(raw.x, raw.y), test=(raw.x, raw.y), cfg=cfg)
    m = result.metrics
    numeric = {k for k, v in m.items() if isinstance(v, int | float)}
    in_classifier_space = {"fad", "fad_floor_train_vs_test", "kid", "precision", "recall", "density", "coverage"}
    assert REPORTED["audio"] - in_classifier_space <= numeric and "test_nll_bits_per_sample" in numeric
    assert m["unigram_nll_bits_per_sample"] > 0 and m["lpc_nll_bits_per_sample"] > 0
    assert len(result.labels) == 12 and set(result.labels) <= set(range(-1, 12))
    assert result.samples.shape == (12, *spec.shape) and "spectrograms" in result.figures


def test_the_test_likelihood_feeds_the_attributes_a_model_conditions_on():
    from components.errors import DataError
    from components.evaluation.harness import _likelihood

    raw = load_notes(n_per_class=1, seconds=0.05)
    spec = spec_of("notes", raw)
    torch.manual_seed(0)
    tiny = {"residual_channels": 4, "skip_channels": 4, "dilation_cycles": 1, "layers_per_cycle": 2}
    model = build_model("wavenet", {**tiny, "conditional": True, "condition_on": ["timbre"]}, spec)
    cfg = EvaluateConfig(n_samples=12, batch_size=5)
    timbre = raw.attributes["timbre"][0]
    got = _likelihood(model, (raw.x, raw.y), cfg, {"timbre": timbre})["test_nll_bits_per_sample"]
    x, y, t = torch.from_numpy(raw.x), torch.from_numpy(raw.y), torch.from_numpy(timbre)
    want = model.likelihood((x, y, t))["nll_bits_per_sample"].item()
    assert got == pytest.approx(want, rel=1e-5)
    with pytest.raises(DataError, match=r"expected the test attributes \['timbre'\] the model conditions on"):
        _likelihood(model, (raw.x, raw.y), cfg)
