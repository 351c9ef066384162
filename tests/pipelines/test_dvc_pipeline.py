"""A real ``dvc repro`` of the whole DAG on a tiny copy of the project, against the real MLflow server.

Two small VAE experiments: ``vae_a`` on scikit-learn's digits (2 Ray workers), ``vae_b`` on a user
``imagefolder`` of digit PNGs under ``data/raw/user`` (the folder ``genfoundry retrain`` watches).
Checks: every stage runs, a champion is registered, a second repro is a no-op, changing one experiment's
param reruns only its stages, ``dvc metrics show`` / ``dvc plots show`` work, ``genfoundry retrain``
retrains on new data (new version, the gate's decision, a log record), does nothing when nothing changed
and exits 75 while another retrain holds the lock, and a bad param stops the pipeline with one line.
"""

import json
import os
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml

from tests.pipelines.conftest import copy_project, init_repo, run_checked

pytestmark = pytest.mark.slow  # end to end: `make test-slow` (CI runs it after `make test`)

BIN = Path(sys.executable).parent


def _params(epochs_b: int = 1) -> dict:
    exp = {
        "family": "vae",
        "model": {"latent_dim": 4, "width": 8},
        "evaluate": {"n_samples": 300, "fid_n_boot": 50, "utility_steps": 100},  # small: the wiring, not the numbers
        "audit": {"max_fd_l2": 2.0},  # L2 between distributions is at most √2: this gate always passes
        "selection": {"metric": "fid", "mode": "min"},
    }
    return {
        "prepare": {
            "seed": 0,
            "split": {"val": 0.1, "test": 0.2},
            "datasets": {
                "digits": {"source": "digits"},
                "user": {"source": "imagefolder", "path": "data/raw/user"},
            },
        },
        "features": {"epochs": 2, "simclr": {"epochs": 2}},
        "mlflow": {"experiment": "genfoundry", "model_prefix": "gf"},  # dvc.yaml tracks these sections
        "ray": {"storage_path": "ray_results"},
        "retrain": {"watch": ["data/raw"], "warm_start": True},  # dvc.yaml: train stages read warm_start
        "experiments": {
            "vae_a": {
                **exp,
                "dataset": "digits",
                "train": {"epochs": 2, "batch_size": 64, "lr": 0.003, "num_workers": 2},
            },
            "vae_b": {
                **exp,
                "dataset": "user",
                "train": {"epochs": epochs_b, "batch_size": 64, "lr": 0.003, "num_workers": 0},
            },
        },
    }


def _write_user_digits(folder: Path, per_class: slice) -> list[Path]:
    """scikit-learn digits as 8×8 PNGs in one sub-folder per class (``per_class`` picks which of each class)."""
    from PIL import Image
    from sklearn.datasets import load_digits

    d = load_digits()
    written = []
    for c in range(10):
        (folder / str(c)).mkdir(parents=True, exist_ok=True)
        for i in np.flatnonzero(d.target == c)[per_class]:
            f = folder / str(c) / f"{i:04d}.png"
            Image.fromarray((d.images[i] * 255 / 16).round().astype(np.uint8), mode="L").save(f)
            written.append(f)
    return written


def _run(args, cwd, env, check=True):
    return run_checked(args, cwd, env, check, timeout=900)


@pytest.fixture(scope="module")
def project(tmp_path_factory, mlflow_server):
    d = tmp_path_factory.mktemp("project")
    copy_project(d)
    _write_user_digits(d / "data" / "raw" / "user", slice(0, 60))  # 600 images; more arrive later
    (d / "params.yaml").write_text(yaml.safe_dump(_params()))
    (d / ".gitignore").write_text("/logs/\n/.genfoundry/\n")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTEST", "MLFLOW_TRACKING_URI", "RAY_ADDRESS"))}
    env["PATH"] = f"{BIN}{os.pathsep}{env.get('PATH', '')}"
    env["PYTHONPATH"] = str(d)  # the stages import this copy
    env["MLFLOW_TRACKING_URI"] = mlflow_server
    init_repo(d, env)
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
    assert (d / "reports/vae_b/audit.md").read_text().startswith("# Audit: vae_b")

    again = _run([str(BIN / "dvc"), "repro"], d, env)
    assert "Running stage" not in again.stdout
    assert "up to date" in again.stdout

    metrics = _run([str(BIN / "dvc"), "metrics", "show", "--json"], d, env)
    assert "fid" in metrics.stdout and "fd_l2" in metrics.stdout
    plots = _run([str(BIN / "dvc"), "plots", "show", "--json"], d, env)
    assert "train_history.csv" in plots.stdout


def _check_evaluation_and_leaderboard(d, env):
    from mlflow.tracking import MlflowClient

    ev = json.loads((d / "reports/vae_a/eval_details.json").read_text())
    assert ev["fid_ci95"][0] <= ev["fid"] <= ev["fid_ci95"][1] and len(ev["fid_floor_train_vs_test_ci95"]) == 2
    assert {"c_t", "authenticity", "nn_ratio_memorized"} <= set(ev["memorization"])
    assert {"acc_real", "acc_real_plus_generated", "delta"} <= set(ev["augmentation"])
    assert {"fid", "fid_floor_train_vs_test", "coverage"} <= set(ev["simclr"])  # the features stage's encoder
    assert len(ev["protocol"]["simclr_extractor"]["sha256"]) == 64
    board = (d / "reports/leaderboard.md").read_text()
    assert "| vae_a | vae | digits | fid (min) = " in board and "| vae_b | vae | " in board
    assert "champion (v" in board and "![vae_a samples](vae_a/eval/samples.png)" in board
    assert "| vae_a | vae | digits | test_nelbo_bits_per_dim |" in board  # the likelihood table
    assert (d / "reports/leaderboard.html").read_text().count('<img src="data:image/png;base64,') == 2
    c = MlflowClient(
        tracking_uri=(uri := env.get("MLFLOW_TRACKING_URI") or f"sqlite:///{d / 'mlflow.db'}"), registry_uri=uri
    )
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


def _stale(d, env) -> set[str]:
    r = _run([str(BIN / "dvc"), "status", "--json"], d, env)
    return set(json.loads(r.stdout))


def test_an_edit_to_imported_code_marks_the_stages_that_import_it_out_of_date(project):
    """dvc.yaml lists every module a stage imports (tests/test_dvc_yaml.py): a real ``dvc status`` sees an edit
    to ``components/config.py`` (every stage parses params.yaml), and one to the GAN family (no experiment here is
    a GAN) reruns nothing."""
    d, env = project
    assert _stale(d, env) == set()
    for path, expected in (
        ("components/config.py", {"train@vae_a", "train@vae_b", "evaluate@vae_a", "register@vae_b", "report"}),
        ("components/models/vae.py", {"train@vae_a", "evaluate@vae_b", "register@vae_a"}),
        ("components/models/gan.py", set()),
    ):
        f = d / path
        original = f.read_text()
        f.write_text(original + "\n# an edit\n")
        try:
            stale = _stale(d, env)
        finally:
            f.write_text(original)
        assert expected <= stale if expected else stale == set(), (path, sorted(stale))
    assert _stale(d, env) == set()


def _retrain(d, env, *, cli: bool = False):
    """``genfoundry retrain`` (``cli``), or the same command without importing every other stage's module."""
    args = [str(BIN / "genfoundry"), "retrain"] if cli else [sys.executable, "-m", "pipelines.retrain"]
    return _run(args, d, env, check=False)


def _records(d) -> list[dict]:
    return [json.loads(line) for line in (d / "logs" / "retrain.jsonl").read_text().splitlines()]


def test_retrain_on_new_data_registers_a_version_and_records_the_decision(project):
    import mlflow.artifacts
    from mlflow.tracking import MlflowClient

    d, env = project
    c = MlflowClient(tracking_uri=(uri := env["MLFLOW_TRACKING_URI"]), registry_uri=uri)
    r = _retrain(d, env)  # everything is up to date: the first run only records the watched files
    assert r.returncode == 0, r.stderr
    assert "nothing to do" in r.stderr and "Running stage" not in r.stdout
    assert _records(d)[-1]["outcome"] == "nothing_to_do"
    versions_before = {v.version for v in c.search_model_versions("name = 'gf-vae_b'")}

    new = _write_user_digits(d / "data" / "raw" / "user", slice(60, 63))  # 30 new images
    r = _retrain(d, env, cli=True)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    assert "Running stage 'prepare'" in r.stdout and "Running stage 'register@vae_b'" in r.stdout  # streamed
    record = _records(d)[-1]
    assert record["outcome"] == "retrained" and record["exit_code"] == 0
    assert record["changes"]["files"]["added"] == sorted(str(f.relative_to(d)) for f in new)
    assert "prepare" in record["changes"]["stages"]
    assert "train@vae_b" in record["stages_run"] and "train@vae_a" not in record["stages_run"]
    assert "evaluate@vae_a" not in record["stages_run"]  # it depends on its own dataset's classifier only
    outcome = record["experiments"]["vae_b"]
    decision = json.loads((d / "reports/vae_b/registry.json").read_text())
    assert outcome["new_version"] and outcome["version"] not in versions_before
    assert outcome["version"] == decision["version"] and outcome["reason"] == decision["reason"]
    assert outcome["decision"] == ("promoted" if decision["promoted"] else "kept")
    assert outcome["champion_before"] in versions_before and outcome["metric"] == "fid"
    assert isinstance(outcome["value_old"], float) and isinstance(outcome["value_new"], float)
    assert outcome["champion_after"] == (outcome["version"] if decision["promoted"] else outcome["champion_before"])
    assert f"vae_b v{outcome['version']} (new): {outcome['decision']}" in r.stderr
    warm = json.loads((d / "models/vae_b/config.json").read_text())["warm_start"]  # retrain.warm_start: true
    assert warm["source"] == f"gf-vae_b/{outcome['champion_before']}" and len(warm["weights_sha256"]) == 64
    assert f"warm start vae_b: initialised from champion gf-vae_b/{outcome['champion_before']}" in r.stdout

    exp = c.get_experiment_by_name("genfoundry-retrain")
    run = c.get_run(record["mlflow_run_id"])
    assert run.info.experiment_id == exp.experiment_id and run.data.tags["outcome"] == "retrained"
    assert run.data.tags["decision.vae_b"].startswith(outcome["decision"])
    local = mlflow.artifacts.download_artifacts(
        run_id=run.info.run_id,
        artifact_path="retrain_record.json",
        dst_path=str(d / "logs"),
        tracking_uri=env["MLFLOW_TRACKING_URI"],
    )
    logged = json.loads(Path(local).read_text())
    assert logged["experiments"]["vae_b"]["version"] == outcome["version"]

    r = _retrain(d, env)  # nothing new: nothing runs, no new version
    assert r.returncode == 0 and "Running stage" not in r.stdout
    assert _records(d)[-1]["outcome"] == "nothing_to_do" and _records(d)[-1]["changes"]["files"] == {
        "added": [],
        "changed": [],
        "removed": [],
    }
    assert len(c.search_model_versions("name = 'gf-vae_b'")) == len(versions_before) + 1


def test_retrain_exits_75_while_another_retrain_holds_the_lock(project):
    import fcntl

    d, env = project
    n = len(_records(d))
    with open(d / ".genfoundry" / "retrain.lock", "a+") as f:
        fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        r = _retrain(d, env)
    assert r.returncode == 75
    lines = [ln for ln in r.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("retrain: "), r.stderr
    assert "retrain.lock: expected a free lock, got one held by another retrain" in lines[0], r.stderr
    assert len(_records(d)) == n  # it wrote nothing


def test_a_diverged_run_fails_loudly_and_is_never_registered(project):
    from mlflow.tracking import MlflowClient

    d, env = project
    diverging = _params(epochs_b=2)
    diverging["experiments"]["vae_b"]["train"]["max_loss"] = 1.0  # any real loss "explodes"
    (d / "params.yaml").write_text(yaml.safe_dump(diverging))
    c = MlflowClient(tracking_uri=(uri := env["MLFLOW_TRACKING_URI"]), registry_uri=uri)
    versions_before = len(c.search_model_versions("name = 'gf-vae_b'"))
    r = _retrain(d, env)  # dvc repro under `genfoundry retrain`: a failed stage is exit code 1 and a record
    assert r.returncode == 1
    assert "error: train: expected finite epoch means" in r.stderr + r.stdout
    assert "got mean loss" in r.stderr + r.stdout and "at epoch 1 (training diverged)" in r.stderr + r.stdout
    assert "Running stage 'register@vae_b'" not in r.stdout
    record = _records(d)[-1]
    assert record["outcome"] == "failed" and record["exit_code"] == 1
    assert "'train@vae_b'" in record["error"] and "error: train: expected finite epoch means" in record["error"]
    assert "at epoch 1 (training diverged)" in record["error"]
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
    assert lines == ["error: params.yaml: 'experiments.vae_a.train.lr' = -1: expected input should be greater than 0"]
    n = len(_records(d))
    r = _retrain(d, env)  # the scheduler's view: exit code 2, the same line, nothing run or recorded
    assert r.returncode == 2 and [ln for ln in r.stderr.splitlines() if ln.strip()] == lines
    assert len(_records(d)) == n


def test_a_missing_params_section_stops_at_validate_before_dvc_deletes_anything(project):
    """DVC checks a stage's params only when it runs it, after deleting its outputs; the validate stage, upstream
    of every other one, checks every tracked key first."""
    d, env = project
    params = _params()
    del params["experiments"]["vae_a"]["evaluate"]
    (d / "params.yaml").write_text(yaml.safe_dump(params))
    before = (d / "reports/vae_a/eval.json").read_text()
    r = _run([str(BIN / "dvc"), "repro"], d, env, check=False)
    assert r.returncode != 0
    assert "error: params.yaml: expected 'experiments.vae_a.evaluate' (dvc.yaml's evaluate@vae_a tracks it)" in r.stderr
    assert "Running stage 'evaluate@vae_a'" not in r.stdout and "Running stage 'prepare'" not in r.stdout
    assert (d / "reports/vae_a/eval.json").read_text() == before  # nothing deleted
    assert (d / "models/vae_a/model.safetensors").exists()


def test_workers_the_cluster_cannot_hold_fail_at_once_and_the_run_is_failed(project):
    from mlflow.tracking import MlflowClient

    d, env = project
    params = _params()
    params["experiments"]["vae_a"]["train"]["num_workers"] = 64
    (d / "params.yaml").write_text(yaml.safe_dump(params))
    r = _run([sys.executable, "-m", "pipelines.train", "vae_a"], d, env, check=False)
    lines = [ln for ln in r.stderr.splitlines() if ln.startswith("error")]  # beside the progress / warm-start lines
    assert r.returncode == 2 and len(lines) == 1, r.stderr
    assert lines[0].startswith("error: train: expected a Ray cluster with 64 CPU for train.num_workers = 64")
    c = MlflowClient(tracking_uri=(uri := env["MLFLOW_TRACKING_URI"]), registry_uri=uri)
    exp = c.get_experiment_by_name("genfoundry")
    newest = c.search_runs([exp.experiment_id], "tags.`genfoundry.experiment` = 'vae_a'", order_by=["start_time DESC"])
    run = newest[0]
    assert run.info.status == "FAILED" and "expected a Ray cluster" in run.data.tags["failure"]
    assert not c.search_runs([exp.experiment_id], "attributes.status = 'RUNNING'")  # none left behind
