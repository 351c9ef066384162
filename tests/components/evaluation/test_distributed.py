"""Distributed evaluation (``components.evaluation.distributed``): the chunks and their seeds do not depend on the
number of workers, so ``evaluate.num_workers`` 0, 1 and 2 draw bit-identical samples and features and give the
same metrics; on a real local Ray (the package's ``ray_session``), with the model and extractors sent through
Ray's object store."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pytest
import torch

from components.config import EvaluateConfig
from components.data import load_spec, load_split
from components.errors import GenfoundryError
from components.evaluation.distributed import actor_resources, chunk_seed, draw, plan_chunks
from components.evaluation.features import DomainClassifier, TrainedClassifier
from components.evaluation.harness import evaluate_images
from components.evaluation.simclr import SimCLREncoder, TrainedEncoder
from components.models import build_model
from components.models.base import GenerativeModel
from tests.conftest import ROOT

#: what may differ between runs of the same evaluation: wall-clock rates and where the samples were drawn
TIMING = {"samples_per_s"}
PROTOCOL_TIMING = {"sampling_device", "sampling"}


def test_chunks_depend_on_n_chunk_size_and_seed_only():
    chunks = plan_chunks(1050, 100, seed=7)
    assert [c.size for c in chunks] == [100] * 10 + [50] and [c.start for c in chunks] == list(range(0, 1050, 100))
    assert [c.seed for c in chunks] == [chunk_seed(7, i) for i in range(11)]  # chunk i's seed: (seed, i) only
    assert len({c.seed for c in chunks}) == 11 and chunk_seed(7, 0) != chunk_seed(8, 0)
    assert chunk_seed(-1, 3) == chunk_seed(-1, 3) and 0 <= chunk_seed(-1, 3) < 2**64  # any int seed
    with pytest.raises(ValueError, match="^plan_chunks: expected n >= 1 and chunk_size >= 1"):
        plan_chunks(10, 0, seed=0)


def test_actors_ask_for_a_gpu_each_where_there_are_gpus_and_refuse_a_cluster_too_small():
    assert actor_resources(2, {"CPU": 2.0}) == {"num_cpus": 1}
    assert actor_resources(2, {"CPU": 16.0, "GPU": 2.0}) == {"num_cpus": 1, "num_gpus": 1}
    with pytest.raises(GenfoundryError, match=r"^evaluate: expected a Ray cluster with 3 GPUs .* got 2 GPUs"):
        actor_resources(3, {"CPU": 16.0, "GPU": 2.0})
    with pytest.raises(GenfoundryError, match=r"num_workers = 4 \(one CPU per worker\), got 2 CPUs"):
        actor_resources(4, {"CPU": 2.0})


def test_num_workers_is_a_non_negative_config_field_defaulting_to_in_process():
    assert EvaluateConfig().num_workers == 0 and EvaluateConfig(num_workers=2).num_workers == 2
    with pytest.raises(ValueError, match="num_workers"):
        EvaluateConfig(num_workers=-1)


def test_draw_without_ray_names_what_is_missing():
    """In a fresh interpreter, where no test has started Ray."""
    code = (
        "from components.errors import GenfoundryError\n"
        "from tests.components.evaluation.test_distributed import _vae\n"
        "from components.evaluation.distributed import draw\n"
        "try:\n"
        "    draw(_vae(), 20, chunk_size=10, seed=0, num_workers=2)\n"
        "except GenfoundryError as e:\n"
        "    print(e)\n"
    )
    r = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr[-2000:]
    assert r.stdout.startswith("evaluate: evaluate.num_workers = 2 needs Ray; expected ray.init()"), r.stdout


@pytest.fixture(scope="module")
def digits(digits_root):
    spec = load_spec(digits_root, "digits")
    train, test = (load_split(digits_root, "digits", s) for s in ("train", "test"))
    train, test = (train[0][:400], train[1][:400]), (test[0][:200], test[1][:200])  # small: agreement, not values
    torch.manual_seed(0)
    clf = TrainedClassifier(model=DomainClassifier(channels=1, num_classes=10).eval(), meta={"sha256": "random"})
    enc = TrainedEncoder(model=SimCLREncoder(channels=1, width=4, num_features=16).eval(), meta={"sha256": "abc"})
    return spec, train, test, clf, enc


def _vae(spec=None) -> GenerativeModel:
    from components.data.spec import DataSpec

    spec = spec or DataSpec(name="img", kind="image", shape=(1, 8, 8), class_names=tuple("ab"), levels=17)
    torch.manual_seed(0)  # untrained: what is compared is where the samples come from, not how good they are
    return build_model("vae", {"latent_dim": 2, "width": 4}, spec).eval()


def test_zero_one_and_two_workers_draw_bit_identical_samples_features_and_moments(ray_session, digits):
    spec, _, _, clf, enc = digits
    model = _vae(spec)
    runs = {
        w: draw(model, 230, chunk_size=50, seed=3, extractors={"c": clf, "s": enc}, labeller="c", num_workers=w)
        for w in (0, 1, 2)
    }
    base = runs[0]
    assert base.samples.shape == (230, 1, 8, 8) and base.info["chunks"] == 5 and base.info["num_workers"] == 0
    for w in (1, 2):
        d = runs[w]
        assert torch.equal(d.samples, base.samples) and torch.equal(d.labels, base.labels)
        for name in ("c", "s"):
            assert torch.equal(d.features[name], base.features[name])
            for key, value in base.moments[name].metric_state.items():
                assert torch.equal(d.moments[name].metric_state[key], value), (w, name, key)
        assert d.info["device"].startswith(f"ray: {w} workers, cpu") and d.info["startup_seconds"] > 0
    # the chunks are the same whoever draws them, but they are not one stream: another chunk size, other samples
    other = draw(model, 230, chunk_size=46, seed=3)
    assert not torch.equal(other.samples, base.samples)
    assert torch.equal(other.samples[:46], draw(model, 46, chunk_size=46, seed=3).samples)


def test_text_samples_from_two_workers_are_the_in_process_ones(ray_session):
    from components.data.spec import DataSpec

    spec = DataSpec(name="txt", kind="text", shape=(6,), vocab=tuple("abcdef"))
    torch.manual_seed(0)
    gpt = build_model("gpt", {"n_layer": 1, "n_head": 2, "n_embd": 8}, spec).eval()
    in_process = draw(gpt, 120, chunk_size=25, seed=5, num_workers=0)
    on_ray = draw(gpt, 120, chunk_size=25, seed=5, num_workers=2)
    assert isinstance(on_ray.samples, list) and on_ray.samples == in_process.samples and len(on_ray.samples) == 120


def _without_timing(metrics: dict) -> dict:
    out = {k: v for k, v in metrics.items() if k not in TIMING}
    out["protocol"] = {k: v for k, v in metrics["protocol"].items() if k not in PROTOCOL_TIMING}
    return out


def test_evaluate_images_with_two_workers_gives_the_in_process_metrics(ray_session, digits):
    spec, train, test, clf, enc = digits
    model = _vae(spec)
    results = {}
    for w in (0, 2):
        cfg = EvaluateConfig(n_samples=240, batch_size=60, fid_n_boot=20, utility_steps=20, num_workers=w)
        results[w] = evaluate_images(model, spec, classifier=clf, encoder=enc, train=train, test=test, cfg=cfg)
    a, b = results[0], results[2]
    assert torch.equal(a.samples, b.samples) and a.labels == b.labels
    same = (json.dumps(_without_timing(r.metrics), sort_keys=True) for r in (a, b))
    assert next(same) == next(same)  # every metric, bit for bit (as JSON); the protocol card included
    assert a.metrics["fid"] > 0 and np.isfinite(a.metrics["simclr"]["fid"])  # real numbers, not both empty
    card_a, card_b = a.metrics["protocol"]["sampling"], b.metrics["protocol"]["sampling"]
    assert card_a["num_workers"] == 0 and card_b["num_workers"] == 2 and card_b["chunks"] == 4


class _DiesOnce(GenerativeModel):
    """Samples noise from the generator; the first call in any process after ``flag`` appears kills it."""

    family = "dies_once"

    def __init__(self, spec, flag):
        super().__init__(spec=spec, config=None)
        self.flag = str(flag)
        self.w = torch.nn.Parameter(torch.zeros(()))

    def forward(self, batch):  # a sampling-only test double: evaluation never trains it
        raise NotImplementedError

    @torch.no_grad()
    def sample(self, n, *, generator=None, **options):
        if os.path.exists(self.flag):
            os.remove(self.flag)
            os._exit(1)  # the actor's process dies mid-chunk
        return torch.rand(n, 1, 8, 8, generator=generator)


def test_a_chunk_whose_worker_died_is_redrawn_identically(ray_session, tmp_path):
    from components.data.spec import DataSpec

    spec = DataSpec(name="img", kind="image", shape=(1, 8, 8), levels=17)
    model = _DiesOnce(spec, tmp_path / "die")
    expected = draw(model, 100, chunk_size=20, seed=1).samples
    (tmp_path / "die").touch()
    got = draw(model, 100, chunk_size=20, seed=1, num_workers=1)
    assert not (tmp_path / "die").exists()  # a worker did die, and was restarted
    assert torch.equal(got.samples, expected)
