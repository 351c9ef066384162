"""``components.data.shards``: prepared splits as Parquet shards, read back as Ray Data reads them."""

import numpy as np
import pyarrow.parquet as pq
import pytest
import ray.data  # noqa: F401  (registers Ray's tensor extension type, which the shards' x column uses)

from components.data import get_source, load_manifest, load_split, prepare_dataset
from components.data.shards import SHARD_DIR, ShardWriter, shard_paths
from components.errors import DataError


def _read(paths):
    tables = [pq.read_table(p) for p in paths]
    return {
        c: np.concatenate([t.column(c).combine_chunks().to_numpy() for t in tables]) for c in tables[0].column_names
    }


def test_prepared_shards_hold_exactly_the_npz_rows_in_order(tmp_path):
    m = prepare_dataset("digits", get_source("digits")(), tmp_path, val=0.1, test=0.2, seed=0, shard_mib=0.05)
    for split in ("train", "val", "test"):
        paths = shard_paths(tmp_path, "digits", split, load_manifest(tmp_path, "digits"))
        x, y = load_split(tmp_path, "digits", split)
        cols = _read(paths)
        assert sum(m["shards"][split]["rows"]) == len(x) == len(cols["x"])
        np.testing.assert_array_equal(cols["x"], x.astype(np.float32))
        np.testing.assert_array_equal(cols["y"], y)
        assert cols["x"].dtype == np.float32 and cols["y"].dtype == np.int64
    assert len(m["shards"]["train"]["files"]) > 1  # 0.05 MiB shards: the train split spans several files


def test_a_writer_fed_in_chunks_cuts_shards_by_size_and_keeps_every_row(tmp_path):
    w = ShardWriter(tmp_path / "s", shard_mib=1 / 64)  # 16 KiB: 62 rows of 64 float32 + one int64 (264 B)
    x = np.arange(1000 * 64, dtype=np.float32).reshape(1000, 64)
    for start in range(0, 1000, 300):  # chunks that do not line up with the shards
        w.add({"x": x[start : start + 300], "y": np.arange(start, min(start + 300, 1000))})
    out = w.close()
    assert sum(out["rows"]) == 1000 and out["rows"] == [62] * 16 + [8]
    cols = _read([tmp_path / "s" / f for f in out["files"]])
    np.testing.assert_array_equal(cols["x"], x)
    np.testing.assert_array_equal(cols["y"], np.arange(1000))


def test_an_empty_split_gets_one_readable_empty_shard(tmp_path):
    w = ShardWriter(tmp_path / "s", shard_mib=1)
    w.add({"x": np.zeros((0, 3), np.float32), "y": np.zeros(0, np.int64)})
    out = w.close()
    assert out["rows"] == [0] and pq.read_table(tmp_path / "s" / out["files"][0]).num_rows == 0


def test_chunks_with_other_columns_or_ragged_lengths_fail_with_one_line(tmp_path):
    w = ShardWriter(tmp_path / "s", shard_mib=1)
    w.add({"x": np.zeros((2, 3), np.float32), "y": np.zeros(2, np.int64)})
    with pytest.raises(DataError, match=r"expected the columns \['x', 'y'\], got \['x'\]"):
        w.add({"x": np.zeros((2, 3), np.float32)})
    with pytest.raises(DataError, match=r"expected columns of one length, got \[2, 3\]"):
        w.add({"x": np.zeros((2, 3), np.float32), "y": np.zeros(3, np.int64)})


def test_a_dataset_prepared_before_shards_fails_with_one_line(tmp_path):
    prepare_dataset("digits", get_source("digits")(), tmp_path, val=0.1, test=0.2, seed=0)
    manifest = load_manifest(tmp_path, "digits")
    del manifest["shards"]
    with pytest.raises(DataError, match=r"no Parquet shards for 'train'.*re-run `dvc repro prepare`"):
        shard_paths(tmp_path, "digits", "train", manifest)
    assert (tmp_path / "digits" / SHARD_DIR / "train").is_dir()
