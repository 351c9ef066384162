"""The share audit counts samples the classifier cannot label as their own category: junk cannot look fair by
omission (a planted case an independent reference check found: 900 junk + 100 balanced samples had FD L2 0)."""

from __future__ import annotations

import numpy as np
import pytest

from components.audit.report import audit_shares
from components.config import AuditConfig
from components.evaluation.shares import fairness_discrepancy, shares

NAMES = [str(c) for c in range(10)]
TRAIN = np.repeat(np.arange(10), 50)  # balanced, every sample labelled


def test_junk_counts_against_the_model():
    generated = [-1] * 900 + list(np.repeat(np.arange(10), 10))
    report = audit_shares(generated, TRAIN, NAMES, AuditConfig())
    assert report["share_unlabelled"] == pytest.approx(0.9) and report["share_unlabelled_train"] == 0.0
    assert report["fd_l2"] >= 0.9 and not report["passed"]
    assert report["failed"][0].startswith("fd_l2 = ")


def test_the_unlabelled_gate():
    generated = [-1] * 50 + list(np.repeat(np.arange(10), 95))
    passed = audit_shares(generated, TRAIN, NAMES, AuditConfig(max_fd_l2=0.2))
    assert passed["passed"] and "unlabelled" not in passed["gates"]
    gated = audit_shares(generated, TRAIN, NAMES, AuditConfig(max_fd_l2=0.2, max_unlabelled=0.01))
    assert gated["failed"] == ["unlabelled = 0.0500 > 0.01"]


def test_fully_labelled_samples_audit_exactly_as_before():
    rng = np.random.default_rng(0)
    generated = rng.integers(0, 10, 1000)
    report = audit_shares(generated.tolist(), TRAIN, NAMES, AuditConfig())
    expected = fairness_discrepancy(shares(generated, 10), shares(TRAIN, 10))
    assert report["fd_l2"] == pytest.approx(expected["l2"]) and report["fd_kl"] == pytest.approx(expected["kl"])
    assert report["share_unlabelled"] == 0.0


def test_a_dataset_with_its_own_unlabelled_share_is_the_reference():
    train = np.concatenate([TRAIN, np.full(500, -1)])  # half the data carries no label
    generated = [-1] * 500 + list(np.repeat(np.arange(10), 50))
    report = audit_shares(generated, train, NAMES, AuditConfig())
    assert report["fd_l2"] == pytest.approx(0.0, abs=1e-9) and report["passed"]


def test_all_junk_is_audited_not_crashed():
    report = audit_shares([-1] * 100, TRAIN, NAMES, AuditConfig())
    assert report["share_unlabelled"] == 1.0 and report["amplification"] is None and not report["passed"]
