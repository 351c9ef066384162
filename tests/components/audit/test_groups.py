import numpy as np
import pytest

from components.audit.groups import per_group_memorization, per_group_quality
from components.audit.report import audit_markdown, audit_shares
from components.config import AuditConfig

NAMES = ["a", "b", "c"]


def _clusters(rng, n_per, centres, scale=0.3):
    x = np.concatenate([rng.normal(c, scale, size=(n_per, 2)) for c in centres])
    y = np.repeat(np.arange(len(centres)), n_per)
    return x, y


def test_quality_gap_is_zero_ish_for_a_fair_generator_and_one_for_a_one_class_one():
    rng = np.random.default_rng(0)
    centres = [(0, 0), (5, 0), (0, 5)]
    real, y_real = _clusters(rng, 60, centres)
    fake, y_fake = _clusters(rng, 60, centres)
    fair = per_group_quality(real, y_real, fake, y_fake, NAMES)
    assert fair["gap"] < 0.2
    assert all(r["recall"] > 0.8 for r in fair["per_group"].values())

    one = fake[y_fake == 0]
    biased = per_group_quality(real, y_real, one, np.zeros(len(one)), NAMES)
    assert biased["per_group"]["a"]["recall"] > 0.8
    assert biased["per_group"]["b"] == {
        "n_real": 60,
        "n_generated": 0,
        "precision": None,
        "recall": 0.0,
        "note": "at most k=3 generated samples: recall 0",
    }
    assert biased["recall_gap"] == pytest.approx(biased["per_group"]["a"]["recall"])
    assert biased["precision_gap"] is None  # one class with a precision: no gap
    assert biased["gap"] == biased["recall_gap"]


def test_quality_rejects_mismatched_labels():
    with pytest.raises(ValueError, match="^per_group_quality: expected one label per feature row"):
        per_group_quality(np.zeros((5, 2)), [0] * 4, np.zeros((5, 2)), [0] * 5, NAMES)


def test_memorization_rate_per_group_ignores_tiny_groups_in_the_gated_value():
    rng = np.random.default_rng(1)
    train = rng.normal(size=(200, 4))
    fake = np.concatenate([train[:20] + 1e-4, rng.normal(size=(40, 4)) * 3])  # 20 near-copies, 40 new
    labels = np.array([0] * 20 + [1] * 38 + [2] * 2)
    mem = per_group_memorization(fake, train, labels, NAMES, min_group=10)
    assert mem["per_group"]["a"] == {"n_generated": 20, "rate": 1.0}
    assert mem["rate"] == pytest.approx(20 / 60, abs=0.05)
    assert mem["max_group_rate"] == 1.0 and mem["value"] == 1.0
    only_small = per_group_memorization(fake[20:], train, labels[20:], NAMES, min_group=50)
    assert only_small["max_group_rate"] is None and only_small["value"] == only_small["rate"]


def test_gates_name_the_gate_value_and_threshold_and_optional_gates_stay_optional():
    groups = {
        "quality": {"k": 3, "per_group": {}, "precision_gap": 0.1, "recall_gap": 0.7, "gap": 0.7},
        "memorization": {
            "rate": 0.02,
            "value": 0.05,
            "per_group": {},
            "max_group_rate": 0.05,
            "min_group": 10,
            "rule": "r",
        },
    }
    labels, train = [0, 1, 2] * 10, np.array([0, 1, 2] * 10)
    ungated = audit_shares(labels, train, NAMES, AuditConfig(), groups=groups)
    assert ungated["passed"] and set(ungated["gates"]) == {"fd_l2"}
    assert ungated["quality_gap"] == 0.7 and ungated["memorization_rate"] == 0.02

    cfg = AuditConfig(max_quality_gap=0.5, max_memorization=0.1)
    report = audit_shares(labels, train, NAMES, cfg, groups=groups)
    assert not report["passed"]
    assert report["failed"] == ["quality_gap = 0.7000 > 0.5"]
    assert report["gates"]["memorization"] == {"value": 0.05, "threshold": 0.1, "passed": True}
    md = audit_markdown(report, "exp")
    assert "Verdict: **FAILED**: quality_gap = 0.7000 > 0.5" in md and "| quality_gap | 0.7000 | 0.5 | NO |" in md

    unmeasured = audit_shares(
        labels, train, NAMES, cfg, groups={**groups, "quality": {**groups["quality"], "gap": None}}
    )
    assert unmeasured["failed"] == ["quality_gap = nan > 0.5"]


def test_existing_params_still_parse_and_new_gates_are_validated():
    assert AuditConfig(max_fd_l2=0.15).max_quality_gap is None
    with pytest.raises(ValueError):
        AuditConfig(max_memorization=1.5)
