"""``synthetic``: a labelled image dataset generated chunk by chunk, as large as asked, never whole in memory.

Each image is ``image_size`` × ``image_size`` grayscale (1 channel, values in [0, 1] on 256 levels): one shape,
its class, at a random centre, size and brightness on a noisy dark background. Class ``i`` is ``SHAPES[i]``
(disc, square, ring, diamond, cross, horizontal bar, vertical bar, triangle); ``n_classes`` takes the first
``n_classes`` of them, each drawn with equal probability.

The images come in chunks of :func:`chunk_rows` rows (about :data:`CHUNK_BYTES` each); chunk ``k`` is drawn from
its own generator ``SeedSequence([seed, k])``, so the data depend on ``(seed, n_samples, image_size, n_classes)``
only, any chunk is made without the ones before it, and a smaller ``n_samples`` is a prefix of a larger one.
The source returns :class:`~components.data.spec.RawChunks`: ``prepare_streamed`` writes the chunks as Parquet
shards as they come (no ``.npz`` arrays), so only one chunk and one shard per split are ever held.

Refused with one line: ``image_size`` outside [MIN_SIZE, MAX_SIZE], ``n_classes`` outside [1, len(SHAPES)].
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator

import numpy as np

from components.data.spec import RawChunks
from components.errors import DataError

SHAPES = ("disc", "square", "ring", "diamond", "cross", "hbar", "vbar", "triangle")
CHUNK_BYTES = 4 * 2**20  # float32 pixels per chunk (about): the rows of a chunk follow from image_size alone
# defaults (components.config.DatasetConfig declares the same; a test keeps them equal)
N_SAMPLES = 10_000
IMAGE_SIZE = 32
N_CLASSES = 4
MIN_SIZE, MAX_SIZE = 8, 256
NOISE = 0.05  # std of the Gaussian pixel noise

# each shape on coordinates (u, v) normalised to the shape's half-size: the shape fills |u|, |v| <= 1
_MASKS: dict[str, Callable[[np.ndarray, np.ndarray], np.ndarray]] = {
    "disc": lambda u, v: u * u + v * v <= 1,
    "square": lambda u, v: np.maximum(np.abs(u), np.abs(v)) <= 0.8,
    "ring": lambda u, v: (u * u + v * v <= 1) & (u * u + v * v >= 0.55**2),
    "diamond": lambda u, v: np.abs(u) + np.abs(v) <= 1,
    "cross": lambda u, v: ((np.abs(u) <= 0.3) & (np.abs(v) <= 1)) | ((np.abs(v) <= 0.3) & (np.abs(u) <= 1)),
    "hbar": lambda u, v: (np.abs(v) <= 0.3) & (np.abs(u) <= 1),
    "vbar": lambda u, v: (np.abs(u) <= 0.3) & (np.abs(v) <= 1),
    "triangle": lambda u, v: (np.abs(u) <= (v + 1) / 2) & (v <= 1),
}


def chunk_rows(image_size: int) -> int:
    """Rows per chunk: about :data:`CHUNK_BYTES` of float32 pixels."""
    return max(1, CHUNK_BYTES // (4 * image_size * image_size))


def make_chunk(k: int, *, image_size: int, n_classes: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Chunk ``k``: ``x`` float32 (rows, 1, S, S) in [0, 1] on 256 levels, ``y`` int64 (rows,) class ids."""
    rows, s = chunk_rows(image_size), image_size
    rng = np.random.default_rng(np.random.SeedSequence([seed, k]))
    y = rng.integers(n_classes, size=rows)
    half = rng.uniform(0.18, 0.35, rows).astype(np.float32) * s  # half-size of the shape, in pixels
    cx = half + rng.uniform(0, 1, rows).astype(np.float32) * (s - 2 * half)
    cy = half + rng.uniform(0, 1, rows).astype(np.float32) * (s - 2 * half)
    bright = rng.uniform(0.6, 1.0, rows).astype(np.float32)
    noise = rng.standard_normal((rows, s, s), dtype=np.float32) * NOISE
    grid = np.arange(s, dtype=np.float32) + 0.5
    x = np.empty((rows, s, s), np.float32)
    for c in range(n_classes):
        i = np.flatnonzero(y == c)
        u = (grid[None, None, :] - cx[i, None, None]) / half[i, None, None]
        v = (grid[None, :, None] - cy[i, None, None]) / half[i, None, None]
        x[i] = _MASKS[SHAPES[c]](u, v) * bright[i, None, None]
    x += noise
    del noise
    np.clip(x, 0, 1, out=x)
    x *= 255  # 256 levels, in place: a chunk costs about three times its own size at the peak
    np.round(x, out=x)
    x /= 255
    return x[:, None], y.astype(np.int64)


class SyntheticChunks:
    """The chunks of one synthetic dataset; each iteration draws them again, the same every time."""

    def __init__(self, *, n_samples: int, image_size: int, n_classes: int, seed: int) -> None:
        self.n, self.image_size, self.n_classes, self.seed = n_samples, image_size, n_classes, seed

    def __len__(self) -> int:
        return math.ceil(self.n / chunk_rows(self.image_size))

    def __iter__(self) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        rows = chunk_rows(self.image_size)
        for k in range(len(self)):
            x, y = make_chunk(k, image_size=self.image_size, n_classes=self.n_classes, seed=self.seed)
            m = min(rows, self.n - k * rows)  # the last chunk is cut: a smaller n is a prefix of a larger one
            yield x[:m], y[:m]


def load_synthetic(
    *,
    n_samples: int | None = None,
    image_size: int = IMAGE_SIZE,
    n_classes: int = N_CLASSES,
    seed: int = 0,
    **_: object,
) -> RawChunks:
    """``n_samples`` (default :data:`N_SAMPLES`) synthetic shape images in chunks (see the module docstring)."""
    n = N_SAMPLES if n_samples is None else n_samples
    if n < 1:
        raise DataError(f"synthetic: expected n_samples >= 1, got {n}")
    if not MIN_SIZE <= image_size <= MAX_SIZE:
        raise DataError(f"synthetic: expected image_size in [{MIN_SIZE}, {MAX_SIZE}], got {image_size}")
    if not 1 <= n_classes <= len(SHAPES):
        raise DataError(f"synthetic: expected n_classes in [1, {len(SHAPES)}], got {n_classes}")
    return RawChunks(
        chunks=SyntheticChunks(n_samples=n, image_size=image_size, n_classes=n_classes, seed=seed),
        n=n,
        kind="image",
        shape=(1, image_size, image_size),
        class_names=SHAPES[:n_classes],
        levels=256,
        extras={"source": "synthetic", "chunk_rows": chunk_rows(image_size)},
    )
