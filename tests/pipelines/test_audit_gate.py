"""The full audit gates promotion: a generator that emits one class is blocked, a fair one is promoted.

The stages run for real and in-process (train, evaluate, audit, register) in a small project against the
real MLflow server; only the generator is a stand-in: ``Replay`` emits held-out test images (all classes, or
one) plus a little noise, so the per-group numbers are predictable and the test does not depend on how well
a tiny model trains.
"""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
import torch
import yaml

from components.data import load_spec, load_split
from components.evaluation.features import save_classifier, train_classifier
from components.models.base import FamilyConfig, GenerativeModel

AUDIT = {"max_fd_l2": 2.0, "max_quality_gap": 0.5, "max_memorization": 0.5}  # fd_l2 <= √2 always passes


class Replay(GenerativeModel):
    """Samples = test images of the given classes, drawn with replacement, plus noise of std 0.01."""

    family = "replay"

    def __init__(self, images: np.ndarray, spec):
        super().__init__(spec=spec, config=FamilyConfig())
        self.register_buffer("images", torch.from_numpy(images).float())

    def forward(self, batch):
        return {"loss": torch.zeros(())}

    @torch.no_grad()
    def sample(self, n, *, generator=None, **options):
        idx = torch.randint(len(self.images), (n,), generator=generator)
        noise = 0.01 * torch.randn((n, *self.images.shape[1:]), generator=generator)
        return (self.images[idx] + noise).clamp(0, 1)


def _experiment() -> dict:
    return {
        "family": "vae",
        "dataset": "digits",
        "model": {"latent_dim": 4, "width": 8},
        "train": {"epochs": 1, "batch_size": 64, "num_workers": 0},
        "evaluate": {"n_samples": 300},
        "audit": AUDIT,
        "selection": {"metric": "fid", "mode": "min"},
    }


@pytest.fixture(scope="module")
def gate_project(tmp_path_factory, digits_root):
    d = tmp_path_factory.mktemp("gate")
    (d / "data").mkdir()
    shutil.copytree(digits_root / "digits", d / "data" / "prepared" / "digits")
    train, test = load_split(digits_root, "digits", "train"), load_split(digits_root, "digits", "test")
    clf, acc = train_classifier(train, test, num_classes=10, epochs=4, batch_size=64, lr=3e-3, seed=0)
    save_classifier(d / "data" / "features" / "digits", clf, {"channels": 1, "num_classes": 10, **acc})
    params = {
        "prepare": {"datasets": {"digits": {"source": "digits"}}},
        "mlflow": {"experiment": "audit-gate", "model_prefix": "gate"},
        "experiments": {"fair": _experiment(), "biased": _experiment()},
    }
    (d / "params.yaml").write_text(yaml.safe_dump(params))
    return d


def test_a_one_class_generator_is_blocked_and_a_fair_one_promoted(gate_project, mlflow_server, monkeypatch):
    from pipelines import audit, evaluate, register, train

    d = gate_project
    monkeypatch.chdir(d)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", mlflow_server)
    spec = load_spec(d / "data" / "prepared", "digits")
    x_test, y_test = load_split(d / "data" / "prepared", "digits", "test")
    for experiment, images in (("fair", x_test), ("biased", x_test[y_test == 0])):
        train.main(experiment)
        monkeypatch.setattr(evaluate, "load_trained", lambda _dir, images=images: Replay(images, spec))
        evaluate.main(experiment)
        audit.main(experiment)
        register.main(experiment)

    reports = d / "reports"
    fair = json.loads((reports / "fair" / "audit_details.json").read_text())
    biased = json.loads((reports / "biased" / "audit_details.json").read_text())
    assert fair["passed"], fair["failed"]
    assert fair["quality_gap"] < 0.5 and fair["memorization_rate"] < 0.5
    assert set(fair["gates"]) == {"fd_l2", "quality_gap", "memorization"}
    assert not biased["passed"]
    assert biased["gates"]["quality_gap"]["passed"] is False
    assert biased["gates"]["fd_l2"]["passed"] and biased["gates"]["memorization"]["passed"]
    assert biased["failed"] == [f"quality_gap = {biased['quality_gap']:.4f} > 0.5"]
    assert biased["quality"]["per_group"]["0"]["recall"] > 0.5
    assert biased["quality"]["per_group"]["1"]["recall"] == 0.0
    md = (reports / "biased" / "audit.md").read_text()
    assert "FAILED" in md and "| quality_gap |" in md and "## Quality per group" in md

    fair_decision = json.loads((reports / "fair" / "registry.json").read_text())
    biased_decision = json.loads((reports / "biased" / "registry.json").read_text())
    assert fair_decision["promoted"] and fair_decision["reason"] == "first champion"
    assert not biased_decision["promoted"]
    assert "audit failed (quality_gap = " in biased_decision["reason"]

    from components.tracking import registry, runs

    c = runs.client(d)
    assert registry.alias_version(c, "gate-fair", "champion") == fair_decision["version"]
    assert registry.alias_version(c, "gate-biased", "champion") is None
    assert registry.alias_version(c, "gate-biased", "challenger") == biased_decision["version"]
    version = c.get_model_version("gate-biased", biased_decision["version"])
    assert version.tags["audit.passed"] == "False"
    assert version.tags["audit.failed"].startswith("quality_gap = ")
    assert version.tags["promotion"].startswith("blocked: quality_gap = ")
    info = json.loads((d / "models" / "biased" / "config.json").read_text())
    run = c.get_run(info["run_id"])
    assert run.data.tags["audit.gate.quality_gap"] == "FAILED"
    assert run.data.tags["audit.failed"].startswith("quality_gap = ")
    assert "audit/quality_gap" in run.data.metrics
