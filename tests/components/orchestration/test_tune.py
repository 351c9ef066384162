"""``genfoundry tune`` on a tiny project: Ray Tune with ASHA over three 1-worker Ray Train trials (2 epochs of a
small VAE on digits), each an MLflow child run of the search's parent run; the best configuration is written to
reports/<exp>/tune_best.json and ``--apply-only`` writes it into params.yaml, comments kept.

Two of the trials share one configuration: with one worker, the same seed and params give bit-identical metrics.
"""

import json

import pytest
import yaml
from mlflow.tracking import MlflowClient

from components.config import load_params

pytestmark = pytest.mark.slow  # end to end: `make test-slow` (CI runs it after `make test`)

PARAMS = """\
# a tiny search
prepare:
  datasets:
    digits: {source: digits}
mlflow: {experiment: tune-test}
experiments:
  vae_digits:
    family: vae
    dataset: digits
    model: {latent_dim: 4, width: 8}   # keep this comment
    train: {epochs: 5, batch_size: 64, lr: 0.003, num_workers: 2}
    tune:
      epochs: 2
      num_samples: 1
      space:
        train.lr: {grid: [0.01, 0.001, 0.001]}
        model.width: {choice: [8]}
"""


@pytest.fixture
def project(tmp_path, digits_root, monkeypatch, mlflow_db):
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "prepared").symlink_to(digits_root)
    (tmp_path / "params.yaml").write_text(PARAMS)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", mlflow_db(tmp_path / "mlflow.db"))
    return tmp_path


def test_tune_runs_asha_trials_logs_child_runs_and_writes_the_best_config(ray_session, project):
    from pipelines.tune import main

    main("vae_digits", apply=False, apply_only=False)

    best = json.loads((project / "reports/vae_digits/tune_best.json").read_text())
    assert best["scheduler"] == {
        "name": "ASHA",
        "time_attr": "epoch",
        "max_t": 2,
        "grace_period": 1,
        "reduction_factor": 2.0,
    }
    trials = best["trials"]
    assert sorted(t["config"]["train.lr"] for t in trials) == [0.001, 0.001, 0.01]
    assert {t["status"] for t in trials} <= {"completed", "stopped"}
    assert all(t["epochs"] >= 1 for t in trials) and any(t["status"] == "completed" for t in trials)
    assert best["value"] == min(t["val_loss"] for t in trials)
    winner = next(t for t in trials if t["trial"] == best["trial"])
    assert best["params"] == {f"experiments.vae_digits.{k}": v for k, v in winner["config"].items()}
    assert best["dvc_exp_run"].startswith("dvc exp run -S 'experiments.vae_digits.")

    c = MlflowClient()
    parent = c.get_run(best["mlflow"]["parent_run_id"])
    assert parent.info.status == "FINISHED" and parent.data.params["tune.num_samples"] == "1"
    exp_id = parent.info.experiment_id
    children = c.search_runs([exp_id], f"tags.mlflow.parentRunId = '{parent.info.run_id}'")
    assert len(children) == 3
    assert {r.info.status for r in children} <= {"FINISHED", "KILLED"}
    val = {}
    for r in children:
        history = {m.step: m.value for m in c.get_metric_history(r.info.run_id, "val/loss")}
        assert history and min(history) == 1
        val[r.info.run_id] = (float(r.data.params["tune.train.lr"]), history)
    # one worker, same seed and params: bit-identical metrics (two trials ran lr = 0.001 side by side)
    twins = [h for lr, h in val.values() if lr == 0.001]
    assert len(twins) == 2
    both = sorted(set(twins[0]) & set(twins[1]))  # ASHA may have stopped one of them after epoch 1
    assert both[0] == 1 and all(twins[0][e] == twins[1][e] for e in both)

    # --apply-only writes the best values into params.yaml; comments stay, the file still parses
    main("vae_digits", apply=False, apply_only=True)
    text = (project / "params.yaml").read_text()
    assert "# keep this comment" in text and "# a tiny search" in text
    exp = load_params(project / "params.yaml").experiment("vae_digits")
    assert exp.train.lr == best["params"]["experiments.vae_digits.train.lr"]
    assert yaml.safe_load(text)["experiments"]["vae_digits"]["train"]["epochs"] == 5  # the rest is untouched
