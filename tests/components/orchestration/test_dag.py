"""Every params key dvc.yaml tracks must exist: the validate stage says which is missing before DVC deletes
any output (DVC checks a stage's params only when it runs it, after removing its outputs)."""

from __future__ import annotations

import copy

import yaml

from components.orchestration.dag import missing_params, tracked_params
from tests.conftest import ROOT

DVC = yaml.safe_load((ROOT / "dvc.yaml").read_text())
PARAMS = yaml.safe_load((ROOT / "params.yaml").read_text())


def test_the_shipped_params_have_every_tracked_key():
    assert missing_params(DVC, PARAMS) == []
    tracked = tracked_params(DVC, PARAMS)
    assert ("train@vae_mnist", "experiments.vae_mnist.train") in tracked and ("prepare", "prepare") in tracked


def test_a_missing_section_is_named_with_the_stage_that_tracks_it():
    raw = copy.deepcopy(PARAMS)
    del raw["experiments"]["vae_mnist"]["evaluate"]
    lines = missing_params(DVC, raw)
    assert len(lines) == 2  # evaluate@ and audit@ (the share bootstrap's seed) both track it
    assert lines[0].startswith("params.yaml: expected 'experiments.vae_mnist.evaluate' (dvc.yaml's evaluate@vae_mnist")
