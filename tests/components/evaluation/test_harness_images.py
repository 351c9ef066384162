"""``harness.evaluate_images`` end to end on digits with a "model" that replays given images: a planted copy
of the training set is flagged as memorized, held-out images are not, and eval.json carries the FID
interval, the memorization report and the data-augmentation utility. For 2-D mixtures the protocol card
names the published testbed (grid25) the leaderboard compares with."""

import json

import numpy as np
import pytest
import torch

from components.config import EvaluateConfig
from components.data import load_spec, load_split
from components.evaluation.features import DomainClassifier, TrainedClassifier
from components.evaluation.frechet import frechet_distance
from components.evaluation.harness import evaluate_images, memorization_in_features
from components.evaluation.simclr import SimCLREncoder, TrainedEncoder
from components.models.base import GenerativeModel


class Replay(GenerativeModel):
    """Draws the rows of ``images`` in order: a generator that is exactly a given image set."""

    family = "replay"

    def __init__(self, spec, images):
        super().__init__(spec=spec, config=None)
        self.images = torch.from_numpy(images).float()
        self.cursor = 0

    def forward(self, batch):  # abstract in GenerativeModel; a replayed set is sampled, never trained
        raise NotImplementedError

    @torch.no_grad()
    def sample(self, n, *, generator=None, **options):
        out = self.images[self.cursor : self.cursor + n]
        self.cursor += n
        return out


@pytest.fixture(scope="module")
def setup(digits_root):
    spec = load_spec(digits_root, "digits")
    train, val, test = (load_split(digits_root, "digits", s) for s in ("train", "val", "test"))
    torch.manual_seed(0)  # an untrained extractor: random convolutional features are enough to find copies
    clf = TrainedClassifier(model=DomainClassifier(channels=1, num_classes=10).eval(), meta={"sha256": "random"})
    return spec, train, val, test, clf


def _evaluate(setup, images):
    spec, train, _, test, clf = setup
    cfg = EvaluateConfig(n_samples=len(images), batch_size=100, fid_n_boot=50, utility_steps=30)  # wiring only
    return evaluate_images(Replay(spec, images), spec, classifier=clf, train=train, test=test, cfg=cfg).metrics


def test_a_planted_copy_of_the_training_set_is_flagged(setup):
    _, train, _, test, clf = setup
    m = _evaluate(setup, train[0][:300])
    mem = m["memorization"]
    assert mem["nn_ratio_memorized"] == 1.0 and mem["authenticity"] == 0.0  # every sample is a training image
    assert mem["nn_train_median"] == 0.0 and mem["closer_to_train_share"] == 1.0
    assert mem["c_t"] < -5 and mem["n_fake"] == 300 and mem["n_train"] == len(train[0])
    # the FID interval: from the same features as torchmetrics' FID, around it
    lo, hi = m["fid_ci95"]
    assert lo <= m["fid"] <= hi
    features = clf.features(torch.from_numpy(test[0]).float()), clf.features(torch.from_numpy(train[0][:300]))
    assert frechet_distance(*features) == pytest.approx(m["fid"], abs=1e-3)
    assert m["fid_floor_train_vs_test_ci95"][0] <= m["fid_floor_train_vs_test"] <= m["fid_floor_train_vs_test_ci95"][1]
    assert m["protocol"]["fid_interval"]["n_boot"] == 50
    aug = m["augmentation"]
    assert set(aug) >= {"acc_real", "acc_real_plus_generated", "delta", "delta_ci95"} and aug["n_generated"] == 300
    json.dumps(m, allow_nan=False)  # eval.json stays strict JSON
    assert "simclr" not in m and "simclr_extractor" not in m["protocol"]  # no encoder: one feature space


def test_a_simclr_encoder_adds_the_label_free_space(setup):
    spec, train, val, test, clf = setup
    train, test = (train[0][:300], train[1][:300]), (test[0][:150], test[1][:150])  # small: the wiring only
    torch.manual_seed(1)  # an untrained encoder is enough for the wiring
    enc = TrainedEncoder(model=SimCLREncoder(channels=1, width=4, num_features=16).eval(), meta={"sha256": "abc"})
    cfg = EvaluateConfig(n_samples=100, batch_size=100, fid_n_boot=0, utility_steps=0)
    m = evaluate_images(
        Replay(spec, val[0][:100]), spec, classifier=clf, encoder=enc, train=train, test=test, cfg=cfg
    ).metrics
    s = m["simclr"]
    assert set(s) == {"fid", "kid", "kid_std", "fid_floor_train_vs_test", "kid_floor_train_vs_test", "precision",
                      "recall", "density", "coverage"}  # fmt: skip
    assert all(np.isfinite(v) for v in s.values()) and 0 <= s["precision"] <= 1 and 0 <= s["coverage"] <= 1
    f_test, f_fake = (enc.features(torch.from_numpy(a).float()) for a in (test[0], val[0][:100]))
    assert frechet_distance(f_test, f_fake) == pytest.approx(s["fid"], rel=1e-3, abs=1e-3)  # the encoder's space
    assert s["fid"] != pytest.approx(m["fid"])  # not the classifier's
    card = m["protocol"]["simclr_extractor"]
    assert card["sha256"] == "abc" and card["feature_dim"] == 16 and card["name"].startswith("SimCLR")
    json.dumps(m, allow_nan=False)


def test_held_out_images_are_not_flagged(setup):
    _, train, val, test, clf = setup
    f_train, f_val, f_test = (clf.features(torch.from_numpy(s[0]).float()) for s in (train, val, test))
    mem = memorization_in_features(f_train, f_test, f_val, seed=0)  # what evaluate_images reports
    assert mem["nn_ratio_memorized"] < 0.05 and mem["authenticity"] > 0.4
    assert abs(mem["c_t"]) < 3  # held-out images behave like the test split
    assert mem["nn_train_median"] == pytest.approx(mem["test_nn_train_median"], rel=0.25)
    assert np.isfinite(mem["c_t"])


def test_points_protocol_names_the_published_mixture():
    from components.data.mixtures import mixture
    from components.data.spec import DataSpec
    from components.evaluation.harness import evaluate_points

    grid = mixture("grid25")
    x, y = grid.sample(500, seed=0)
    extras = {"means": grid.means.tolist(), "sigma": grid.sigma}
    spec = DataSpec(name="my_grid", kind="points", shape=(2,), class_names=tuple(map(str, range(25))), extras=extras)
    m = evaluate_points(Replay(spec, x), spec, train=(x, y), cfg=EvaluateConfig(n_samples=500)).metrics
    assert m["protocol"]["mixture"] == "grid25" and m["protocol"]["num_modes"] == 25 and m["modes_captured"] == 25
    custom = DataSpec(name="c", kind="points", shape=(2,), extras={"means": [[0.0, 0.0], [9.0, 9.0]], "sigma": 0.05})
    m = evaluate_points(Replay(custom, x), custom, train=(x, y), cfg=EvaluateConfig(n_samples=50)).metrics
    assert m["protocol"]["mixture"] is None and m["protocol"]["num_modes"] == 2
