"""A real ``dvc repro`` of the whole DAG on a tiny copy of the project (digits, two small VAE experiments).

Checks: every stage runs (training on 2 Ray workers), a champion is registered, a second repro is a no-op,
changing one experiment's param reruns only its stages, ``dvc metrics show`` / ``dvc plots show`` work, and
a bad param stops the pipeline with one line.
"""

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from tests.conftest import ROOT

BIN = Path(sys.executable).parent


def _params(epochs_b: int = 1) -> dict:
    exp = {
        "family": "vae",
        "dataset": "digits",
        "model": {"latent_dim": 4, "width": 8},
        "evaluate": {"n_samples": 300, "fid_n_boot": 50, "utility_steps": 100},  # small: the wiring, not the numbers
        "audit": {"max_fd_l2": 2.0},  # L2 between distributions is at most √2: this gate always passes
        "selection": {"metric": "fid", "mode": "min"},
    }
    return {
        "prepare": {
            "seed": 0,
            "split": {"val": 0.1, "test": 0.2},
            "datasets": {"digits": {"source": "digits"}},
        },
        "features": {"epochs": 2},
        "mlflow": {"experiment": "genfoundry", "model_prefix": "gf"},  # dvc.yaml tracks these sections
        "ray": {"storage_path": "ray_results"},
        "experiments": {
            "vae_a": {**exp, "train": {"epochs": 2, "batch_size": 64, "lr": 0.003, "num_workers": 2}},
            "vae_b": {**exp, "train": {"epochs": epochs_b, "batch_size": 64, "lr": 0.003, "num_workers": 0}},
        },
    }


def _run(args, cwd, env, check=True):
    r = subprocess.run(args, cwd=cwd, env=env, capture_output=True, text=True, timeout=900)
    if check and r.returncode != 0:
        raise AssertionError(f"{args} failed ({r.returncode}):\n{r.stdout[-3000:]}\n{r.stderr[-3000:]}")
    return r


@pytest.fixture(scope="module")
def project(tmp_path_factory):
    d = tmp_path_factory.mktemp("project")
    for name in ("components", "pipelines"):
        shutil.copytree(ROOT / name, d / name, ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(ROOT / "dvc.yaml", d / "dvc.yaml")
    shutil.copytree(ROOT / "data" / "raw", d / "data" / "raw")
    (d / "params.yaml").write_text(yaml.safe_dump(_params()))
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("PYTEST", "MLFLOW_TRACKING_URI", "RAY_ADDRESS"))
    }
    env["PATH"] = f"{BIN}{os.pathsep}{env.get('PATH', '')}"
    env["PYTHONPATH"] = str(d)  # the stages import this copy
    for args in (
        ["git", "init", "-q"],
        ["git", "config", "user.email", "t@t"],
        ["git", "config", "user.name", "t"],
        [str(BIN / "dvc"), "init", "-q"],
        [str(BIN / "dvc"), "config", "core.analytics", "false"],
    ):
        _run(args, d, env)
    _run(["git", "add", "-A"], d, env)
    _run(["git", "commit", "-qm", "init"], d, env)
    return d, env


def test_repro_runs_every_stage_and_registers_a_champion(project):
    d, env = project
    r = _run([str(BIN / "dvc"), "repro"], d, env)
    for stage in (
        "prepare",
        "features",
        "train@vae_a",
        "evaluate@vae_a",
        "audit@vae_a",
        "register@vae_a",
        "train@vae_b",
        "register@vae_b",
        "summary@vae_a",
        "summary@vae_b",
        "report",
    ):
        assert f"Running stage '{stage}'" in r.stdout
    decision = json.loads((d / "reports/vae_a/registry.json").read_text())
    assert decision["promoted"] and decision["aliases"] == ["champion", "challenger"]
    train = json.loads((d / "reports/vae_a/train.json").read_text())
    assert train["epochs"] == 2 and train["num_workers"] == 2
    assert (d / "reports/vae_a/eval/samples.png").exists()
    _check_evaluation_and_leaderboard(d, env)
    assert (d / "mlflow.db").exists()

    again = _run([str(BIN / "dvc"), "repro"], d, env)
    assert "Running stage" not in again.stdout
    assert "up to date" in again.stdout

    metrics = _run([str(BIN / "dvc"), "metrics", "show", "--json"], d, env)
    assert "fid" in metrics.stdout and "fd_l2" in metrics.stdout
    plots = _run([str(BIN / "dvc"), "plots", "show", "--json"], d, env)
    assert "train_history.csv" in plots.stdout


def _check_evaluation_and_leaderboard(d, env):
    from mlflow.tracking import MlflowClient

    ev = json.loads((d / "reports/vae_a/eval.json").read_text())
    assert ev["fid_ci95"][0] <= ev["fid"] <= ev["fid_ci95"][1] and len(ev["fid_floor_train_vs_test_ci95"]) == 2
    assert {"c_t", "authenticity", "nn_ratio_memorized"} <= set(ev["memorization"])
    assert {"acc_real", "acc_real_plus_generated", "delta"} <= set(ev["augmentation"])
    board = (d / "reports/leaderboard.md").read_text()
    assert "| vae_a | vae | digits | fid (min) = " in board and "| vae_b | vae | " in board
    assert "champion (v" in board and "![vae_a samples](vae_a/eval/samples.png)" in board
    assert "| vae_a | vae | digits | test_nelbo_bits_per_dim |" in board  # the likelihood table
    assert (d / "reports/leaderboard.html").read_text().count('<img src="data:image/png;base64,') == 2
    c = MlflowClient(tracking_uri=env.get("MLFLOW_TRACKING_URI") or f"sqlite:///{d / 'mlflow.db'}")
    exp = c.get_experiment_by_name("genfoundry")
    (run,) = c.search_runs([exp.experiment_id], "tags.`genfoundry.leaderboard` = 'true'")
    assert run.info.run_name == "leaderboard" and run.info.status == "FINISHED"
    assert {a.path for a in c.list_artifacts(run.info.run_id)} == {"leaderboard.md", "leaderboard.html"}


def test_changing_one_experiment_reruns_only_its_stages(project):
    d, env = project
    (d / "params.yaml").write_text(yaml.safe_dump(_params(epochs_b=2)))
    r = _run([str(BIN / "dvc"), "repro"], d, env)
    assert "Running stage 'train@vae_b'" in r.stdout
    assert "Running stage 'register@vae_b'" in r.stdout
    assert "Running stage 'train@vae_a'" not in r.stdout
    assert "Running stage 'prepare'" not in r.stdout


def test_a_diverged_run_fails_loudly_and_is_never_registered(project):
    from mlflow.tracking import MlflowClient

    d, env = project
    diverging = _params(epochs_b=2)
    diverging["experiments"]["vae_b"]["train"]["max_loss"] = 1.0  # any real loss "explodes"
    (d / "params.yaml").write_text(yaml.safe_dump(diverging))
    c = MlflowClient(tracking_uri=f"sqlite:///{d / 'mlflow.db'}")
    versions_before = len(c.search_model_versions("name = 'gf-vae_b'"))
    r = _run([str(BIN / "dvc"), "repro"], d, env, check=False)
    assert r.returncode != 0
    assert "error: training diverged at epoch 1: mean loss" in r.stderr + r.stdout
    assert "Running stage 'register@vae_b'" not in r.stdout
    assert len(c.search_model_versions("name = 'gf-vae_b'")) == versions_before
    exp = c.get_experiment_by_name("genfoundry")
    failed = c.search_runs([exp.experiment_id], "attributes.status = 'FAILED'")
    assert [run.data.tags["genfoundry.experiment"] for run in failed] == ["vae_b"]
    assert "diverged" in failed[0].data.tags["failure"]


def test_a_bad_param_stops_the_stage_with_one_line(project):
    d, env = project
    bad = _params()
    bad["experiments"]["vae_a"]["train"]["lr"] = -1
    (d / "params.yaml").write_text(yaml.safe_dump(bad))
    r = _run([sys.executable, "-m", "pipelines.train", "vae_a"], d, env, check=False)
    assert r.returncode == 2
    lines = [ln for ln in r.stderr.splitlines() if ln.strip()]
    assert lines == [
        "error: params.yaml: 'experiments.vae_a.train.lr' = -1: expected input should be greater than 0"
    ]
