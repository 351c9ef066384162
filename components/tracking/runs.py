"""MLflow runs: one per experiment and training configuration, found again on a rerun so a resume continues it."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Mapping
from pathlib import Path
from typing import Any

os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")

import mlflow  # noqa: E402
from mlflow.entities import Metric, Param, RunTag  # noqa: E402
from mlflow.tracking import MlflowClient  # noqa: E402

RUN_KEY_TAG = "genfoundry.run_key"


def tracking_uri(root: str | Path | None = None) -> str:
    """``MLFLOW_TRACKING_URI`` if set, else the embedded sqlite store ``<root>/mlflow.db``."""
    uri = os.environ.get("MLFLOW_TRACKING_URI")
    if uri:
        return uri
    return f"sqlite:///{(Path(root or Path.cwd()) / 'mlflow.db').resolve()}"


def client(root: str | Path | None = None) -> MlflowClient:
    uri = tracking_uri(root)
    mlflow.set_tracking_uri(uri)
    mlflow.set_registry_uri(uri)
    return MlflowClient(tracking_uri=uri, registry_uri=uri)


def ensure_experiment(c: MlflowClient, name: str, root: str | Path | None = None) -> str:
    exp = c.get_experiment_by_name(name)
    if exp is not None:
        return exp.experiment_id
    location = None
    if c.tracking_uri.startswith("sqlite:"):  # embedded store: keep artifacts beside it, not in the cwd
        location = (Path(root or Path.cwd()) / "mlartifacts").resolve().as_uri()
    return c.create_experiment(name, artifact_location=location)


def find_or_create_run(
    c: MlflowClient, experiment_id: str, run_key: str, *, run_name: str, tags: Mapping[str, str]
) -> str:
    """The run tagged ``run_key`` (newest, not failed), or a new one. A rerun of a stage continues its run."""
    runs = c.search_runs(
        [experiment_id],
        filter_string=f"tags.`{RUN_KEY_TAG}` = '{run_key}' and attributes.status != 'FAILED'",
        order_by=["attributes.start_time DESC"],
        max_results=1,
    )
    if runs:
        return runs[0].info.run_id
    run = c.create_run(experiment_id, run_name=run_name, tags={RUN_KEY_TAG: run_key, **tags})
    return run.info.run_id


def log_params(c: MlflowClient, run_id: str, params: Mapping[str, Any]) -> None:
    """Log flattened params; values already logged (a resumed run) are left as they are."""
    existing = c.get_run(run_id).data.params
    new = [Param(k, str(v)[:6000]) for k, v in flatten(params).items() if k not in existing]
    for i in range(0, len(new), 100):
        c.log_batch(run_id, params=new[i : i + 100])


def log_metrics(c: MlflowClient, run_id: str, metrics: Mapping[str, float], *, step: int = 0) -> None:
    import time

    ts = int(time.time() * 1000)
    ms = [Metric(k, float(v), ts, step) for k, v in flatten(metrics).items() if isinstance(v, int | float)]
    for i in range(0, len(ms), 500):
        c.log_batch(run_id, metrics=ms[i : i + 500])


def set_tags(c: MlflowClient, run_id: str, tags: Mapping[str, Any]) -> None:
    c.log_batch(run_id, tags=[RunTag(k, str(v)) for k, v in tags.items()])


def flatten(d: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in d.items():
        key = f"{prefix}{k}"
        if isinstance(v, Mapping):
            out.update(flatten(v, f"{key}."))
        else:
            out[key] = v
    return out


def git_commit(root: str | Path | None = None) -> str:
    try:
        return subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=root, capture_output=True, text=True, check=True
        ).stdout.strip()
    except (subprocess.CalledProcessError, FileNotFoundError):
        return "unknown"


def train_tags(
    root: str | Path, *, experiment: str, family: str, dataset: str, params_hash: str, data_sha256: str
) -> dict[str, str]:
    """The tags of an experiment's training run (the registry copies them to its versions)."""
    return {
        "genfoundry.experiment": experiment,
        "genfoundry.family": family,
        "genfoundry.dataset": dataset,
        "git_commit": git_commit(root),
        "params_hash": params_hash,
        "data_sha256": data_sha256,
    }
