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


# --- issue 15: data that was silently wrong, or a traceback ---------------------------------------------------


def _raw_png(path, width, height, *, bit_depth=8, colour_type=0, row=None):
    """A PNG written by hand (IHDR, one IDAT, IEND): huge sizes cost KBs on disk and nothing to build."""
    import struct
    import zlib

    def chunk(tag, data):
        return struct.pack(">I", len(data)) + tag + data + struct.pack(">I", zlib.crc32(tag + data) & 0xFFFFFFFF)

    channels = {0: 1, 2: 3, 4: 2, 6: 4}[colour_type]
    row = row if row is not None else bytes((width * bit_depth * channels + 7) // 8)
    z = zlib.compressobj(9)
    data = b"".join(z.compress(b"\x00" + row) for _ in range(height)) + z.flush()
    ihdr = struct.pack(">IIBBBBB", width, height, bit_depth, colour_type, 0, 0, 0)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", data) + chunk(b"IEND", b""))


def _png16(path, values):
    path.parent.mkdir(parents=True, exist_ok=True)
    im = Image.fromarray(np.asarray(values, dtype=np.uint16))
    assert im.mode == "I;16"
    im.save(path)


def test_16bit_png_is_scaled_by_its_bit_depth_not_clipped(tmp_path):
    ramp = (np.arange(64).reshape(8, 8) * 1000).astype(np.uint16)  # 0 .. 63000
    _png16(tmp_path / "a.png", ramp)
    raw = load_imagefolder(path=str(tmp_path))
    np.testing.assert_allclose(raw.x[0, 0], ramp / 65535.0, rtol=1e-6)
    assert (raw.x == 1.0).mean() < 0.02  # today: 98% of the pixels clip to 1.0


def test_mixed_8_and_16_bit_images_share_one_scale(tmp_path):
    _png(tmp_path / "a8.png", value=255)
    _png16(tmp_path / "b16.png", np.full((8, 8), 65535))
    _png16(tmp_path / "c16.png", np.full((8, 8), 32768))
    _png(tmp_path / "d8.png", value=0)
    raw = load_imagefolder(path=str(tmp_path))
    assert raw.x.shape == (4, 1, 8, 8)
    np.testing.assert_allclose(raw.x.reshape(4, -1).mean(1), [1.0, 1.0, 32768 / 65535, 0.0], rtol=1e-6)
    assert raw.extras["bit_depths"] == [8, 16]


def test_16bit_gray_beside_colour_is_repeated_over_the_channels(tmp_path):
    _png16(tmp_path / "a.png", np.full((8, 8), 65535))
    _png(tmp_path / "b.png", mode="RGB", value=255)
    raw = load_imagefolder(path=str(tmp_path))
    assert raw.x.shape == (2, 3, 8, 8)
    np.testing.assert_allclose(raw.x[0], 1.0)


@pytest.mark.parametrize("mode", ["I;16", "I;16B", "I"])
def test_every_16_bit_grayscale_mode_pil_gives_is_scaled(mode):
    from components.data.images import image_array

    values = np.array([[0, 1000], [32768, 65535]])
    if mode == "I":
        im = Image.fromarray(values.astype(np.int32))
    else:
        dtype = "<u2" if mode == "I;16" else ">u2"
        im = Image.frombytes(mode, (2, 2), values.astype(dtype).tobytes())
    assert im.mode == mode
    arr, bits = image_array(im, "f.png")
    assert bits == 16 and arr.dtype == np.float32
    np.testing.assert_allclose(arr, values / 65535.0, rtol=1e-6)


def test_32_bit_and_float_images_are_refused_naming_the_mode():
    from components.data.images import image_array

    with pytest.raises(DataError, match=r"f\.png: expected .*PNG.*, got mode 'F'"):
        image_array(Image.new("F", (2, 2)), "f.png")
    with pytest.raises(DataError, match=r"f\.png: expected 16-bit values .*, got .*70000"):
        image_array(Image.fromarray(np.full((2, 2), 70000, np.int32)), "f.png")


def test_huge_png_is_refused_before_decoding(tmp_path):
    # 14000 x 14000 (196 M pixels, 24 KB on disk): beyond PIL's own bomb limit, a traceback today
    _png(tmp_path / "ok.png")
    _raw_png(tmp_path / "bomb.png", 14000, 14000, bit_depth=1)
    assert (tmp_path / "bomb.png").stat().st_size < 100_000
    with pytest.raises(DataError, match=r"bomb\.png: expected at most 16777216 pixels .*, got 196000000 pixels") as e:
        load_imagefolder(path=str(tmp_path))
    assert "max_pixels" in str(e.value) and "\n" not in str(e.value)


def test_max_pixels_is_a_per_dataset_limit(tmp_path):
    _png(tmp_path / "a.png", size=(64, 64))
    with pytest.raises(DataError, match=r"a\.png: expected at most 1000 pixels .*, got 64×64"):
        load_imagefolder(path=str(tmp_path), max_pixels=1000)
    assert load_imagefolder(path=str(tmp_path), max_pixels=64 * 64).x.shape == (1, 1, 64, 64)


def test_pil_decompression_bomb_warning_is_an_error_even_when_warnings_are_ignored(tmp_path, monkeypatch):
    import warnings

    _png(tmp_path / "a.png", size=(40, 40))  # 1600 px: above PIL's limit (warning), below twice it (error)
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 1000)
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore")  # what the stage runner (pipelines/_common.quiet) does
        with pytest.raises(DataError, match=r"a\.png: .*decompression bomb"):
            load_imagefolder(path=str(tmp_path), max_pixels=10**9)


def test_empty_class_folder_is_named(tmp_path):
    _png(tmp_path / "cat" / "0.png")
    _png(tmp_path / "cat" / "1.png")
    (tmp_path / "dog").mkdir()
    (tmp_path / "dog" / "notes.txt").write_text("no images here")
    with pytest.raises(DataError, match=r"class folder .*dog has no \.png/\.jpg/\.jpeg files"):
        load_imagefolder(path=str(tmp_path))


def test_images_beside_class_folders_are_not_silently_dropped(tmp_path):
    _png(tmp_path / "cat" / "0.png")
    _png(tmp_path / "stray.png")
    with pytest.raises(DataError, match=r"both class sub-folders and 1 image.*stray\.png"):
        load_imagefolder(path=str(tmp_path))


def test_hidden_files_and_folders_are_skipped(tmp_path):
    _png(tmp_path / "cat" / "0.png")
    _png(tmp_path / "dog" / "0.png")
    (tmp_path / ".ipynb_checkpoints").mkdir()
    (tmp_path / "cat" / "._0.png").write_bytes(b"AppleDouble resource fork")
    raw = load_imagefolder(path=str(tmp_path))
    assert raw.class_names == ("cat", "dog") and len(raw.x) == 2


def test_symlink_out_of_the_folder_is_refused_unless_follow_symlinks(tmp_path):
    outside = tmp_path / "elsewhere"
    _png(outside / "secret.png", value=7)
    root = tmp_path / "raw"
    _png(root / "cat" / "0.png")
    _png(root / "dog" / "0.png")
    (root / "dog" / "1.png").symlink_to(outside / "secret.png")
    with pytest.raises(DataError, match=r"dog/1\.png is a symlink to .*secret\.png, outside .*raw.*follow_symlinks"):
        load_imagefolder(path=str(root))
    raw = load_imagefolder(path=str(root), follow_symlinks=True)
    assert len(raw.x) == 3


def test_symlinked_class_folder_out_of_the_folder_is_refused(tmp_path):
    _png(tmp_path / "elsewhere" / "0.png")
    root = tmp_path / "raw"
    _png(root / "cat" / "0.png")
    (root / "dog").symlink_to(tmp_path / "elsewhere", target_is_directory=True)
    with pytest.raises(DataError, match=r"raw/dog is a symlink to .*elsewhere, outside"):
        load_imagefolder(path=str(root))
    assert load_imagefolder(path=str(root), follow_symlinks=True).class_names == ("cat", "dog")


def test_symlinks_inside_the_folder_are_fine(tmp_path):
    root = tmp_path / "raw"
    _png(root / "cat" / "0.png", value=1)
    _png(root / "dog" / "0.png", value=2)
    (root / "dog" / "1.png").symlink_to(root / "cat" / "0.png")
    raw = load_imagefolder(path=str(root))
    assert raw.y.tolist() == [0, 1, 1]


def test_symlink_cycle_does_not_hang(tmp_path):
    root = tmp_path / "raw"
    _png(root / "cat" / "0.png")
    (root / "cat" / "loop").symlink_to(root / "cat", target_is_directory=True)
    raw = load_imagefolder(path=str(root), follow_symlinks=True)
    assert len(raw.x) == 1


def test_user_path_resolving_outside_the_project_is_refused(tmp_path, monkeypatch):
    project, outside = tmp_path / "project", tmp_path / "outside"
    _png(outside / "a.png")
    (project / "data" / "raw").mkdir(parents=True)
    (project / "data" / "raw" / "faces").symlink_to(outside, target_is_directory=True)
    monkeypatch.chdir(project)
    via_link = r"imagefolder: path data/raw/faces resolves to .*outside \(through a symlink\), outside the project"
    with pytest.raises(DataError, match=via_link):
        load_imagefolder(path="data/raw/faces")
    with pytest.raises(DataError, match=r"outside the project"):
        load_imagefolder(path=str(outside))
    with pytest.raises(DataError, match=r"outside the project"):
        load_npz(path="../outside/a.png")
    assert len(load_imagefolder(path="data/raw/faces", follow_symlinks=True).x) == 1


# --- npz ------------------------------------------------------------------------------------------------------


def _npz(tmp_path, **arrays):
    f = tmp_path / "d.npz"
    np.savez(f, **arrays)
    return str(f)


@pytest.mark.parametrize(
    ("x", "got"),
    [
        (np.zeros((4, 3), np.complex64), "complex64"),
        (np.zeros((4, 3), bool), "bool"),
        (np.array([["a", "b"], ["c", "d"]]), "<U1"),
        (np.zeros((4, 3), "datetime64[s]"), "datetime64"),
    ],
)
def test_npz_x_of_a_non_real_dtype_is_refused(tmp_path, x, got):
    with pytest.raises(DataError, match=rf"npz: 'x' in .*d\.npz: expected a real number dtype .*, got {got}") as e:
        load_npz(path=_npz(tmp_path, x=x))
    assert "float32" in str(e.value) and "\n" not in str(e.value)


def test_npz_uint16_images_scale_by_65535(tmp_path):
    raw = load_npz(path=_npz(tmp_path, x=np.full((3, 2, 2), 65535, np.uint16)))
    assert raw.x.max() == 1.0 and raw.x.dtype == np.float32


@pytest.mark.parametrize(
    ("y", "match"),
    [
        (np.array([0, 1, np.nan, 1]), r"'y' .*: expected integer class ids .*, got nan at index 2"),
        (np.array([0, 1, np.inf, 1]), r"'y' .*: expected integer class ids .*, got inf at index 2"),
        (np.array([0, -2, 1, 1]), r"'y' .*: expected integer class ids .*, got -2 at index 1"),
        (np.array([0, 1.5, 1, 1]), r"'y' .*: expected integer class ids .*, got 1.5 at index 1"),
        (np.array([0, 1, 1, 1], bool), r"'y' .*: expected integer class ids .*, got dtype bool"),
        (np.array(["a", "b", "a", "b"]), r"'y' .*: expected integer class ids .*, got dtype <U1"),
        (np.zeros((4, 2), np.int64), r"'y' .*: expected shape \(4,\), got \(4, 2\)"),
        # today: wraps to -2**63, i.e. silently "no label"
        (np.array([0, 2**63, 1, 1], np.uint64), r"'y' .*: expected integer class ids .*, got 9223372036854775808 at"),
    ],
)
def test_npz_bad_labels_are_refused_naming_y(tmp_path, y, match):
    with pytest.raises(DataError, match=match) as e:
        load_npz(path=_npz(tmp_path, x=np.zeros((4, 3), np.float32), y=y))
    assert "\n" not in str(e.value)


def test_npz_label_ids_are_reindexed_and_a_huge_id_stays_one_class(tmp_path):
    y = np.array([0, 10**7, 3, 3, 0, 10**7])
    raw = load_npz(path=_npz(tmp_path, x=np.zeros((6, 2), np.float32), y=y))
    assert raw.class_names == ("0", "3", "10000000")  # today: 10,000,001 class names (a 499 MB manifest)
    assert raw.y.tolist() == [0, 2, 1, 1, 0, 2] and raw.y.dtype == np.int64
    m = prepare_dataset("d", raw, tmp_path / "out", val=0.0, test=0.4, seed=0)
    assert (tmp_path / "out" / "d" / "manifest.json").stat().st_size < 10_000
    assert m["spec"]["class_names"] == ["0", "3", "10000000"]


def test_npz_contiguous_labels_keep_their_ids_and_float_integers_are_fine(tmp_path):
    raw = load_npz(path=_npz(tmp_path, x=np.zeros((4, 2), np.float32), y=np.array([1.0, 0.0, 2.0, 1.0])))
    assert raw.class_names == ("0", "1", "2") and raw.y.tolist() == [1, 0, 2, 1]


def test_npz_minus_one_means_no_label(tmp_path):
    raw = load_npz(path=_npz(tmp_path, x=np.zeros((4, 2), np.float32), y=np.array([-1, 0, 1, -1])))
    assert raw.class_names == ("0", "1") and raw.y.tolist() == [-1, 0, 1, -1]
    raw = load_npz(path=_npz(tmp_path, x=np.zeros((4, 2), np.float32), y=np.full(4, -1)))
    assert raw.class_names == () and raw.y.tolist() == [-1] * 4


def test_npz_more_classes_than_max_classes_is_refused(tmp_path):
    path = _npz(tmp_path, x=np.zeros((1500, 2), np.float32), y=np.arange(1500))
    with pytest.raises(DataError, match=r"'y' .*: expected at most 1000 distinct class ids \(max_classes\), got 1500"):
        load_npz(path=path)
    assert len(load_npz(path=path, max_classes=2000).class_names) == 1500


def test_imagefolder_more_classes_than_max_classes_is_refused(tmp_path):
    for c in ("a", "b", "c"):
        _png(tmp_path / c / "0.png")
    with pytest.raises(DataError, match=r"expected at most 2 class folders \(max_classes\), got 3"):
        load_imagefolder(path=str(tmp_path), max_classes=2)
