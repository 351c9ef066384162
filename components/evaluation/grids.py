"""Pictures of samples: image grids and 2-D scatter plots as PNG, with PIL only (no torchvision)."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw
from torch import Tensor

from components.io import atomic_path


def image_grid(
    images: Tensor | np.ndarray, *, nrow: int | None = None, pad: int = 1, min_cell: int = 56
) -> Image.Image:
    """Tile images (n, C, H, W) in [0, 1] into one PIL image, upscaled (nearest) so small digits stay visible."""
    x = images.detach().cpu().numpy() if isinstance(images, Tensor) else np.asarray(images)
    n, c, h, w = x.shape
    nrow = nrow or math.ceil(math.sqrt(n))
    ncol = math.ceil(n / nrow)
    grid = np.ones((c, ncol * (h + pad) + pad, nrow * (w + pad) + pad), dtype=np.float32) * 0.5
    for i in range(n):
        r, q = divmod(i, nrow)
        grid[:, pad + r * (h + pad) : pad + r * (h + pad) + h, pad + q * (w + pad) : pad + q * (w + pad) + w] = x[i]
    arr = (np.clip(grid, 0, 1) * 255).round().astype(np.uint8)
    img = Image.fromarray(arr[0] if c == 1 else arr.transpose(1, 2, 0), mode="L" if c == 1 else "RGB")
    scale = max(1, math.ceil(min_cell / h))
    return img.resize((img.width * scale, img.height * scale), Image.NEAREST) if scale > 1 else img


def scatter_plot(points: np.ndarray, *, reference: np.ndarray | None = None, size: int = 480) -> Image.Image:
    """2-D points as dots (reference means as red crosses) on a white square."""
    pts = np.asarray(points, dtype=np.float64)
    allp = pts if reference is None else np.concatenate([pts, np.asarray(reference)])
    lo, hi = allp.min(0), allp.max(0)
    span = float((hi - lo).max()) or 1.0
    centre = (hi + lo) / 2

    def to_px(p: np.ndarray) -> np.ndarray:
        return ((p - centre) / span * 0.9 + 0.5) * size

    img = Image.new("RGB", (size, size), "white")
    draw = ImageDraw.Draw(img)
    for x, y in to_px(pts):
        draw.point((x, size - y), fill=(30, 60, 160))
    if reference is not None:
        for x, y in to_px(np.asarray(reference)):
            y = size - y
            draw.line((x - 5, y, x + 5, y), fill="red")
            draw.line((x, y - 5, x, y + 5), fill="red")
    return img


def save_png(img: Image.Image, path: str | Path) -> None:
    with atomic_path(path) as tmp:
        img.save(tmp, format="PNG")
