"""The audio domain classifier: its log-mel front end, that it learns the notes' pitch class and timbre, that its
features separate real clips from noise (the fad), that it saves and loads bit-exactly, and evaluate_audio with it.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from components.config import EvaluateConfig
from components.data import split_indices
from components.data.audio import TIMBRES, load_notes
from components.data.spec import DataSpec
from components.evaluation.audio_features import (
    TrainedAudioClassifier,
    is_audio_classifier,
    load_audio_classifier,
    mel_filterbank,
    save_audio_classifier,
    stft_size,
    train_audio_classifier,
)
from components.evaluation.frechet import frechet_distance
from components.models.base import FamilyConfig, GenerativeModel

EPOCHS = 12  # 108 train clips of 0.25 s: ~1 s on one thread


@pytest.fixture(scope="module")
def notes():
    raw = load_notes(n_per_class=12, seconds=0.25)  # 144 clips: each (pitch class, timbre, octave) once
    idx = split_indices(len(raw.x), raw.y, val=0.0, test=0.25, seed=0)
    timbre = raw.attributes["timbre"][0]
    spec = DataSpec(
        name="notes",
        kind="audio",
        shape=raw.x.shape[1:],
        class_names=raw.class_names,
        extras=raw.extras,
        attributes={"timbre": TIMBRES},
    )
    return {
        "spec": spec,
        "train": (raw.x[idx["train"]], raw.y[idx["train"]]),
        "test": (raw.x[idx["test"]], raw.y[idx["test"]]),
        "timbre_train": timbre[idx["train"]],
        "timbre_test": timbre[idx["test"]],
    }


def _train(notes, seed=0):
    return train_audio_classifier(
        notes["train"],
        notes["test"],
        sample_rate=8000,
        num_classes=12,
        train_attributes={"timbre": notes["timbre_train"]},
        test_attributes={"timbre": notes["timbre_test"]},
        attribute_sizes={"timbre": len(TIMBRES)},
        epochs=EPOCHS,
        batch_size=16,
        lr=3e-3,
        seed=seed,
    )


@pytest.fixture(scope="module")
def trained(notes):
    with _one_thread():
        model, report = _train(notes)
    return TrainedAudioClassifier(model=model, meta=report), report


class _one_thread:
    def __enter__(self):
        self.n = torch.get_num_threads()
        torch.set_num_threads(1)

    def __exit__(self, *exc):
        torch.set_num_threads(self.n)


def test_the_mel_filterbank_tiles_the_spectrum_with_unit_triangles():
    n_fft, hop = stft_size(8000)
    assert (n_fft, hop) == (1024, 128)
    fb = mel_filterbank(8000, n_fft, 128, fmin=40.0)
    assert fb.shape == (128, n_fft // 2 + 1)
    assert torch.all(fb >= 0) and torch.all(fb.amax(1) > 0.5)  # no empty band: the bands are wider than a bin
    freqs = torch.linspace(0, 4000, n_fft // 2 + 1)
    covered = (freqs > 60) & (freqs < 3900)
    assert torch.allclose(fb.sum(0)[covered], torch.ones(int(covered.sum())), atol=0.02)  # triangles sum to 1
    centres = freqs[fb.argmax(1)]
    assert torch.all(centres[1:] >= centres[:-1])  # ascending in frequency


def test_the_classifier_learns_pitch_class_and_timbre_well_above_chance(trained):
    _, report = trained
    assert report["test_accuracy"] >= 0.5  # chance 1/12; 12 epochs on 108 clips gave 0.83
    assert report["timbre_test_accuracy"] >= 0.45  # chance 1/4; measured 0.61
    assert report["n_test"] == 36 and report["train_seconds"] < 30


def test_the_fad_of_the_test_split_to_itself_is_zero_and_to_noise_is_large(trained, notes):
    clf, _ = trained
    f_test = clf.features(torch.from_numpy(notes["test"][0]))
    f_train = clf.features(torch.from_numpy(notes["train"][0]))
    gen = torch.Generator().manual_seed(0)
    noise = (0.3 * torch.randn(len(f_test), *notes["spec"].shape, generator=gen)).clamp(-1, 1)
    f_noise = clf.features(noise)
    assert f_test.shape == (36, 64)
    floor = frechet_distance(f_test, f_train)
    assert frechet_distance(f_test, f_test) < 1e-6 * max(1.0, floor)
    assert frechet_distance(f_test, f_noise) > 5 * floor  # noise sits far from every note


def test_saving_and_loading_keeps_features_and_the_hash_and_training_is_deterministic(trained, notes, tmp_path):
    clf, report = trained
    meta = save_audio_classifier(tmp_path / "notes", clf.model, {"dataset": "notes", **report})
    assert is_audio_classifier(tmp_path / "notes") and len(meta["sha256"]) == 64
    assert meta["heads"] == {"label": 12, "timbre": 4} and meta["kind"] == "audio"
    loaded = load_audio_classifier(tmp_path / "notes")
    x = torch.from_numpy(notes["test"][0])
    assert torch.equal(loaded.features(x), clf.features(x))
    assert torch.equal(loaded.predict(x, head="timbre"), clf.predict(x, head="timbre"))
    assert loaded.attributes == ["timbre"]
    with _one_thread():
        again, _ = _train(notes)
    meta2 = save_audio_classifier(tmp_path / "again", again, {"dataset": "notes", **report})
    assert meta2["sha256"] == meta["sha256"]  # the same seed: the same bytes


class Replay(GenerativeModel):
    """Samples = the given clips drawn with replacement (a perfect model of them)."""

    family = "replay"

    def __init__(self, clips: np.ndarray, spec: DataSpec):
        super().__init__(spec=spec, config=FamilyConfig())
        self.register_buffer("clips", torch.from_numpy(clips).float())

    def forward(self, batch):
        return {"loss": torch.zeros(())}

    @torch.no_grad()
    def sample(self, n, *, generator=None, **options):
        return self.clips[torch.randint(len(self.clips), (n,), generator=generator)]


class Noise(Replay):
    @torch.no_grad()
    def sample(self, n, *, generator=None, **options):
        return (0.3 * torch.randn((n, *self.clips.shape[1:]), generator=generator)).clamp(-1, 1)


def test_evaluate_audio_with_the_classifier_reports_fad_its_floor_prdc_and_timbre_labels(trained, notes):
    from components.evaluation.audio_harness import evaluate_audio

    clf, _ = trained
    clf = TrainedAudioClassifier(model=clf.model, meta={**clf.meta, "sha256": "0" * 64})
    spec, train, test = notes["spec"], notes["train"], notes["test"]
    cfg = EvaluateConfig(n_samples=40, batch_size=40, fid_n_boot=20)
    kwargs = dict(train=train, test=test, cfg=cfg, classifier=clf, train_attributes={"timbre": notes["timbre_train"]})
    good = evaluate_audio(Replay(test[0], spec), spec, **kwargs)
    bad = evaluate_audio(Noise(test[0], spec), spec, **kwargs)
    m = good.metrics
    for key in ("fad", "fad_floor_train_vs_test", "kid", "kid_floor_train_vs_test", "precision", "recall"):
        assert math.isfinite(m[key]), key
    assert {"density", "coverage", "fad_ci95", "fad_floor_train_vs_test_ci95", "memorization"} <= set(m)
    assert m["fad_ci95"][0] <= m["fad"] <= m["fad_ci95"][1]
    # replayed test clips score like real data (fad 31 vs floor 40, recall 0.83); noise does not (fad 221, recall 0)
    assert m["fad"] < 1.5 * m["fad_floor_train_vs_test"] and m["fad"] < bad.metrics["fad"] / 5
    assert m["recall"] > bad.metrics["recall"] + 0.5 and m["coverage"] > bad.metrics["coverage"]
    assert m["classifier_yin_agreement"] > 0.5 and "timbre_kl_to_data" in m and len(m["timbre_histogram"]) == 4
    assert m["protocol"]["extractor_sha256"] == "0" * 64 and "extractor_timbre_test_accuracy" in m["protocol"]
    assert m["clear_pitch_share"] > 0.5  # the YIN metrics are still there
    timbre = good.attributes["timbre"]
    assert timbre["names"] == list(TIMBRES) and len(timbre["labels"]) == 40 and set(timbre["labels"]) <= {0, 1, 2, 3}
    assert len(good.labels) == 40  # the YIN pitch classes stay the audit's top-level labels
