"""The train stage as a Ray job on the two-node cluster: ``ray job submit`` to the head runs
``python -m pipelines.train <experiment>`` in a scratch project, its two Ray Train workers (1 CPU each on 1-CPU
nodes) land on different nodes, the worker node reads no data/ of its own (it is hidden there: its batches come
through Ray Data from the head), rank 0 logs every epoch to the MLflow server on the head's address, and the
checkpoints land in the folder both nodes share. Then the same with the worker node's raylet SIGKILLed after the
first checkpoint: Ray Train restarts from the last checkpoint once the node is back, and MLflow has every epoch once.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
import yaml

from tests.cluster.netns import TwoNodeCluster

pytestmark = pytest.mark.slow  # a real two-node Ray cluster and an MLflow server: `make test-slow`

EXPERIMENT = "two-nodes"
VAE = {"family": "vae", "dataset": "digits", "model": {"latent_dim": 4, "width": 8}}
TRAIN = {"batch_size": 64, "lr": 0.003, "num_workers": 2, "cpus_per_worker": 1, "use_gpu": False}
EXPERIMENTS = {
    "vae_2n": VAE | {"train": TRAIN | {"epochs": 2, "max_failures": 0}},
    # batch 16: ~40 steps an epoch, each with an all-reduce over the link, so the epochs after the first
    # checkpoint last long enough for the kill to land in them
    "vae_failover": VAE | {"train": TRAIN | {"epochs": 6, "batch_size": 16, "max_failures": 1}},
}


@pytest.fixture(scope="module")
def project(_cluster: TwoNodeCluster) -> Path:
    """The cluster's scratch project: params.yaml with the two experiments, digits prepared by the project's
    prepare stage (on the head's filesystem: the worker node sees an empty data/)."""
    d = _cluster.project
    params = {
        "prepare": {"datasets": {"digits": {"source": "digits"}}},
        "ray": {"storage_path": str(_cluster.storage)},
        "mlflow": {"experiment": EXPERIMENT},
        "experiments": EXPERIMENTS,
    }
    (d / "params.yaml").write_text(yaml.safe_dump(params))
    r = subprocess.run([sys.executable, "-m", "pipelines.prepare"], cwd=d, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    return d


def submit_train(c: TwoNodeCluster, project: Path, experiment: str) -> str:
    """``ray job submit`` of the train stage, run in the project on the head; the submission id. The project's
    code is the installed package (the venv both nodes share), its data the head's data/prepared."""
    env_vars = {"MLFLOW_TRACKING_URI": c.mlflow_uri, "MLFLOW_DISABLE_TELEMETRY": "true"}
    script = f"cd {project} && exec {sys.executable} -m pipelines.train {experiment}"
    return c.submit(["bash", "-c", script], runtime_env={"env_vars": env_vars})


def mlflow_run(c: TwoNodeCluster, experiment: str) -> dict:
    """The experiment's MLflow run as the server on the head has it: status, tags, and the epochs (steps) each
    per-epoch metric (``train/loss``, ``train/kl``, ...) was logged at."""
    from mlflow.tracking import MlflowClient

    def get() -> dict:
        m = MlflowClient(tracking_uri=c.mlflow_uri)
        exp = m.get_experiment_by_name(EXPERIMENT)
        (run,) = m.search_runs([exp.experiment_id], f"tags.`genfoundry.experiment` = '{experiment}'")
        rid = run.info.run_id
        epochs = {k: sorted(h.step for h in m.get_metric_history(rid, k)) for k in run.data.metrics if "/" in k}
        return {"status": run.info.status, "tags": run.data.tags, "epochs": epochs}

    return c.call(get)  # in the head's namespace: the test process cannot reach the private link


def train_workers(c: TwoNodeCluster, job: dict) -> list[str]:
    """The node ids of the job's Ray Train worker actors (every attempt's), from Ray's state API on the head."""
    return sorted(a["node_id"] for a in c.state("actors", class_name="RayTrainWorker", job_id=job["job_id"]))


def run_dir(c: TwoNodeCluster, experiment: str) -> Path:
    (d,) = c.storage.glob(f"{experiment}-*")  # Ray Train's run folder: <experiment>-<hash of the run's params>
    return d


def checkpoint_epochs(run: Path) -> list[int]:
    """The epochs of the checkpoints Ray Train persisted under ``run``."""
    return sorted(
        torch.load(p, map_location="cpu", weights_only=True)["epoch"] for p in run.glob("checkpoint_*/state.pt")
    )


def reported_checkpoints(run: Path) -> int:
    """How many checkpoints Ray Train's controller has registered (its snapshot in the run folder)."""
    try:
        return len(json.loads((run / "checkpoint_manager_snapshot.json").read_text())["checkpoint_results"])
    except (OSError, ValueError, KeyError):  # not written yet, or mid-write
        return 0


def test_train_job_spans_both_nodes(two_node_cluster: TwoNodeCluster, project: Path):
    c = two_node_cluster
    job = c.wait_job(submit_train(c, project, "vae_2n"), timeout=540)
    assert job["status"] == "SUCCEEDED", f"{job['message']}\n{job['logs'][-3000:]}\n{c.log_tails()}"
    assert job["driver_node_id"] == c.node_ids["head"]  # the stage ran on the head, where data/ is

    assert train_workers(c, job) == sorted(c.node_ids.values())  # one worker on each node
    # the worker node has no data/ of its own: its rank's batches came through Ray Data from the head
    assert (project / "data" / "prepared" / "digits").is_dir()
    assert project / "data" in c.hidden
    assert c.run_in("worker", ["find", *c.hidden, "-mindepth", "1"]).stdout == ""

    run = mlflow_run(c, "vae_2n")
    assert run["status"] == "FINISHED", run
    assert "train/loss" in run["epochs"], run
    assert all(steps == [1, 2] for steps in run["epochs"].values()), run["epochs"]  # every epoch, once
    assert checkpoint_epochs(run_dir(c, "vae_2n")) == [1, 2]  # in the shared storage, rank 0 wrote them
    assert (project / "models" / "vae_2n" / "config.json").exists()


def test_worker_node_killed_mid_training_resumes_from_checkpoint(two_node_cluster: TwoNodeCluster, project: Path):
    c = two_node_cluster
    epochs = EXPERIMENTS["vae_failover"]["train"]["epochs"]
    old = c.node_ids["worker"]
    submission = submit_train(c, project, "vae_failover")

    def first_checkpoint() -> Path | None:
        assert c.job(submission)["status"] in ("PENDING", "RUNNING"), c.job(submission)
        runs = list(c.storage.glob("vae_failover-*"))
        return runs[0] if runs and reported_checkpoints(runs[0]) else None

    run = c.wait(first_checkpoint, timeout=400, what="the first reported checkpoint", every=0.2)
    c.kill_worker_raylet()
    killed_after = checkpoint_epochs(run)
    assert max(killed_after) < epochs, f"training ended before the kill: checkpoints {killed_after}"
    t0 = time.monotonic()
    c.wait_dead(old)
    new = c.restart_worker_node()
    print(f"killed after checkpoints {killed_after}; worker node back after {time.monotonic() - t0:.0f} s")

    job = c.wait_job(submission, timeout=540)
    assert job["status"] == "SUCCEEDED", f"{job['message']}\n{job['logs'][-3000:]}\n{c.log_tails()}"
    # the first attempt ran on the head and the old worker node, the restarted one on the head and the new node
    assert train_workers(c, job) == sorted([c.node_ids["head"], c.node_ids["head"], old, new])

    mlrun = mlflow_run(c, "vae_failover")
    assert mlrun["status"] == "FINISHED", mlrun
    assert "train/loss" in mlrun["epochs"], mlrun
    every_epoch_once = list(range(1, epochs + 1))
    assert all(steps == every_epoch_once for steps in mlrun["epochs"].values()), mlrun["epochs"]
    resumed = int(mlrun["tags"]["train.resumed_from"])  # one restart, from a checkpoint reported before the kill
    assert 1 <= resumed <= max(killed_after) + 1, (resumed, killed_after)
    assert checkpoint_epochs(run)[-1] == epochs
