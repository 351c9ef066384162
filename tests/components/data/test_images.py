import numpy as np
import pytest
from PIL import Image

from components.data import load_spec, load_split, prepare_dataset, split_indices
from components.data.images import load_digits, load_imagefolder, load_mnist5k, load_npz
from components.errors import DataError


def _png(path, size=(8, 8), value=128, mode="L"):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new(mode, size, value if mode == "L" else (value, 0, 0)).save(path)


def test_embedded_datasets_have_the_documented_shapes():
    d = load_digits()
    assert d.x.shape == (1797, 1, 8, 8) and d.levels == 17 and d.x.max() == 1.0
    m = load_mnist5k()
    assert m.x.shape == (5000, 1, 28, 28) and np.bincount(m.y).tolist() == [500] * 10


def test_imagefolder_with_class_subfolders(tmp_path):
    for c in ("cat", "dog"):
        for i in range(3):
            _png(tmp_path / c / f"{i}.png", value=40 * i)
    raw = load_imagefolder(path=str(tmp_path))
    assert raw.x.shape == (6, 1, 8, 8) and raw.class_names == ("cat", "dog")
    assert raw.y.tolist() == [0, 0, 0, 1, 1, 1]


def test_imagefolder_colour_makes_three_channels(tmp_path):
    _png(tmp_path / "a.png")
    _png(tmp_path / "b.png", mode="RGB")
    raw = load_imagefolder(path=str(tmp_path))
    assert raw.x.shape == (2, 3, 8, 8) and raw.y is None


def test_corrupt_image_is_named(tmp_path):
    _png(tmp_path / "ok.png")
    (tmp_path / "broken.png").write_bytes(b"\x89PNG not really")
    with pytest.raises(DataError, match=r"cannot read image .*broken\.png.*fix or remove"):
        load_imagefolder(path=str(tmp_path))


def test_mixed_sizes_are_named(tmp_path):
    _png(tmp_path / "a.png", size=(8, 8))
    _png(tmp_path / "b.png", size=(9, 8))
    with pytest.raises(DataError, match=r"expected every image to be 8×8, got 9×8 in .*b\.png"):
        load_imagefolder(path=str(tmp_path))


def test_empty_folder_and_missing_path(tmp_path):
    with pytest.raises(DataError, match="no .png/.jpg/.jpeg files"):
        load_imagefolder(path=str(tmp_path))
    with pytest.raises(DataError, match="does not exist"):
        load_imagefolder(path=str(tmp_path / "nope"))


def test_npz_uint8_and_errors(tmp_path):
    f = tmp_path / "d.npz"
    np.savez(f, x=np.full((5, 4, 4), 255, np.uint8), y=np.arange(5) % 2)
    raw = load_npz(path=str(f))
    assert raw.x.shape == (5, 1, 4, 4) and raw.x.max() == 1.0 and raw.class_names == ("0", "1")
    np.savez(f, images=np.zeros((2, 2)))
    with pytest.raises(DataError, match="expected an array named 'x'"):
        load_npz(path=str(f))
    f.write_bytes(b"garbage")
    with pytest.raises(DataError, match="cannot read"):
        load_npz(path=str(f))


def test_split_is_deterministic_and_stratified():
    y = np.repeat(np.arange(4), 50)
    a = split_indices(len(y), y, val=0.1, test=0.2, seed=3)
    b = split_indices(len(y), y, val=0.1, test=0.2, seed=3)
    assert all(np.array_equal(a[s], b[s]) for s in a)
    assert np.bincount(y[a["test"]]).tolist() == [10] * 4
    assert len(np.intersect1d(a["train"], a["test"])) == 0
    assert sum(len(v) for v in a.values()) == len(y)


def test_prepare_writes_manifest_and_is_reproducible(tmp_path):
    raw = load_digits()
    m1 = prepare_dataset("digits", raw, tmp_path / "a", val=0.1, test=0.2, seed=0)
    m2 = prepare_dataset("digits", raw, tmp_path / "b", val=0.1, test=0.2, seed=0)
    assert m1["sha256"] == m2["sha256"]
    assert load_spec(tmp_path / "a", "digits").shape == (1, 8, 8)
    x, y = load_split(tmp_path / "a", "digits", "train")
    assert len(x) == m1["splits"]["train"]["n"] and x.dtype == np.float32


def test_failed_prepare_leaves_no_partial_output(tmp_path):
    raw = load_digits()
    raw.x[0, 0, 0, 0] = np.nan
    with pytest.raises(DataError, match="NaN"):
        prepare_dataset("digits", raw, tmp_path, val=0.1, test=0.2, seed=0)
    assert not (tmp_path / "digits").exists()
    assert [p.name for p in tmp_path.iterdir()] == []
