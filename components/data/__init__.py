"""Datasets as plugins: each source is a function returning :class:`RawData`; prepare splits and saves them.

A prepared dataset lives in ``<root>/<name>/`` as ``train.npz``, ``val.npz``, ``test.npz`` (arrays ``x``
and ``y``) plus ``manifest.json`` (the :class:`DataSpec`, counts, value range, sha256 of the arrays).

Bad input stops with one line naming the file, the line or the array, never a traceback or a silent
"fix": a dataset name must be a plain folder name (``components.layout.NAME_RULE``), a user ``path`` must
stay inside the project (:func:`user_path`), and the split must leave at least one test sample (and one
validation sample unless ``split.val`` is 0). Each source documents its own rules.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from components.data.shards import ATTR, SHARD_DIR, training_columns, write_split_shards
from components.data.spec import DataSpec, RawData
from components.errors import DataError
from components.io import atomic_path, read_json, sha256_arrays, write_json
from components.layout import check_name

# source name -> "module:function"; imported lazily so one source's dependencies never load another's.
SOURCES: dict[str, str] = {
    "digits": "components.data.images:load_digits",
    "mnist5k": "components.data.images:load_mnist5k",
    "imagefolder": "components.data.images:load_imagefolder",
    "npz": "components.data.images:load_npz",
    "ring8": "components.data.mixtures:load_ring8",
    "grid25": "components.data.mixtures:load_grid25",
    "names": "components.data.text:load_names",
    "surnames": "components.data.text:load_surnames",
    "textfile": "components.data.text:load_textfile",
    "notes": "components.data.audio:load_notes",
    "audiofolder": "components.data.audio:load_audiofolder",
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


def spec_of(name: str, raw: RawData) -> DataSpec:
    """The :class:`DataSpec` of ``raw`` saved as dataset ``name`` (text: the longest string's length)."""
    x = raw.x
    return DataSpec(
        name=name,
        kind=raw.kind,
        shape=tuple(x.shape[1:]) if raw.kind != "text" else (int(max(len(s) for s in x)),),
        class_names=raw.class_names,
        levels=raw.levels,
        vocab=raw.vocab,
        extras=raw.extras,
        attributes={k: tuple(names) for k, (_, names) in raw.attributes.items()},
    )


def prepare_dataset(
    name: str, raw: RawData, out_dir: str | Path, *, val: float, test: float, seed: int, shard_mib: float = 16.0
) -> dict:
    """Validate, split and save one dataset atomically; return its manifest.

    Each split is saved twice: ``<split>.npz`` (the arrays the driver-side stages read) and Parquet shards of about
    ``shard_mib`` each, in the form training workers read them through Ray Data (:mod:`components.data.shards`).

    ``name`` must be a plain folder name and ``out_dir/name`` must resolve inside ``out_dir``; the split must
    leave at least one test sample, and one validation sample unless ``val`` is 0."""
    check_name(name, where="dataset name")
    out = Path(out_dir).resolve()
    target = (out / name).resolve()
    if target.parent != out:
        raise DataError(
            f"{name}: expected the output folder inside {out}, got {target} (a symlink?); remove {out / name}"
        )
    x, y = raw.x, raw.y
    if len(x) == 0:
        raise DataError(f"{name}: the dataset is empty; expected at least one sample")
    if raw.kind != "text" and not np.isfinite(x).all():
        raise DataError(f"{name}: the data contains NaN or inf values")
    if y is None:
        y = np.full(len(x), -1, dtype=np.int64)
    try:
        idx = split_indices(len(x), y if raw.class_names else None, val=val, test=test, seed=seed)
    except DataError as e:
        raise DataError(f"{name}: {e}") from None
    n = {s: len(idx[s]) for s in SPLITS}
    if n["test"] == 0 or (val > 0 and n["val"] == 0):
        need = "val and test" if val > 0 else "test"
        why = " (stratified by class: each class rounds its share, small classes to 0)" if raw.class_names else ""
        raise DataError(
            f"{name}: expected at least 1 sample in {need}, got train {n['train']}, val {n['val']}, test {n['test']} "
            f"from {len(x)} samples with val={val}, test={test}{why}; add samples or raise prepare.split.val/test "
            "(val: 0 skips validation)"
        )
    spec = spec_of(name, raw)
    attrs = {f"attr_{k}": np.asarray(ids, dtype=np.int64) for k, (ids, _) in raw.attributes.items()}
    for k, a in attrs.items():
        if a.shape != (len(x),):
            raise DataError(f"{name}: attribute {k[5:]!r}: expected shape ({len(x)},), got {a.shape}")
    manifest: dict[str, Any] = {"spec": spec.to_dict(), "seed": seed, "split": {"val": val, "test": test}}
    splits = {}
    for s in SPLITS:
        xs, ys = x[idx[s]], y[idx[s]]
        counts = np.bincount(ys[ys >= 0], minlength=len(raw.class_names)).tolist() if raw.class_names else []
        attr_s = [a[idx[s]] for a in attrs.values()]  # none for datasets without attributes: hashes as before
        splits[s] = {"n": int(len(xs)), "class_counts": counts, "sha256": sha256_arrays(xs, ys, *attr_s)}
        if raw.kind != "text":
            splits[s]["range"] = [float(xs.min()), float(xs.max())] if len(xs) else None
    manifest["splits"] = splits
    manifest["sha256"] = sha256_arrays(*(np.frombuffer(splits[s]["sha256"].encode(), np.uint8) for s in SPLITS))
    with atomic_path(Path(out_dir) / name) as tmp:
        tmp.mkdir()
        shards = {}
        for s in SPLITS:
            xs, ys, attr_s = x[idx[s]], y[idx[s]], {k: a[idx[s]] for k, a in attrs.items()}
            np.savez(tmp / f"{s}.npz", x=xs, y=ys, **attr_s)
            cols = training_columns(spec, xs, ys, {k[len(ATTR) :]: a for k, a in attr_s.items()})
            shards[s] = write_split_shards(tmp / SHARD_DIR / s, cols, shard_mib=shard_mib)
        manifest["shards"] = shards
        write_json(tmp / "manifest.json", manifest)
    return manifest


def load_attributes(root: str | Path, name: str, split: str) -> dict[str, np.ndarray]:
    """The per-sample attributes (``DataSpec.attributes``) of one split: name -> int64 (N,) ids."""
    path = Path(root) / name / f"{split}.npz"
    if not path.exists():
        raise DataError(f"dataset {name!r} is not prepared ({path} missing); run `dvc repro prepare` first")
    with np.load(path, allow_pickle=False) as z:
        return {k[5:]: z[k] for k in z.files if k.startswith("attr_")}


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
