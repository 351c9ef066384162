"""``components.training.ingest``: the batches a rank trains on, from the prepared arrays and from Ray Data shards
(a real local Ray). The Ray path keeps the sampler's contract: whole batches, every row at most once per epoch,
the same order for the same (seed, epoch, rank), a new one every epoch; held-out splits in order, every row once."""

from pathlib import Path

import numpy as np
import pytest
import torch

from components.config import TrainConfig
from components.data import load_split
from components.errors import DataError
from components.training.ingest import ShardBatches, data_config, ray_datasets, shard_plan, tensor_batches


def _epoch(batches, epoch):
    batches.set_epoch(epoch)
    out = list(batches)
    assert len(out) == len(batches)
    return torch.cat([b[1] for b in out]).numpy(), torch.cat([b[0] for b in out])  # labels, images


def _shards(root, cfg, *, train):
    ds = ray_datasets(root, "digits", cfg, splits=("train",))["train"]
    rows = shard_plan(root, "digits", cfg, splits=("train",)).rows["train"]
    return ShardBatches(ds, columns=("x", "y"), rows=rows, batch_size=cfg.batch_size, train=train,
                        shuffle_buffer=cfg.shuffle_buffer, seed=cfg.seed, rank=0)  # fmt: skip


@pytest.mark.parametrize("materialize_mib", [512.0, 0.0], ids=["materialized", "streamed"])
def test_ray_shards_give_whole_shuffled_batches_reproducibly(ray_session, digits_root, materialize_mib):
    cfg = TrainConfig(batch_size=64, num_workers=1, materialize_mib=materialize_mib)
    x, y = load_split(digits_root, "digits", "train")
    b = _shards(digits_root, cfg, train=True)
    assert len(b) == len(x) // 64
    y0, x0 = _epoch(b, 0)
    assert len(y0) == len(b) * 64 and x0.dtype == torch.float32 and x0.shape[1:] == x.shape[1:]
    again, _ = _epoch(b, 0)
    other, _ = _epoch(b, 1)
    np.testing.assert_array_equal(y0, again)  # same (seed, epoch, rank): same order
    assert not np.array_equal(y0, other)  # the next epoch: a new order
    # every row at most once: the label counts never exceed the split's
    assert (np.bincount(y0, minlength=10) <= np.bincount(y, minlength=10)).all()


def test_ray_shards_of_a_held_out_split_give_every_row_once_in_order(ray_session, digits_root):
    cfg = TrainConfig(batch_size=100, num_workers=1)
    x, y = load_split(digits_root, "digits", "train")
    labels, images = _epoch(_shards(digits_root, cfg, train=False), 0)
    np.testing.assert_array_equal(labels, y)
    np.testing.assert_array_equal(images.numpy(), x.astype(np.float32))


def test_tensor_batches_keep_the_samplers_contract(digits_root):
    x, y = load_split(digits_root, "digits", "train")
    data = (torch.as_tensor(x, dtype=torch.float32), torch.as_tensor(y))
    cfg = TrainConfig(batch_size=64, num_workers=2)
    ranks = [tensor_batches(data, cfg, train=True, rank=r, world=2) for r in (0, 1)]
    seen = [_epoch(b, 3)[0] for b in ranks]
    assert len(seen[0]) == len(seen[1]) == (len(x) // 2) // 64 * 64
    assert (np.bincount(np.concatenate(seen), minlength=10) <= np.bincount(y, minlength=10)).all()


def test_a_plan_for_too_few_rows_per_worker_fails_with_one_line(digits_root):
    from components.models.configs import VAEConfig
    from components.models.family import build_model

    plan = shard_plan(digits_root, "digits", TrainConfig(num_workers=2), splits=("train",))
    plan = type(plan)(**{**plan.__dict__, "rows": {"train": 1}})
    model = build_model("vae", VAEConfig(latent_dim=2, width=4), plan.spec)
    with pytest.raises(DataError, match="expected at least one row per worker, got 1 rows for 2 workers"):
        plan.batches(model, "train", train=True, rank=0, world=2)


def test_materialize_mib_compares_the_decoded_size_not_the_compressed_files(tmp_path):
    import ray.data  # noqa: F401  (the tensor extension type the shards use)

    from components.data import prepare_streamed
    from components.data.shards import shard_paths
    from components.data.synthetic import load_synthetic
    from components.training.ingest import in_memory_mib

    m = prepare_streamed("syn", load_synthetic(n_samples=5000, image_size=32), tmp_path, val=0.1, test=0.2, seed=0)
    paths = shard_paths(tmp_path, "syn", "train", m)
    decoded = m["splits"]["train"]["n"] * (32 * 32 * 4 + 8) / 2**20  # float32 pixels and an int64 label per row
    assert in_memory_mib(paths) == pytest.approx(decoded)
    on_disk = sum(Path(p).stat().st_size for p in paths) / 2**20
    assert on_disk < decoded / 3  # 256 levels on a dark background: what the files' size would have compared


def test_the_ingest_window_bounds_the_object_store_of_a_streamed_split():
    def limits(mib):
        return data_config(TrainConfig(ingest_object_store_mib=mib))._user_execution_options.resource_limits

    assert limits(64).object_store_memory == 64 * 2**20 and limits(64).cpu == float("inf")
    assert limits(None).object_store_memory == float("inf")
    assert TrainConfig().ingest_object_store_mib == 256
    assert "ingest_object_store_mib" not in TrainConfig().shaping_dump()
