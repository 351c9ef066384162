import math

import numpy as np
import pytest
import torch

from components.evaluation.pitch import pitch_class, pitch_classes, pitch_report, yin

SR = 8000


def _tones(freqs, seconds=0.5, amplitude=0.5, seed=0):
    t = np.arange(int(seconds * SR)) / SR
    phase = np.random.default_rng(seed).uniform(0, 2 * np.pi, (len(freqs), 1))
    return amplitude * np.sin(2 * np.pi * np.asarray(freqs, dtype=float)[:, None] * t + phase)  # (N, T)


@pytest.mark.parametrize("amplitude", [0.5, 0.01])
def test_yin_finds_pure_tones_within_one_percent(amplitude):
    freqs = [110.0, 220.0, 261.63, 440.0, 880.0]
    est = yin(_tones(freqs, amplitude=amplitude), SR)
    assert np.allclose(est.f0, freqs, rtol=0.01), est.f0
    assert est.clear.all() and (est.voiced_share == 1).all() and (est.aperiodicity < 0.05).all()


def test_silence_noise_and_a_click_have_no_clear_pitch():
    rng = np.random.default_rng(0)
    click = np.zeros(4000)
    click[2000] = 1.0
    clips = np.stack([np.zeros(4000), 0.3 * rng.standard_normal(4000), rng.uniform(-1, 1, 4000), click])
    est = yin(clips, SR)
    assert not est.clear.any() and (est.voiced_share < 0.2).all(), est.voiced_share
    assert np.isnan(est.f0[0]) and (est.aperiodicity[1:3] > 0.5).all()


def test_yin_takes_waveform_batches_and_chunks_consistently():
    freqs = np.geomspace(100, 900, 70)  # more clips than one vectorised block
    x = _tones(freqs)
    batch = yin(torch.tensor(x, dtype=torch.float32)[:, None], SR)  # (N, 1, T) as WaveNet samples them
    single = np.array([yin(x[i], SR).f0[0] for i in (0, 64, 69)])
    assert np.allclose(batch.f0[[0, 64, 69]], single, rtol=1e-5) and np.allclose(batch.f0, freqs, rtol=0.01)
    with pytest.raises(ValueError, match=r"yin: expected mono clips \(N, 1, T\)"):
        yin(np.zeros((2, 2, 4000)), SR)


def test_pitch_classes_round_to_the_nearest_midi_note():
    assert [pitch_class(f) for f in (261.63, 277.18, 440.0, 130.81, 987.77)] == [0, 1, 9, 0, 11]
    cents = lambda f, c: f * 2 ** (c / 1200)  # noqa: E731
    assert pitch_class(cents(440.0, 45)) == 9 and pitch_class(cents(440.0, 55)) == 10
    assert pitch_classes([0.0, -1.0, math.nan, math.inf, 440.0]).tolist() == [-1, -1, -1, -1, 9]


def test_pitch_report_counts_covered_classes_and_kl_to_the_data():
    every = 261.63 * 2 ** (np.arange(12) / 12)
    reference = np.arange(12).repeat(3)  # uniform over the 12 classes
    full = pitch_report(_tones(every), SR, reference)
    assert full["clear_pitch_share"] == 1.0 and full["modes_covered"] == 12 and full["histogram"] == [1] * 12
    assert full["kl_to_data"] == pytest.approx(0.0, abs=1e-6) and full["labels"] == list(range(12))
    collapsed = pitch_report(np.concatenate([_tones([440.0] * 3), np.zeros((1, 4000))]), SR, reference)
    assert collapsed["modes_covered"] == 1 and collapsed["clear_pitch_share"] == 0.75
    assert collapsed["kl_to_data"] == pytest.approx(math.log(12), rel=1e-6) and collapsed["labels"][-1] == -1
    silent = pitch_report(np.zeros((2, 4000)), SR, reference)
    assert silent["clear_pitch_share"] == 0 and silent["modes_covered"] == 0 and silent["histogram"] == [0] * 12
    assert silent["kl_to_data"] == pytest.approx(math.log(12), rel=1e-6)  # the worst score: a point mass
    with pytest.raises(ValueError, match=r"reference pitch classes in \[0, 12\)"):
        pitch_report(np.zeros((1, 4000)), SR, [12])


def test_harmonic_profile_reads_known_harmonics_and_noise():
    from components.evaluation.pitch import harmonic_profile

    sr, f0 = 8000, 200.0
    t = np.arange(4000) / sr
    tone = sum(a * np.sin(2 * np.pi * k * f0 * t) for k, a in ((1, 1.0), (2, 0.5), (3, 0.25)))  # h2 −6.02, h3 −12.04 dB
    levels, floor = harmonic_profile(tone, sr, [f0], n_harmonics=4)
    np.testing.assert_allclose(levels[0, :2], [-6.02, -12.04], atol=0.05)
    assert levels[0, 2] < -100 and floor[0] < -60  # no 4th harmonic, no noise
    noise = np.random.default_rng(0).standard_normal(len(t))
    snr = 20.0
    noisy = tone + noise * np.sqrt(np.mean(tone**2) / 10 ** (snr / 10))
    _, floor = harmonic_profile(noisy, sr, [f0])
    outside = 1 - 19 * 0.3 * f0 / (sr / 2) - 0.15 * f0 / (sr / 2)  # 19 full bands of ±0.15 f0, then half of the 20th
    assert floor[0] == pytest.approx(-snr + 10 * math.log10(outside), abs=0.5)
    levels, floor = harmonic_profile(np.stack([tone, tone]), sr, [np.nan, 3000.0])
    assert np.isnan(levels[0]).all() and np.isnan(floor[0]) and np.isnan(levels[1]).all()  # 6 kHz > Nyquist


def test_harmonic_profile_refuses_mismatched_f0():
    from components.evaluation.pitch import harmonic_profile

    with pytest.raises(ValueError, match="expected one f0 per clip"):
        harmonic_profile(np.zeros((2, 100)), 8000, [100.0])
