"""The transfer benchmark's measures: steps to reach a target, the paired interval, class coverage; its image
models parse."""

from __future__ import annotations

import numpy as np
import pytest

from tests.benchmarks.conftest import load_script

T = load_script("transfer")


def test_steps_to_reach_is_the_first_evaluated_step_at_or_below_the_target():
    curve = [(10, 3.0), (20, 2.5), (30, 2.2), (40, 2.3)]
    assert T.steps_to_reach(curve, 2.5) == 20 and T.steps_to_reach(curve, 2.25) == 30
    assert T.steps_to_reach(curve, 2.0) is None


def test_early_stopping_picks_the_lowest_validation_point_and_reports_its_test_value():
    curve = [(10, 2.5, 2.6), (20, 2.2, 2.4), (30, 2.2, 2.1), (40, 2.4, 2.0)]
    assert T.early_stopped(curve) == (20, 2.2, 2.4)  # the earliest of equal validation values


def test_paired_interval_is_student_t_over_the_seeds():
    r = T.paired_interval([0.1, 0.2, 0.3])
    se = np.std([0.1, 0.2, 0.3], ddof=1) / np.sqrt(3)
    assert r["mean"] == pytest.approx(0.2) and r["se"] == pytest.approx(se)
    assert r["hi"] - r["mean"] == pytest.approx(4.302653 * se, rel=1e-5)  # t(0.975, 2 dof)
    assert T.paired_interval([0.5]) == {"mean": 0.5, "se": 0.0, "lo": 0.5, "hi": 0.5, "n": 1}


def test_class_coverage_counts_classes_with_enough_samples():
    labels = np.array([5] * 50 + [6] * 45 + [7] * 4 + [1])
    c = T.class_coverage(labels, (5, 6, 7, 8, 9), min_share=0.05)
    assert c["covered"] == [5, 6] and c["coverage"] == pytest.approx(0.4) and c["on_target"] == pytest.approx(0.99)


def test_the_image_models_parse():
    from components.models import parse_family_config

    for family, cfg in T.IMAGE_MODELS.items():
        parse_family_config(family, cfg["model"])
    parse_family_config("gpt", T.GPT)
