"""Training on a dataset several times larger than a worker may hold (issue 18): a synthetic image dataset prepared
chunk by chunk (``prepare_streamed``: Parquet shards only) at over 3x ``train.max_worker_mib``, streamed to 2 Ray
Train workers (the default ``materialize_mib`` streams it: it is larger once read); the epoch finishes and no worker
ever goes above the cap, each having seen more rows than the cap could hold.

The cap is 1.375x a worker's own memory on this machine (about 400 MiB private: Python, torch, Ray, the model;
streaming adds 10-40 MiB to it, see benchmarks/results/ingest_memory.md, and a train step of 64 64x64 images
another 40 MiB for milliseconds, which the guard's sampler sees), so the dataset is 1.6 GiB; every byte of it goes
through a VAE on 2 cores (about 7 MiB/s per core), so this takes minutes. The same run under a cap below a
worker's own memory fails at its first batch with the guard's one line, so the cap is live on this path. That run
also holds every CPU of the package's Ray instance (2 workers x 2 CPUs of its 4): the streamed read has to start
with no CPU free (Ray's V2 Parquet reader never did, see ``components.training.ingest.ray_datasets``); it runs in
a thread so that a hang fails the test instead of the suite. And the object-store window
(``train.ingest_object_store_mib``) never stalls a run, even when it is smaller than one block.
"""

import math
import threading

import pytest

from components.config import TrainConfig
from components.data import prepare_streamed
from components.data.synthetic import load_synthetic
from components.errors import GenfoundryError
from components.models.configs import VAEConfig
from components.training.driver import train
from components.training.job import TrainJob
from components.training.memory import ProcessPeaks

pytestmark = pytest.mark.slow  # end to end: `make test-slow` (CI runs it after `make test`)

SIZE = 64  # 16 KiB per float32 image
WORKER_OWN_MIB = 400  # a Ray Train worker's private memory before any data (measured: 380-395 MiB)
CAP_MIB = 1.375 * WORKER_OWN_MIB
ROW_MIB = 4 * SIZE * SIZE / 2**20


@pytest.fixture(scope="module")
def big(tmp_path_factory):
    root = tmp_path_factory.mktemp("big")
    n = math.ceil(3.05 * CAP_MIB / ROW_MIB)  # 107,360 rows: 1.64 GiB of float32
    m = prepare_streamed("big", load_synthetic(n_samples=n, image_size=SIZE, seed=0), root, val=0.02, test=0.03,
                         seed=0, shard_mib=16)  # fmt: skip
    return root, m


def _job(root, storage, **train_kw):
    cfg = {"epochs": 1, "batch_size": 64, "lr": 2e-3, "num_workers": 2, "shuffle_buffer": 1024, "max_failures": 0,
           "amp": False, **train_kw}  # fmt: skip
    return TrainJob(key="big", family="vae", model=VAEConfig(latent_dim=2, width=1), dataset="big",
                    data_root=str(root), train=TrainConfig(**cfg), run_name="big",
                    storage_path=str(storage))  # fmt: skip


def test_two_workers_stream_a_dataset_three_times_their_cap_and_stay_under_it(ray_session, big, tmp_path):
    root, m = big
    rows = {s: v["n"] for s, v in m["splits"].items()}
    assert sum(rows.values()) * ROW_MIB >= 3 * CAP_MIB
    assert rows["train"] // 2 * ROW_MIB > CAP_MIB  # each worker's share alone is more than it may hold
    steps = []
    with ProcessPeaks() as peaks:
        _, state = train(_job(root, tmp_path, max_worker_mib=CAP_MIB),
                         on_event=lambda ev: steps.append(ev["steps"]) if ev["event"] == "steps" else None)  # fmt: skip
    assert state.epoch == 1 and len(peaks.workers) == 2  # finished: the guard never fired (it fails the run)
    assert steps[0] * 64 > 0.99 * (rows["train"] // 2)  # every worker took its whole share
    peak = peaks.worker_peak("private")
    assert 0.5 * WORKER_OWN_MIB < peak < CAP_MIB, peaks.workers


def test_a_cap_below_a_workers_own_memory_fails_the_run_with_the_guards_line(ray_session, big, tmp_path):
    root, _ = big
    out: dict = {}

    def run() -> None:
        try:
            train(_job(root, tmp_path, max_worker_mib=WORKER_OWN_MIB / 2, cpus_per_worker=2))
        except GenfoundryError as e:
            out["error"] = e

    t = threading.Thread(target=run, daemon=True)
    t.start()
    t.join(timeout=400)
    assert not t.is_alive(), "the streamed read never started with every CPU held by the workers"
    msg = str(out["error"])
    assert f"expected worker memory <= {WORKER_OWN_MIB / 2:g} MiB (train.max_worker_mib), got " in msg
    assert "by epoch 1, training batch 0" in msg and "\n" not in msg


@pytest.mark.parametrize("materialize_mib", [512.0, 0.0], ids=["materialized", "streamed"])
def test_a_window_smaller_than_one_block_still_trains(ray_session, digits_root, tmp_path, materialize_mib):
    """``train.ingest_object_store_mib`` bounds the blocks in flight, never blocks the run: Ray Data lets one block
    through even when it alone is larger than the window, materialized or streamed."""
    job = TrainJob(key="digits", family="vae", model=VAEConfig(latent_dim=2, width=4), dataset="digits",
                   data_root=str(digits_root), run_name=f"window-{materialize_mib:g}", storage_path=str(tmp_path),
                   train=TrainConfig(epochs=2, batch_size=64, num_workers=2, max_failures=0,
                                     materialize_mib=materialize_mib, ingest_object_store_mib=0.01))  # fmt: skip
    _, state = train(job)
    assert state.epoch == 2
