"""Distributed evaluation across the two nodes: ``evaluate_images`` with ``evaluate.num_workers = 2`` run as a driver
on the head, its two sample-drawing actors (1 CPU each on 1-CPU nodes) on different nodes, the model and the
extractors sent through Ray's object store (the worker node has no data/), gives the FID, and every other metric,
of the one-process evaluation (``num_workers = 0``) in the same driver."""

from __future__ import annotations

import pytest

from tests.cluster.netns import TwoNodeCluster

pytestmark = pytest.mark.slow  # a real two-node Ray cluster: `make test-slow`

EVALUATE = r"""
import json, ray, torch
from components.config import EvaluateConfig
from components.data import get_source, spec_of
from components.evaluation.features import DomainClassifier, TrainedClassifier
from components.evaluation.harness import evaluate_images
from components.models import build_model

ray.init(log_to_driver=False)  # RAY_ADDRESS: the cluster's head
raw = get_source("digits")()
spec = spec_of("digits", raw)
x, y = raw.x, raw.y
train, test = (x[:600], y[:600]), (x[600:900], y[600:900])
torch.manual_seed(0)  # untrained: what is compared is where the samples come from, not how good they are
model = build_model("vae", {"latent_dim": 2, "width": 4}, spec).eval()
clf = TrainedClassifier(model=DomainClassifier(channels=1, num_classes=10).eval(), meta={"sha256": "random"})
out = {}
for w in (0, 2):
    cfg = EvaluateConfig(n_samples=400, batch_size=50, fid_n_boot=0, utility_steps=0, num_workers=w)
    ev = evaluate_images(model, spec, classifier=clf, encoder=None, train=train, test=test, cfg=cfg)
    m = {k: v for k, v in ev.metrics.items() if k != "samples_per_s"}
    m["protocol"] = {k: v for k, v in m["protocol"].items() if k not in ("sampling", "sampling_device")}
    out[w] = {"metrics": json.dumps(m, sort_keys=True), "fid": ev.metrics["fid"],
              "device": ev.metrics["protocol"]["sampling_device"]}
    out[w]["samples"] = ev.samples
out["same_samples"] = bool(torch.equal(out[0].pop("samples"), out[2].pop("samples")))
out["job_id"] = ray.get_runtime_context().get_job_id()
print(json.dumps(out))
"""


def test_fid_on_two_nodes_equals_the_one_process_fid(two_node_cluster: TwoNodeCluster):
    c = two_node_cluster
    out = c.python_in("head", EVALUATE, timeout=600)
    one, two = out["0"], out["2"]
    print(f"FID in one process {one['fid']!r}, on two nodes {two['fid']!r} ({two['device']})")
    assert two["device"].startswith("ray: 2 workers, cpu")
    assert out["same_samples"]  # the chunks and their seeds do not depend on who draws them
    assert two["fid"] == one["fid"] and one["fid"] > 0
    assert two["metrics"] == one["metrics"]  # KID, PRDC, class shares, memorization: bit for bit, as JSON
    actors = c.state("actors", class_name="ChunkWorker", job_id=out["job_id"])
    assert sorted(a["node_id"] for a in actors) == sorted(c.node_ids.values())  # one drawing actor on each node
