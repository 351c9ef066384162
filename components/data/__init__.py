"""Datasets as plugins: each source is a function returning :class:`RawData`; prepare splits and saves them.

A prepared dataset lives in ``<root>/<name>/`` as ``train.npz``, ``val.npz``, ``test.npz`` (arrays ``x``
and ``y``) plus ``manifest.json`` (the :class:`DataSpec`, counts, value range, sha256 of the arrays).
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from components.data.spec import DataSpec, RawData
from components.errors import DataError
from components.io import atomic_path, read_json, sha256_arrays, write_json

# source name -> "module:function"; imported lazily so one source's dependencies never load another's.
SOURCES: dict[str, str] = {
    "digits": "components.data.images:load_digits",
    "mnist5k": "components.data.images:load_mnist5k",
    "imagefolder": "components.data.images:load_imagefolder",
    "npz": "components.data.images:load_npz",
    "ring8": "components.data.mixtures:load_ring8",
    "grid25": "components.data.mixtures:load_grid25",
    "names": "components.data.text:load_names",
    "textfile": "components.data.text:load_textfile",
}
SPLITS = ("train", "val", "test")


def get_source(name: str) -> Callable[..., RawData]:
    if name not in SOURCES:
        raise DataError(f"unknown dataset source {name!r}; expected one of {sorted(SOURCES)}")
    module, fn = SOURCES[name].split(":")
    return getattr(importlib.import_module(module), fn)


def split_indices(n: int, y: np.ndarray | None, *, val: float, test: float, seed: int) -> dict[str, np.ndarray]:
    """Deterministic train/val/test indices; stratified by ``y`` when labels exist so class shares match."""
    rng = np.random.default_rng(seed)
    groups = [np.arange(n)] if y is None or (y < 0).all() else [np.flatnonzero(y == c) for c in np.unique(y)]
    out: dict[str, list[np.ndarray]] = {s: [] for s in SPLITS}
    for g in groups:
        g = rng.permutation(g)
        n_test, n_val = int(round(len(g) * test)), int(round(len(g) * val))
        out["test"].append(g[:n_test])
        out["val"].append(g[n_test : n_test + n_val])
        out["train"].append(g[n_test + n_val :])
    idx = {s: np.sort(np.concatenate(v)) for s, v in out.items()}
    if len(idx["train"]) == 0:
        raise DataError(f"dataset has {n} samples: too few to split with val={val}, test={test}")
    return idx


def prepare_dataset(name: str, raw: RawData, out_dir: str | Path, *, val: float, test: float, seed: int) -> dict:
    """Validate, split and save one dataset atomically; return its manifest."""
    x, y = raw.x, raw.y
    if len(x) == 0:
        raise DataError(f"{name}: the dataset is empty; expected at least one sample")
    if raw.kind != "text" and not np.isfinite(x).all():
        raise DataError(f"{name}: the data contains NaN or inf values")
    if y is None:
        y = np.full(len(x), -1, dtype=np.int64)
    idx = split_indices(len(x), y if raw.class_names else None, val=val, test=test, seed=seed)
    spec = DataSpec(
        name=name,
        kind=raw.kind,
        shape=tuple(x.shape[1:]) if raw.kind != "text" else (int(max(len(s) for s in x)),),
        class_names=raw.class_names,
        levels=raw.levels,
        vocab=raw.vocab,
        extras=raw.extras,
    )
    manifest: dict[str, Any] = {"spec": spec.to_dict(), "seed": seed, "split": {"val": val, "test": test}}
    splits = {}
    for s in SPLITS:
        xs, ys = x[idx[s]], y[idx[s]]
        counts = np.bincount(ys[ys >= 0], minlength=len(raw.class_names)).tolist() if raw.class_names else []
        splits[s] = {"n": int(len(xs)), "class_counts": counts, "sha256": sha256_arrays(xs, ys)}
        if raw.kind != "text":
            splits[s]["range"] = [float(xs.min()), float(xs.max())] if len(xs) else None
    manifest["splits"] = splits
    manifest["sha256"] = sha256_arrays(*(np.frombuffer(splits[s]["sha256"].encode(), np.uint8) for s in SPLITS))
    with atomic_path(Path(out_dir) / name) as tmp:
        tmp.mkdir()
        for s in SPLITS:
            np.savez(tmp / f"{s}.npz", x=x[idx[s]], y=y[idx[s]])
        write_json(tmp / "manifest.json", manifest)
    return manifest


def load_manifest(root: str | Path, name: str) -> dict:
    path = Path(root) / name / "manifest.json"
    if not path.exists():
        raise DataError(f"dataset {name!r} is not prepared ({path} missing); run `dvc repro prepare` first")
    return read_json(path)


def load_spec(root: str | Path, name: str) -> DataSpec:
    return DataSpec.from_dict(load_manifest(root, name)["spec"])


def load_split(root: str | Path, name: str, split: str) -> tuple[np.ndarray, np.ndarray]:
    """The arrays ``(x, y)`` of one split of a prepared dataset."""
    if split not in SPLITS:
        raise DataError(f"unknown split {split!r}; expected one of {SPLITS}")
    path = Path(root) / name / f"{split}.npz"
    if not path.exists():
        raise DataError(f"dataset {name!r} is not prepared ({path} missing); run `dvc repro prepare` first")
    with np.load(path, allow_pickle=False) as z:
        return z["x"], z["y"]
