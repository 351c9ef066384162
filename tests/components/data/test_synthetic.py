"""``components.data.synthetic`` and ``prepare_streamed``: a labelled image dataset made and written chunk by chunk,
deterministic from its seed, split per chunk, its own peak memory flat as it grows; a streamed dataset refuses every
reader of whole arrays with one line."""

import copy
import inspect
import tracemalloc

import numpy as np
import pyarrow.parquet as pq
import pytest
import ray.data  # noqa: F401  (Ray's tensor extension type, before tracemalloc measures anything)
import yaml

from components.config import DatasetConfig, parse_params
from components.data import (
    _SplitStats,
    get_source,
    is_streamed,
    load_attributes,
    load_manifest,
    load_split,
    prepare_streamed,
)
from components.data.shards import shard_paths
from components.data.synthetic import SHAPES, chunk_rows, load_synthetic, make_chunk
from components.errors import ConfigError, DataError
from tests.conftest import ROOT

SIZE = 16  # 1 KiB per image: chunks of 4,096 rows (4 MiB)


def _prepare(root, n, *, seed=0, name="syn", shard_mib=1.0, val=0.1, test=0.2, n_classes=4):
    raw = load_synthetic(n_samples=n, image_size=SIZE, n_classes=n_classes, seed=seed)
    return prepare_streamed(name, raw, root, val=val, test=test, seed=seed, shard_mib=shard_mib)


def _read(paths):
    tables = [pq.read_table(p) for p in paths]
    return {c: np.concatenate([t.column(c).combine_chunks().to_numpy() for t in tables]) for c in ("x", "y")}


def test_chunks_are_labelled_shape_images_drawn_from_their_own_seed():
    x, y = make_chunk(3, image_size=SIZE, n_classes=8, seed=7)
    assert x.shape == (chunk_rows(SIZE), 1, SIZE, SIZE) and x.dtype == np.float32 and y.dtype == np.int64
    assert 0 <= x.min() and x.max() <= 1 and np.allclose(x * 255, np.round(x * 255), atol=1e-4)  # 256 levels
    assert set(np.unique(y)) == set(range(8))
    again, _ = make_chunk(3, image_size=SIZE, n_classes=8, seed=7)
    other, _ = make_chunk(4, image_size=SIZE, n_classes=8, seed=7)
    np.testing.assert_array_equal(x, again)
    assert not np.array_equal(x, other)
    # the shape is the label: a horizontal bar spans more columns than rows, a vertical bar the reverse, and a
    # disc covers more pixels than a ring of the same size
    bright = x[:, 0] > 0.4
    tall, wide = bright.any(axis=2).sum(axis=1), bright.any(axis=1).sum(axis=1)
    hbar, vbar = y == SHAPES.index("hbar"), y == SHAPES.index("vbar")
    assert (wide[hbar] > tall[hbar]).all() and (tall[vbar] > wide[vbar]).all()
    area = bright.sum(axis=(1, 2))
    assert area[y == SHAPES.index("disc")].mean() > 1.2 * area[y == SHAPES.index("ring")].mean()


def test_a_smaller_dataset_is_a_prefix_of_a_larger_one():
    small = list(load_synthetic(n_samples=5000, image_size=SIZE, seed=1).chunks)
    large = list(load_synthetic(n_samples=9000, image_size=SIZE, seed=1).chunks)
    assert [len(c[0]) for c in small] == [4096, 904] and [len(c[0]) for c in large] == [4096, 4096, 808]
    np.testing.assert_array_equal(np.concatenate([c[0] for c in small]), np.concatenate([c[0] for c in large])[:5000])


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"image_size": 4}, r"synthetic: expected image_size in \[8, 256\], got 4"),
        ({"n_classes": 9}, r"synthetic: expected n_classes in \[1, 8\], got 9"),
        ({"n_samples": 0}, r"synthetic: expected n_samples >= 1, got 0"),
    ],
)
def test_bad_synthetic_params_fail_with_one_line(kwargs, message):
    with pytest.raises(DataError, match=message):
        load_synthetic(**kwargs)


def test_the_same_seed_gives_the_same_manifest_and_another_seed_another(tmp_path):
    a = _prepare(tmp_path / "a", 6000)
    b = _prepare(tmp_path / "b", 6000)
    c = _prepare(tmp_path / "c", 6000, seed=1)
    assert a["sha256"] == b["sha256"] and a["splits"] == b["splits"] and a["shards"] == b["shards"]
    assert c["sha256"] != a["sha256"]
    assert a["streamed"] is True and a["chunks"] == 2 and a["spec"]["shape"] == [1, SIZE, SIZE]


def test_each_chunk_is_split_by_the_fractions_stratified_and_every_row_lands_in_one_shard(tmp_path):
    n = 3 * 4096 + 100
    m = _prepare(tmp_path, n, shard_mib=0.5)
    splits = m["splits"]
    assert sum(s["n"] for s in splits.values()) == n
    for split, share in (("train", 0.7), ("val", 0.1), ("test", 0.2)):
        assert abs(splits[split]["n"] / n - share) < 0.005, (split, splits[split]["n"])
        counts = np.array(splits[split]["class_counts"])
        assert counts.sum() == splits[split]["n"] and (counts > 0).all()
        paths = shard_paths(tmp_path, "syn", split, load_manifest(tmp_path, "syn"))
        cols = _read(paths)
        assert len(cols["x"]) == splits[split]["n"] == sum(m["shards"][split]["rows"])
        np.testing.assert_array_equal(np.bincount(cols["y"], minlength=4), counts)
        stats = _SplitStats(4)  # the manifest's hash is the shards' content
        stats.add(cols["x"].reshape(-1, 1, SIZE, SIZE), cols["y"])
        assert stats.entry()["sha256"] == splits[split]["sha256"]
    assert len(m["shards"]["train"]["files"]) > 10  # 0.5 MiB shards of an 8.6 MiB train split
    # the class shares of the source carry over to every split (stratified per chunk)
    shares = {s: np.array(v["class_counts"]) / v["n"] for s, v in splits.items()}
    assert np.abs(shares["test"] - shares["train"]).max() < 0.01


def test_prepare_peak_memory_stays_flat_as_the_dataset_grows(tmp_path):
    """Python-side allocations (numpy: the chunks, the shard buffers) peak the same for 2 chunks and 12 chunks, far
    below the data; pyarrow's own pool is checked the same way."""
    import pyarrow as pa

    _prepare(tmp_path / "warm", 100)  # first-call costs (pyarrow writers, Ray's tensor type)
    peaks, arrow = {}, {}
    for chunks in (2, 12):
        pool_before = pa.total_allocated_bytes()
        tracemalloc.start()
        _prepare(tmp_path / str(chunks), chunks * 4096, shard_mib=0.5)
        peaks[chunks] = tracemalloc.get_traced_memory()[1] / 2**20
        tracemalloc.stop()
        arrow[chunks] = pa.total_allocated_bytes() - pool_before
    data_mib = 12 * 4096 * SIZE * SIZE * 4 / 2**20  # 48 MiB
    assert peaks[12] <= 1.15 * peaks[2] + 1, peaks
    assert peaks[12] < data_mib / 2, (peaks, data_mib)
    assert arrow[12] < 2**20 and arrow[2] < 2**20  # nothing left held in Arrow's pool after the shards are written


def test_a_streamed_dataset_refuses_readers_of_whole_arrays_with_one_line(tmp_path):
    _prepare(tmp_path, 500)
    assert is_streamed(tmp_path, "syn")
    for read in (load_split, load_attributes):
        with pytest.raises(DataError) as e:
            read(tmp_path, "syn", "train")
        msg = str(e.value)
        assert "\n" not in msg and msg.startswith("dataset 'syn': expected the arrays ")
        assert "got a streamed dataset" in msg and "train.num_workers >= 1" in msg


def test_the_in_process_path_refuses_a_streamed_dataset_with_one_line(tmp_path):
    from components.config import TrainConfig
    from components.models.configs import VAEConfig
    from components.training.driver import train
    from components.training.job import TrainJob

    _prepare(tmp_path, 500)
    job = TrainJob(key="k", family="vae", model=VAEConfig(latent_dim=2, width=2), dataset="syn",
                   data_root=str(tmp_path), train=TrainConfig(num_workers=0, epochs=1), run_name="r",
                   storage_path=str(tmp_path / "ray"))  # fmt: skip
    with pytest.raises(DataError, match=r"got a streamed dataset .*train.num_workers >= 1") as e:
        train(job)
    assert "\n" not in str(e.value)


def test_chunks_that_break_the_spec_fail_with_one_line(tmp_path):
    raw = load_synthetic(n_samples=10, image_size=SIZE)
    raw.chunks = [(np.zeros((3, 1, 8, 8), np.float32), np.zeros(3, np.int64))]
    with pytest.raises(DataError, match=r"syn: chunk 0: expected x of shape \(m, 1, 16, 16\) .*got \(3, 1, 8, 8\)"):
        prepare_streamed("syn", raw, tmp_path, val=0.1, test=0.2, seed=0)
    raw.chunks = [(np.zeros((3, 1, SIZE, SIZE), np.float32), np.full(3, 7))]
    with pytest.raises(DataError, match=r"syn: chunk 0: expected labels in \[-1, 3\], got \[7, 7\]"):
        prepare_streamed("syn", raw, tmp_path, val=0.1, test=0.2, seed=0)
    raw.chunks = [(np.zeros((3, 1, SIZE, SIZE), np.float32), np.zeros(3, np.int64))]
    with pytest.raises(DataError, match=r"syn: expected 10 samples from the source, got 3 in 1 chunks"):
        prepare_streamed("syn", raw, tmp_path, val=0.1, test=0.2, seed=0)
    with pytest.raises(DataError, match=r"syn: expected at least 1 sample in val and test"):
        _prepare(tmp_path, 4)
    assert list(tmp_path.iterdir()) == []  # nothing half-written


BASE = yaml.safe_load((ROOT / "params.yaml").read_text())


def _params(dataset):
    raw = copy.deepcopy(BASE)
    raw["prepare"]["datasets"] = {"big": dataset}
    raw["experiments"], raw["finetune"] = {}, {}
    return raw


def test_a_synthetic_dataset_is_declared_in_params_and_its_keys_are_checked():
    ds = parse_params(_params({"source": "synthetic", "n_samples": 500, "image_size": 64})).prepare.datasets["big"]
    assert ds.image_size == 64 and ds.n_classes == 4
    with pytest.raises(ConfigError, match=r"'image_size' applies to synthetic, not to source 'digits'"):
        parse_params(_params({"source": "digits", "image_size": 64}))
    with pytest.raises(ConfigError, match=r"prepare.datasets.big.n_classes"):
        parse_params(_params({"source": "synthetic", "n_classes": 9}))


def test_the_config_defaults_are_the_synthetic_source_defaults():
    sig = inspect.signature(get_source("synthetic")).parameters
    for key, value in DatasetConfig(source="synthetic").source_kwargs().items():
        if key in sig and sig[key].default is not inspect.Parameter.empty:
            assert sig[key].default == value, key


def test_the_prepare_and_features_stages_take_a_synthetic_dataset(tmp_path, monkeypatch):
    """prepare writes it streamed; features gives it no classifier (it needs whole arrays) instead of failing."""
    from typer.testing import CliRunner

    from pipelines import features, prepare

    (tmp_path / "data" / "raw").mkdir(parents=True)
    raw = _params({"source": "synthetic", "n_samples": 600, "image_size": SIZE})
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(raw))
    result = CliRunner().invoke(prepare.app, [])
    assert result.exit_code == 0, result.output
    assert load_manifest(tmp_path / "data" / "prepared", "big")["streamed"] is True
    assert not list((tmp_path / "data" / "prepared" / "big").glob("*.npz"))
    result = CliRunner().invoke(features.app, [])
    assert result.exit_code == 0, result.output
    note = yaml.safe_load((tmp_path / "data" / "features" / "big" / "no_classifier.json").read_text())
    assert note["classifier"] is None and note["reason"].startswith("streamed")


def test_an_experiment_on_a_synthetic_dataset_must_train_on_ray_workers():
    raw = _params({"source": "synthetic"})
    raw["experiments"] = {"vae_big": {"family": "vae", "dataset": "big", "train": {"num_workers": 0}}}
    with pytest.raises(ConfigError, match=r"experiments.vae_big.train.num_workers: expected >= 1 for 'big'") as e:
        parse_params(raw)
    assert "\n" not in str(e.value)
    raw["experiments"]["vae_big"]["train"]["num_workers"] = 2
    assert parse_params(raw).experiments["vae_big"].dataset == "big"
