"""Real Ray Train runs (gloo on CPU) in the package's one Ray instance: two workers train reproducibly (two runs
side by side), divergence fails without retries, and the failure drill: SIGKILL a worker mid-run; the run restarts
from its last checkpoint and finishes, and the MLflow run has every epoch exactly once. (A rerun of a stopped run
with the same ``RunConfig(name, storage_path)`` resuming from its checkpoint: tests/pipelines/test_drills.py, end
to end, with the train stage's driver SIGKILLed and dvc repro interrupted.)

Reproducibility (same seed, same params): one worker gives bit-identical metrics (``test_tune.py`` compares two
trials of one configuration); with two workers every per-epoch mean must agree to ``TWO_WORKER_RTOL``. Gloo's
all-reduce over two ranks adds the same two numbers in the same order, so in practice they agree exactly too; the
tolerance is what the test promises. (A run resumed from a checkpoint reseeds its noise, so it is not
bit-identical to an uninterrupted one: compare resumed runs by their metrics' trend, not their digits.)
"""

import math
import os
import signal
import time
from concurrent.futures import ThreadPoolExecutor

import pytest

from components.config import TrainConfig
from components.errors import DivergenceError, GenfoundryError
from components.models.configs import VAEConfig
from components.tracking import runs
from components.tracking.epochs import MlflowEpochLog
from components.training.driver import train
from components.training.job import TrainJob

TWO_WORKER_RTOL = 1e-6


def _job(root, storage, **train_kw):
    return TrainJob(
        key="vae_digits",
        family="vae",
        model=VAEConfig(latent_dim=4, width=8),
        dataset="digits",
        data_root=str(root),
        train=TrainConfig(**{"batch_size": 64, "lr": 2e-3, "num_workers": 2, **train_kw}),
        run_name="vae_digits-test",
        storage_path=str(storage),
    )


def test_two_workers_train_reproducibly(ray_session, digits_root, tmp_path):
    # two identical runs side by side (the package's Ray instance has 4 logical CPUs): same seed, same params
    events = []
    with ThreadPoolExecutor(2) as pool:
        first = pool.submit(train, _job(digits_root, tmp_path / "a", epochs=2), on_event=events.append)
        second = pool.submit(train, _job(digits_root, tmp_path / "b", epochs=2))
        (_, state), (_, again) = first.result(), second.result()
    assert state.epoch == 2 and [h["epoch"] for h in state.history] == [1, 2]
    assert [e["epoch"] for e in events if e["event"] == "epoch"] == [1, 2]
    assert [e["epoch"] for e in events if e["event"] == "start"] == [0]
    for h, g in zip(state.history, again.history, strict=True):
        assert h.keys() == g.keys()
        for k in h:
            assert math.isclose(h[k], g[k], rel_tol=TWO_WORKER_RTOL, abs_tol=0), (k, h[k], g[k])


def test_divergence_under_ray_fails_without_retrying(ray_session, digits_root, tmp_path):
    with pytest.raises(DivergenceError, match="max_loss"):
        train(_job(digits_root, tmp_path, epochs=2, max_loss=1.0, max_failures=3))


def test_killed_worker_resumes_from_checkpoint(ray_session, digits_root, tmp_path, monkeypatch, mlflow_db):
    monkeypatch.setenv("MLFLOW_TRACKING_URI", mlflow_db(tmp_path / "mlflow.db"))
    c = runs.client()
    run_id = runs.find_or_create_run(c, runs.ensure_experiment(c, "drill"), "drill", run_name="drill", tags={})
    epochs = 4
    job = TrainJob(
        key="drill",
        family="vae",
        model=VAEConfig(latent_dim=4, width=8),
        dataset="digits",
        data_root=str(digits_root),
        train=TrainConfig(epochs=epochs, batch_size=32, lr=2e-3, num_workers=2, max_failures=2),
        run_name="drill",
        storage_path=str(tmp_path / "ray"),
        epoch_log=MlflowEpochLog(c.tracking_uri, run_id),
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
    assert c.get_run(run_id).data.tags["train.resumed_from"] == str(starts[1]["epoch"])


@pytest.mark.parametrize(
    ("train_kw", "expected"),
    [
        ({"num_workers": 64}, r"expected a Ray cluster with 64 CPU for train.num_workers = 64 x train.cpus_per_worker"),
        ({"use_gpu": True}, r"expected a Ray cluster with 2 CPU, 2 GPU for .* \(use_gpu: True\), got 4 CPU, 0 GPU;"),
    ],
)
def test_a_request_the_cluster_cannot_hold_fails_at_once_with_one_line(ray_session, digits_root, tmp_path, train_kw,
                                                                        expected):  # fmt: skip
    """Ray would wait for the workers' resources forever (the stage's spinner at "starting Ray workers")."""
    with pytest.raises(GenfoundryError, match=expected) as e:
        train(_job(digits_root, tmp_path, epochs=1, **train_kw))
    assert "\n" not in str(e.value)


def test_a_cluster_that_may_grow_gets_start_timeout_s(ray_session):
    from components.training.driver import check_resources

    t0 = time.monotonic()
    with pytest.raises(GenfoundryError, match=r"after waiting 1 s \(train.start_timeout_s\)"):
        check_resources(TrainConfig(num_workers=64), use_gpu=False, wait_s=1, poll_s=0.2)
    assert time.monotonic() - t0 >= 1
    check_resources(TrainConfig(num_workers=2), use_gpu=False, wait_s=0)  # fits: returns at once


@pytest.mark.parametrize(
    ("use_gpu", "share", "backend", "gpus"),
    [(False, 1.0, "gloo", None), (True, 1.0, "nccl", 1.0), (True, 0.5, "gloo", 0.5)],
)
def test_trainer_backend_and_gpu_share(use_gpu, share, backend, gpus, tmp_path):
    """One worker per GPU uses NCCL; workers sharing a GPU (NCCL refuses two ranks on one device) use gloo."""
    from components.training.driver import torch_trainer

    job = _job(tmp_path, tmp_path, gpus_per_worker=share)
    trainer = torch_trainer(job, use_gpu=use_gpu, datasets=False)
    assert trainer.backend_config.backend == backend
    assert trainer.scaling_config.resources_per_worker.get("GPU") == gpus
