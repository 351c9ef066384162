"""The identity of a training run: what keys its Ray checkpoints and its MLflow run."""

from __future__ import annotations

from components.config import TrainConfig
from components.training import job


def _key(**kw) -> str:
    args = {"experiment": "e", "family": "vae", "model": {"width": 8}, "train": TrainConfig(), "data_sha256": "d"}
    return job.run_identity(**{**args, **kw})[1]


def test_the_run_key_follows_params_data_init_and_the_code(monkeypatch):
    base = _key()
    assert base == _key() and base.startswith("e-")
    assert len({base, _key(model={"width": 16}), _key(data_sha256="x"), _key(init_sha256="w"), _key(family="gan")}) == 5
    monkeypatch.setattr(job, "code_sha256", lambda family: "edited")  # an edited objective: a new run, no resume
    assert _key() != base


def test_the_code_hash_covers_the_family_module_and_the_loop():
    assert job.code_sha256("vae") != job.code_sha256("gan")
    assert len(job.code_sha256("wavenet")) == 64
