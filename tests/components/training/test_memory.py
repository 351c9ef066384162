"""``components.training.memory``: the per-worker memory cap ``train.max_worker_mib`` (checked at every batch a Ray
worker takes from its shard, one line above it) and the driver-side sampler the tests and benchmarks use."""

import time

import pytest
import torch

from components.config import TrainConfig
from components.training.ingest import ShardBatches
from components.training.memory import MemoryGuard, ProcessPeaks, WorkerMemoryError, private_mib


class FakeShard:
    """What ``ray.train.get_dataset_shard`` gives a worker, for ``ShardBatches``: batches as dicts of tensors."""

    def __init__(self, n_batches):
        self.n_batches = n_batches

    def iter_torch_batches(self, *, batch_size, drop_last, **shuffle):
        for i in range(self.n_batches):
            yield {"x": torch.full((batch_size, 3), float(i)), "y": torch.zeros(batch_size, dtype=torch.int64)}


def _batches(max_worker_mib, n=3):
    return ShardBatches(FakeShard(n), columns=("x", "y"), rows=4 * n, batch_size=4, train=True, shuffle_buffer=8,
                        seed=0, rank=1, max_worker_mib=max_worker_mib)  # fmt: skip


def test_a_worker_above_its_cap_fails_at_the_first_batch_with_one_line():
    b = _batches(1.0)
    b.set_epoch(2)
    with pytest.raises(WorkerMemoryError) as e:
        next(iter(b))
    msg = str(e.value)
    assert "\n" not in msg
    assert msg.startswith("train: expected worker memory <= 1 MiB (train.max_worker_mib), got ")
    assert "MiB private RSS on rank 1 by epoch 2, training batch 0; lower train.shuffle_buffer" in msg


def test_without_a_cap_every_batch_is_measured_and_passed_through():
    b = _batches(None)
    out = list(b)
    assert [float(x[0, 0]) for x, _ in out] == [0.0, 1.0, 2.0]
    assert b.guard.checks == 3 and b.guard.peak_mib > 10  # a Python process with torch holds tens of MiB


def test_a_cap_above_the_worker_lets_it_train():
    b = _batches(private_mib() + 1024)
    assert len(list(b)) == 3


def test_a_spike_between_two_batches_is_caught_at_the_next_one():
    """A train step's activations are gone by the next batch: the guard's sampler still saw them."""
    import numpy as np

    guard = MemoryGuard(private_mib() + 60, where="rank 0")
    guard.check(context="batch 0")  # starts the sampler; under the cap
    spike = np.ones(120 * 2**20 // 8)  # 120 MiB for 0.2 s, as a step's activations and gradients
    time.sleep(0.2)
    del spike
    assert private_mib() < guard.max_mib  # freed: a check of the moment alone would pass
    with pytest.raises(WorkerMemoryError, match=r"by batch 1; lower"):
        guard.check(context="batch 1")


def test_the_cap_is_a_positive_number_and_never_part_of_the_run_hash():
    assert TrainConfig().max_worker_mib is None
    assert "max_worker_mib" not in TrainConfig(max_worker_mib=512).shaping_dump()
    assert TrainConfig(max_worker_mib=512).shaping_dump() == TrainConfig().shaping_dump()
    with pytest.raises(ValueError):
        TrainConfig(max_worker_mib=0)
    with pytest.raises(ValueError, match="expected max_mib > 0 or None, got -1"):
        MemoryGuard(-1, where="rank 0")


def test_process_peaks_samples_this_process():
    with ProcessPeaks(every_s=0.01) as peaks:
        block = torch.ones(16 * 2**20 // 4)  # 16 MiB
        while peaks.samples < 3:
            time.sleep(0.01)
    del block
    assert peaks.driver["rss"] >= peaks.driver["private"] > 16
    assert peaks.driver["pss"] > 0 and peaks.driver["uss"] > 0
    assert peaks.workers == {} and peaks.worker_peak("rss") == 0.0  # no Ray Train worker under this process
