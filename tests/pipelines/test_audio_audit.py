"""Audio through the features stage and the audit: the stage trains the audio domain classifier for a notes
dataset, the audit reports the YIN pitch-class audit and the classifier's timbre audit with their gates, and a
timbre-collapsed sample set fails the timbre gate while the pitch-class gates pass.

No MLflow: the features stage logs nothing, and the audit is called below its stage (``audio_features`` +
``audio_report``, what ``pipelines.audit.main`` runs for audio before it writes and logs the report).
"""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
import yaml

from components.config import AuditConfig, EvaluateConfig
from components.data import load_attributes, load_spec, load_split, prepare_dataset
from components.data.audio import TIMBRES, load_notes
from components.errors import ConfigError
from components.layout import SAMPLES
from components.models.base import FamilyConfig, GenerativeModel


class Replay(GenerativeModel):
    """Samples = the given clips, drawn with replacement."""

    family = "replay"

    def __init__(self, clips: np.ndarray, spec):
        super().__init__(spec=spec, config=FamilyConfig())
        self.register_buffer("clips", torch.from_numpy(clips).float())

    def forward(self, batch):
        return {"loss": torch.zeros(())}

    @torch.no_grad()
    def sample(self, n, *, generator=None, **options):
        return self.clips[torch.randint(len(self.clips), (n,), generator=generator)]


@pytest.fixture(scope="module")
def project(tmp_path_factory):
    """A project with a tiny notes dataset, after the features stage."""
    from pipelines import features

    d = tmp_path_factory.mktemp("audio")
    notes = {"source": "notes", "n_per_class": 12, "seconds": 0.25}
    params = {
        "prepare": {"datasets": {"notes": notes}},
        "features": {"epochs": 12, "batch_size": 16, "lr": 0.003, "seed": 0},
        "experiments": {},
    }
    (d / "params.yaml").write_text(yaml.safe_dump(params))
    prepare_dataset(
        "notes", load_notes(n_per_class=12, seconds=0.25), d / "data" / "prepared", val=0.1, test=0.2, seed=0
    )
    mp = pytest.MonkeyPatch()
    mp.chdir(d)
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        features.main()
    finally:
        torch.set_num_threads(n)
        mp.undo()
    return d


def test_the_features_stage_trains_the_audio_classifier_with_both_heads(project):
    meta = json.loads((project / "data" / "features" / "notes" / "meta.json").read_text())
    assert meta["kind"] == "audio" and meta["heads"] == {"label": 12, "timbre": 4} and len(meta["sha256"]) == 64
    assert meta["test_accuracy"] > 0.3 and meta["timbre_test_accuracy"] > 0.4  # chance 1/12 and 1/4
    assert "train_seconds" not in meta  # the folder is a function of data and params only
    report = json.loads((project / "reports" / "features.json").read_text())["notes"]
    assert set(report) == {"test_accuracy", "timbre_test_accuracy", "train_seconds", "sha256"}


def _audit(project, monkeypatch, clips: np.ndarray, max_fd_l2: float) -> dict:
    """evaluate_audio on replayed ``clips``, labels.json as the evaluate stage writes it, then the audit."""
    from components.evaluation.audio_features import load_audio_classifier
    from components.evaluation.audio_harness import evaluate_audio
    from pipelines import audit
    from pipelines.evaluate import labels_record

    monkeypatch.chdir(project)
    root = project / "data" / "prepared"
    spec = load_spec(root, "notes")
    train, test = load_split(root, "notes", "train"), load_split(root, "notes", "test")
    result = evaluate_audio(
        Replay(clips, spec),
        spec,
        train=train,
        test=test,
        cfg=EvaluateConfig(n_samples=60, batch_size=60, fid_n_boot=0),
        classifier=load_audio_classifier(project / "data" / "features" / "notes"),
        train_attributes=load_attributes(root, "notes", "train"),
    )
    assert "fad" in result.metrics and "timbre_kl_to_data" in result.metrics
    eval_dir = project / "eval"
    eval_dir.mkdir(exist_ok=True)
    np.savez_compressed(eval_dir / SAMPLES, x=np.asarray(result.samples, dtype=np.float32))
    labels = json.loads(json.dumps(labels_record(result, spec)))  # through JSON, as the audit reads it
    cfg = AuditConfig(max_fd_l2=max_fd_l2, max_memorization=1.0)  # measured and gated, never failing
    report = audit.audio_report(
        labels,
        train[1],
        load_attributes(root, "notes", "train"),
        cfg,
        seed=0,
        features=audit.audio_features("notes", eval_dir),
    )
    report["markdown"] = audit.audit_markdown_all(report, "wavenet_notes")
    return report


def test_a_timbre_collapsed_sample_set_fails_the_timbre_gate_only(project, monkeypatch):
    root = project / "data" / "prepared"
    x_train, _ = load_split(root, "notes", "train")
    timbre = load_attributes(root, "notes", "train")["timbre"]
    # replayed train clips: all 12 pitch classes either way (27 "bright" clips), and copies the audit must flag
    fair = _audit(project, monkeypatch, x_train, max_fd_l2=0.35)
    collapsed = _audit(project, monkeypatch, x_train[timbre == TIMBRES.index("bright")], max_fd_l2=0.35)

    for r in (fair, collapsed):
        assert r["attribute"] == "pitch class" and set(r["attributes"]) == {"timbre"}
        assert set(r["gates"]) == {"fd_l2", "memorization", "timbre.fd_l2", "timbre.memorization"}
        assert r["gates"]["fd_l2"]["passed"]  # the pitch classes stay balanced
        assert r["memorization_rate"] > 0.5  # exact copies of train clips, found in the classifier's features
        sub = r["attributes"]["timbre"]
        assert set(sub["shares_generated"]) == set(TIMBRES) and sub["n_generated"] == 60
        assert set(sub["quality"]["per_group"]) == set(TIMBRES) and "classifier features" in sub["memorization"]["rule"]
        assert "quality" in r  # per pitch class, in the same features
    assert fair["passed"], fair["failed"]
    sub = collapsed["attributes"]["timbre"]
    assert sub["fd_l2"] > 0.5 and sub["shares_generated"]["bright"] > 0.7
    assert not collapsed["passed"]
    assert collapsed["failed"] == [f"timbre.fd_l2 = {sub['fd_l2']:.4f} > 0.35"]
    md = collapsed["markdown"]
    assert "| timbre.fd_l2 |" in md and "## Attribute `timbre`" in md and "### Shares of `timbre`" in md


def test_image_gates_on_audio_need_the_classifier():
    from pipelines.audit import _image_gates_unset

    _image_gates_unset("x", AuditConfig(), "audio")
    with pytest.raises(ConfigError, match="audio without a domain classifier"):
        _image_gates_unset("x", AuditConfig(max_memorization=0.1), "audio")
