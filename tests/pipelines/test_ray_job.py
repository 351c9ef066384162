"""Job submission to a real Ray cluster: ``ray start --head`` on localhost, ``ray job submit --working-dir``.

The job prepares the data and trains one experiment on the cluster; its metrics must reach the MLflow
server named in ``runtime_env`` and its checkpoints the shared ``storage_path``. The test stops the cluster.
"""

import contextlib
import json
import os
import secrets
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import psutil
import pytest
import yaml
from mlflow.tracking import MlflowClient

from tests.conftest import ROOT
from tests.pipelines.conftest import wait_http

pytestmark = pytest.mark.slow  # end to end: `make test-slow` (CI runs it after `make test`)

BIN = Path(sys.executable).parent


def _port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def stop_cluster(temp_dir: str, *, timeout: float = 30.0) -> int:
    """Stop the Ray cluster started with ``--temp-dir=temp_dir``, and only it: its daemons name the temp dir in a
    ``--flag=...`` argument (GCS, raylet, dashboard, monitors) and every worker is a raylet's descendant.
    ``ray stop --force`` would kill every Ray process on the machine, other users' clusters included."""
    roots = [
        p
        for p in psutil.process_iter(["cmdline"])
        if any(a.startswith("--") and temp_dir in a for a in (p.info["cmdline"] or []))
    ]
    procs = {}
    for root in roots:
        try:
            procs |= {p.pid: p for p in [root, *root.children(recursive=True)]}
        except psutil.NoSuchProcess:
            pass
    for p in procs.values():
        with contextlib.suppress(psutil.NoSuchProcess):
            p.terminate()
    _, alive = psutil.wait_procs(list(procs.values()), timeout=timeout)
    for p in alive:
        with contextlib.suppress(psutil.NoSuchProcess):
            p.kill()
    return len(procs)


@pytest.fixture(scope="module")
def ray_cluster(tmp_path_factory):
    token = secrets.token_hex(32)  # Ray 2.60 clusters require token auth; the CLI reads RAY_AUTH_TOKEN
    env = {
        **os.environ,
        "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}",
        "RAY_USAGE_STATS_ENABLED": "0",
        "RAY_AUTH_MODE": "token",
        "RAY_AUTH_TOKEN": token,
    }
    env.pop("RAY_ADDRESS", None)
    gcs, dash = _port(), _port()
    temp_dir = tempfile.mkdtemp(prefix="gf-ray-", dir="/tmp")  # short: Ray's socket paths live under it
    subprocess.run(
        [
            str(BIN / "ray"),
            "start",
            "--head",
            f"--temp-dir={temp_dir}",
            # the agents' fixed default ports (52365, ...) are taken while another Ray instance runs on the
            # machine (a training stage's): its job agent then never comes up ("No available agent")
            f"--dashboard-agent-listen-port={_port()}",
            f"--dashboard-agent-grpc-port={_port()}",
            f"--runtime-env-agent-port={_port()}",
            f"--metrics-export-port={_port()}",
            f"--port={gcs}",
            f"--dashboard-port={dash}",
            "--num-cpus=2",
            "--include-dashboard=true",
            "--dashboard-host=127.0.0.1",
            "--disable-usage-stats",
        ],
        env=env,
        check=True,
        capture_output=True,
        timeout=180,
    )
    address = f"http://127.0.0.1:{dash}"
    try:
        wait_http(f"{address}/api/version", timeout=120, headers={"Authorization": f"Bearer {token}"})
        yield address, env
    finally:
        stop_cluster(temp_dir)
        shutil.rmtree(temp_dir, ignore_errors=True)


def test_job_submit_trains_on_the_cluster(ray_cluster, mlflow_server, tmp_path):
    address, env = ray_cluster
    work = tmp_path / "job"
    for name in ("components", "pipelines"):
        shutil.copytree(ROOT / name, work / name, ignore=shutil.ignore_patterns("__pycache__"))
    storage = tmp_path / "shared-storage"  # stands in for NFS / S3 on a multi-node cluster
    params = {
        "prepare": {"datasets": {"digits": {"source": "digits"}}},
        "ray": {"storage_path": str(storage)},
        "mlflow": {"experiment": "cluster-job"},
        "experiments": {
            "vae_job": {
                "family": "vae",
                "dataset": "digits",
                "model": {"latent_dim": 4, "width": 8},
                "train": {"epochs": 2, "batch_size": 64, "num_workers": 2},
            }
        },
    }
    (work / "params.yaml").write_text(yaml.safe_dump(params))
    runtime_env = {"env_vars": {"MLFLOW_TRACKING_URI": mlflow_server, "MLFLOW_DISABLE_TELEMETRY": "true"}}
    submit = lambda: subprocess.run(  # noqa: E731
        [
            str(BIN / "ray"),
            "job",
            "submit",
            "--address",
            address,
            "--working-dir",
            str(work),
            "--runtime-env-json",
            json.dumps(runtime_env),
            "--",
            "bash",
            "-c",
            "python -m pipelines.prepare && python -m pipelines.train vae_job",
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    r = submit()
    for _ in range(6):  # the head's job agent can come up after the dashboard; Ray says "try again later"
        if r.returncode == 0 or "No available agent to submit job" not in r.stderr + r.stdout:
            break
        time.sleep(5)
        r = submit()
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    assert "succeeded" in r.stdout

    c = MlflowClient(tracking_uri=(uri := mlflow_server), registry_uri=uri)
    exp = c.get_experiment_by_name("cluster-job")
    (run,) = c.search_runs([exp.experiment_id], "tags.`genfoundry.experiment` = 'vae_job'")
    assert run.info.status == "FINISHED"
    assert sorted(m.step for m in c.get_metric_history(run.info.run_id, "train/loss")) == [1, 2]
    checkpoints = list(storage.glob("vae_job-*/checkpoint_*"))
    assert checkpoints, f"no checkpoints under {storage}"
