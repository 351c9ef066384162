"""Smoke test of the two-node cluster fixture: two live nodes, tasks pinned to each, what each node's filesystem
shows, ``ray job submit`` to the head, and a worker raylet killed (SIGKILL) and brought back."""

from __future__ import annotations

import json
import os
import sys
import time

import pytest

from tests.cluster.netns import NetnsNotPermitted, TwoNodeCluster
from tests.conftest import ROOT

pytestmark = pytest.mark.slow  # real Ray nodes and an MLflow server: `make test-slow`

# a driver run in the head's namespace: one task pinned to each node (by the nodes' custom resources) reports
# where it ran, which of GF_PATHS exist there, and leaves a file in the shared storage folder
FACTS = r"""
import json, os, ray
paths, storage = json.loads(os.environ["GF_PATHS"]), os.environ["GF_STORAGE"]
ray.init(log_to_driver=False)

@ray.remote(num_cpus=0)
def facts(role):
    with open(os.path.join(storage, f"written-on-{role}"), "w") as f:
        f.write(ray.get_runtime_context().get_node_id())
    return {"node_id": ray.get_runtime_context().get_node_id(), "ip": ray.util.get_node_ip_address(),
            "exists": {p: os.path.exists(p) for p in paths}}

print(json.dumps({role: ray.get(facts.options(resources={role: 1}).remote(role), timeout=180)
                  for role in ("head", "worker")}))
"""


def facts(cluster: TwoNodeCluster, paths: list[str]) -> dict:
    env = {"GF_PATHS": json.dumps(paths), "GF_STORAGE": str(cluster.storage)}
    return cluster.python_in("head", FACTS, env=env)


def test_two_alive_nodes_and_what_each_sees(two_node_cluster: TwoNodeCluster):
    c = two_node_cluster
    alive = {n["node_ip"]: n for n in c.state("nodes", state="ALIVE")}
    assert set(alive) == {c.head.ip, c.worker.ip}, alive
    assert alive[c.head.ip]["is_head_node"] and not alive[c.worker.ip]["is_head_node"]
    assert alive[c.head.ip]["resources_total"]["head"] == 1 and alive[c.worker.ip]["resources_total"]["worker"] == 1
    assert {n["node_id"] for n in alive.values()} == set(c.node_ids.values())

    marker = c.project / "data" / "smoke-marker"  # the cluster's own scratch project: removed with it
    marker.write_text("prepared on the head")
    raw = ROOT / "data" / "raw"
    paths = [str(marker), str(raw), str(c.storage)]
    out = facts(c, paths)
    assert out["head"]["node_id"] == c.node_ids["head"] and out["head"]["ip"] == c.head.ip
    assert out["worker"]["node_id"] == c.node_ids["worker"] and out["worker"]["ip"] == c.worker.ip
    # the head is the project's machine; the worker node has no data/ of its own, but shares the storage folder
    assert out["head"]["exists"] == {str(marker): True, str(raw): raw.exists(), str(c.storage): True}
    assert out["worker"]["exists"] == {str(marker): False, str(raw): False, str(c.storage): True}
    for role in ("head", "worker"):
        assert (c.storage / f"written-on-{role}").read_text() == c.node_ids[role]
    # the hiding mounts live only in the worker's mount namespace
    assert not c.mounts_in(os.getpid())
    (raylet,) = [p for p in c._procs_in(c.worker.netns) if p.info["name"] == "raylet"]
    assert sorted(c.mounts_in(raylet.pid)) == sorted(map(str, c.hidden))


JOB = r"""
import mlflow, ray
ray.init()

@ray.remote(num_cpus=0, resources={"worker": 1})
def log_from_the_worker_node():
    node = ray.get_runtime_context().get_node_id()
    mlflow.set_experiment("two-node-smoke")
    with mlflow.start_run(run_name="from-worker") as run:
        mlflow.log_metric("answer", 42)
        mlflow.set_tag("node_id", node)
    return node, run.info.run_id

node, run_id = ray.get(log_from_the_worker_node.remote())
print("worker task ran on", node, "run", run_id)
"""


def test_ray_job_submit_runs_to_succeeded(two_node_cluster: TwoNodeCluster):
    """A job submitted to the head's dashboard; its task on the worker node logs to the MLflow server on the head."""
    from mlflow.tracking import MlflowClient

    c = two_node_cluster
    runtime_env = {"env_vars": {"MLFLOW_TRACKING_URI": c.mlflow_uri, "MLFLOW_DISABLE_TELEMETRY": "true"}}
    job = c.wait_job(c.submit([sys.executable, "-c", JOB], runtime_env=runtime_env), timeout=300)
    assert job["status"] == "SUCCEEDED", f"{job['message']}\n{job['logs'][-3000:]}"
    assert job["driver_node_id"] == c.node_ids["head"]
    said = f"worker task ran on {c.node_ids['worker']} run "
    assert said in job["logs"], job["logs"][-3000:]
    run_id = job["logs"].split(said)[1].split()[0]

    def logged():  # in the head's namespace: the test process cannot reach the private link
        run = MlflowClient(tracking_uri=c.mlflow_uri).get_run(run_id)
        return run.data.metrics, run.data.tags.get("node_id"), run.info.status

    assert c.call(logged) == ({"answer": 42.0}, c.node_ids["worker"], "FINISHED")


def test_worker_raylet_sigkill_then_restart(two_node_cluster: TwoNodeCluster):
    c = two_node_cluster
    old = c.node_ids["worker"]
    c.kill_worker_raylet()
    t0 = time.monotonic()
    c.wait_dead(old, timeout=120)  # the GCS's health checks: about 15 s with Ray's defaults
    print(f"head saw the worker node dead after {time.monotonic() - t0:.1f} s")
    new = c.restart_worker_node(timeout=180)
    assert new != old
    states = c.node_states()
    assert states[old] == "DEAD" and states[new] == "ALIVE" and states[c.node_ids["head"]] == "ALIVE", states
    out = facts(c, [str(ROOT / "data" / "raw")])  # the new node serves tasks, and still without data/
    assert out["worker"]["node_id"] == new and out["worker"]["exists"] == {str(ROOT / "data" / "raw"): False}


def test_teardown_leaves_nothing():
    """The network and mount part alone: a process under the worker's hiding mounts, then close()."""
    c = TwoNodeCluster()
    try:
        try:
            c._network()
        except NetnsNotPermitted as e:  # the one allowed skip: `ip netns` refused here (not root), said in the output
            pytest.skip(f"ip netns not permitted here: {e}")
        (c.project / "data" / "on-the-head").write_text("")
        script = f"ls -A {c.project / 'data'} | wc -l; sleep 600 >/dev/null 2>&1 & echo $!"
        r = c.run_in("worker", ["sh", "-c", script], timeout=60)
        count, sleeper = r.stdout.split()
        assert count == "0"  # hidden: an empty tmpfs
        assert c.mounts_in(int(sleeper)) and not c.mounts_in(os.getpid())
        names = (c.head.netns, c.worker.netns)
        assert all(ns in os.listdir("/run/netns") for ns in names)
    finally:
        c.close()  # raises if anything is left
    assert not c.leftovers()
    assert not any(ns in os.listdir("/run/netns") for ns in names)
