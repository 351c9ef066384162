"""Real Ray Train runs (2 CPU workers, gloo): training, resume from checkpoint, divergence, and the failure
drill: SIGKILL a worker mid-run; the run restarts from its last checkpoint and finishes, and the MLflow run has
every epoch exactly once."""

import os
import signal

import pytest
import torch

from components.config import TrainConfig
from components.errors import DivergenceError
from components.tracking import runs
from components.training.driver import TrainJob, init_ray, train


@pytest.fixture(scope="module")
def ray_local():
    import ray

    init_ray(num_cpus=2)
    yield
    ray.shutdown()


def _job(root, storage, **train_kw):
    return TrainJob(
        key="vae_digits",
        family="vae",
        model={"latent_dim": 4, "width": 8},
        dataset="digits",
        data_root=str(root),
        train=TrainConfig(batch_size=64, lr=2e-3, num_workers=2, **train_kw),
        run_name="vae_digits-test",
        storage_path=str(storage),
    )


def test_two_workers_train_and_a_rerun_resumes(ray_local, digits_root, tmp_path):
    events = []
    model, state = train(_job(digits_root, tmp_path, epochs=2), on_event=events.append)
    assert state.epoch == 2 and [h["epoch"] for h in state.history] == [1, 2]
    assert [e["epoch"] for e in events if e["event"] == "epoch"] == [1, 2]
    assert [e["epoch"] for e in events if e["event"] == "start"] == [0]

    # the same RunConfig(name, storage_path): Ray restores the last checkpoint and trains no further epoch
    events2 = []
    model2, state2 = train(_job(digits_root, tmp_path, epochs=2), on_event=events2.append)
    assert [e for e in events2 if e["event"] == "start"][0]["epoch"] == 2
    assert not [e for e in events2 if e["event"] == "epoch"]
    for a, b in zip(model.state_dict().values(), model2.state_dict().values(), strict=True):
        assert torch.equal(a, b)

    # more epochs continue from epoch 2, keeping the history
    _, state3 = train(_job(digits_root, tmp_path, epochs=3))
    assert [h["epoch"] for h in state3.history] == [1, 2, 3]


def test_divergence_under_ray_fails_without_retrying(ray_local, digits_root, tmp_path):
    with pytest.raises(DivergenceError, match="max_loss"):
        train(_job(digits_root, tmp_path, epochs=2, max_loss=1.0, max_failures=3))


def test_killed_worker_resumes_from_checkpoint(ray_local, digits_root, tmp_path, monkeypatch):
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'mlflow.db'}")
    c = runs.client()
    run_id = runs.find_or_create_run(c, runs.ensure_experiment(c, "drill"), "drill", run_name="drill", tags={})
    epochs = 4
    job = TrainJob(
        key="drill",
        family="vae",
        model={"latent_dim": 4, "width": 8},
        dataset="digits",
        data_root=str(digits_root),
        train=TrainConfig(epochs=epochs, batch_size=32, lr=2e-3, num_workers=2, max_failures=2),
        run_name="drill",
        storage_path=str(tmp_path / "ray"),
        tracking_uri=c.tracking_uri,
        run_id=run_id,
    )
    starts, killed = [], []

    def on_event(ev):
        if ev["event"] == "start":
            starts.append(ev)
        if ev["event"] == "epoch" and ev["epoch"] == 2 and not killed:
            killed.append(starts[-1]["pid"])
            os.kill(starts[-1]["pid"], signal.SIGKILL)  # rank 0's worker process

    _, state = train(job, on_event=on_event)
    assert killed, "the drill never killed a worker"
    # the restarted group resumed from the last checkpoint Ray registered (epoch 1 or 2), not from scratch
    assert len(starts) == 2 and starts[1]["epoch"] >= 1
    assert state.epoch == epochs
    steps = sorted(m.step for m in c.get_metric_history(run_id, "train/loss"))
    assert steps == list(range(1, epochs + 1))  # no duplicated or missing epochs
