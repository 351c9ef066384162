"""Datasets as plugins: each source is a function returning :class:`RawData`; prepare splits and saves them.

A prepared dataset lives in ``<root>/<name>/`` as ``train.npz``, ``val.npz``, ``test.npz`` (arrays ``x``
and ``y``) plus ``manifest.json`` (the :class:`DataSpec`, counts, value range, sha256 of the arrays).

A source that yields :class:`~components.data.spec.RawChunks` (``synthetic``: data larger than memory) is
prepared by :func:`prepare_streamed`: each chunk's rows are split as they come and appended to the Parquet shards,
with no ``.npz`` arrays (``"streamed": true`` in the manifest). Only training on Ray workers
(``train.num_workers >= 1``) reads such a dataset; :func:`load_split` and :func:`load_attributes` refuse it with one
line, and so every stage that needs whole arrays (evaluate, audit); the features stage gives it no classifier.

Bad input stops with one line naming the file, the line or the array, never a traceback or a silent
"fix": a dataset name must be a plain folder name (``components.layout.NAME_RULE``), a user ``path`` must
stay inside the project (:func:`user_path`), and the split must leave at least one test sample (and one
validation sample unless ``split.val`` is 0). Each source documents its own rules.
"""

from __future__ import annotations

import hashlib
import importlib
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from components.data.shards import ATTR, SHARD_DIR, ShardWriter, X, Y, training_columns, write_split_shards
from components.data.spec import DataSpec, RawChunks, RawData
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
    "synthetic": "components.data.synthetic:load_synthetic",  # RawChunks: prepare_streamed
}
SPLITS = ("train", "val", "test")


def get_source(name: str) -> Callable[..., RawData | RawChunks]:
    if name not in SOURCES:
        raise DataError(f"unknown dataset source {name!r}; expected one of {sorted(SOURCES)}")
    module, fn = SOURCES[name].split(":")
    return getattr(importlib.import_module(module), fn)


def split_indices(n: int, y: np.ndarray | None, *, val: float, test: float, seed: int) -> dict[str, np.ndarray]:
    """Deterministic train/val/test indices; stratified by ``y`` when labels exist so class shares match."""
    idx = _split(n, y, val=val, test=test, rng=np.random.default_rng(seed))
    if len(idx["train"]) == 0:
        raise DataError(f"dataset has {n} samples: too few to split with val={val}, test={test}")
    return idx


def _split(n: int, y: np.ndarray | None, *, val: float, test: float, rng: np.random.Generator) -> dict[str, np.ndarray]:
    groups = [np.arange(n)] if y is None or (y < 0).all() else [np.flatnonzero(y == c) for c in np.unique(y)]
    out: dict[str, list[np.ndarray]] = {s: [np.zeros(0, np.int64)] for s in SPLITS}
    for g in groups:
        g = rng.permutation(g)
        n_test, n_val = int(round(len(g) * test)), int(round(len(g) * val))
        out["test"].append(g[:n_test])
        out["val"].append(g[n_test : n_test + n_val])
        out["train"].append(g[n_test + n_val :])
    return {s: np.sort(np.concatenate(v)) for s, v in out.items()}


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
    _check_target(name, out_dir)
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
    _check_counts(name, {s: len(idx[s]) for s in SPLITS}, val=val, test=test, stratified=bool(raw.class_names))
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


def _check_target(name: str, out_dir: str | Path) -> None:
    check_name(name, where="dataset name")
    out = Path(out_dir).resolve()
    target = (out / name).resolve()
    if target.parent != out:
        raise DataError(
            f"{name}: expected the output folder inside {out}, got {target} (a symlink?); remove {out / name}"
        )


def _check_counts(name: str, n: dict[str, int], *, val: float, test: float, stratified: bool) -> None:
    if n["test"] == 0 or (val > 0 and n["val"] == 0):
        need = "val and test" if val > 0 else "test"
        why = " (stratified by class: each class rounds its share, small classes to 0)" if stratified else ""
        raise DataError(
            f"{name}: expected at least 1 sample in {need}, got train {n['train']}, val {n['val']}, test {n['test']} "
            f"from {sum(n.values())} samples with val={val}, test={test}{why}; add samples or raise "
            "prepare.split.val/test (val: 0 skips validation)"
        )


class _SplitStats:
    """What the manifest says of one split, accumulated chunk by chunk: rows, class counts, value range and a
    sha256 over the ``x`` bytes and the ``y`` bytes (two running digests, so no split is ever held whole)."""

    def __init__(self, num_classes: int) -> None:
        self.n, self.counts = 0, np.zeros(num_classes, np.int64)
        self.lo, self.hi = np.inf, -np.inf
        self.hx, self.hy = hashlib.sha256(), hashlib.sha256()
        self.dtype, self.shape = "", ()

    def add(self, x: np.ndarray, y: np.ndarray) -> None:
        self.n += len(x)
        self.dtype, self.shape = str(x.dtype), x.shape[1:]
        if len(self.counts):
            self.counts += np.bincount(y[y >= 0], minlength=len(self.counts))
        if len(x):
            self.lo, self.hi = min(self.lo, float(x.min())), max(self.hi, float(x.max()))
        self.hx.update(np.ascontiguousarray(x).tobytes())
        self.hy.update(np.ascontiguousarray(y).tobytes())

    def entry(self) -> dict[str, Any]:
        head = f"{self.dtype}{(self.n, *self.shape)}".encode()
        sha = hashlib.sha256(head + self.hx.digest() + self.hy.digest()).hexdigest()
        rng = [self.lo, self.hi] if self.n else None
        return {"n": self.n, "class_counts": self.counts.tolist(), "sha256": sha, "range": rng}


def prepare_streamed(
    name: str, raw: RawChunks, out_dir: str | Path, *, val: float, test: float, seed: int, shard_mib: float = 16.0
) -> dict:
    """Split and save a chunked dataset atomically without ever holding it: return its manifest.

    Chunk ``k``'s rows go to train / val / test as :func:`split_indices` splits a whole dataset (stratified by
    class, each class's share rounded), drawn from ``SeedSequence([seed, k])``; each split's rows, in source order,
    are appended to its Parquet shards (:class:`~components.data.shards.ShardWriter`: at most one shard per split
    in memory). Counts, value range and sha256 are accumulated per chunk (the sha256 of a split is over its ``x``
    and ``y`` byte streams, not :func:`~components.io.sha256_arrays`); the manifest says ``"streamed": true`` and
    there are no ``.npz`` files. The same rules as :func:`prepare_dataset` apply, checked chunk by chunk."""
    _check_target(name, out_dir)
    if raw.kind == "text":
        raise DataError(f"{name}: expected image, points or audio chunks, got text (prepare it whole)")
    spec = DataSpec(name=name, kind=raw.kind, shape=tuple(raw.shape), class_names=raw.class_names,
                    levels=raw.levels, extras=raw.extras)  # fmt: skip
    stats = {s: _SplitStats(len(raw.class_names)) for s in SPLITS}
    chunks = 0
    with atomic_path(Path(out_dir) / name) as tmp:
        tmp.mkdir()
        writers = {s: ShardWriter(tmp / SHARD_DIR / s, shard_mib=shard_mib) for s in SPLITS}
        for k, (x, y) in enumerate(raw.chunks):
            _check_chunk(name, k, x, y, spec)
            idx = _split(len(x), y if raw.class_names else None, val=val, test=test,
                         rng=np.random.default_rng(np.random.SeedSequence([seed, k])))  # fmt: skip
            for s in SPLITS:
                cols = training_columns(spec, x[idx[s]], y[idx[s]], {})  # float32 x, int64 y: as the shards hold
                stats[s].add(cols[X], cols[Y])
                writers[s].add(cols)
            chunks += 1
            del x, y, cols  # before the next chunk is drawn: one chunk in memory at a time
        got = sum(st.n for st in stats.values())
        if got != raw.n:
            raise DataError(f"{name}: expected {raw.n} samples from the source, got {got} in {chunks} chunks")
        _check_counts(name, {s: stats[s].n for s in SPLITS}, val=val, test=test, stratified=bool(raw.class_names))
        splits = {s: stats[s].entry() for s in SPLITS}
        manifest: dict[str, Any] = {
            "spec": spec.to_dict(),
            "seed": seed,
            "split": {"val": val, "test": test},
            "streamed": True,
            "chunks": chunks,
            "splits": splits,
            "sha256": sha256_arrays(*(np.frombuffer(splits[s]["sha256"].encode(), np.uint8) for s in SPLITS)),
            "shards": {s: w.close() for s, w in writers.items()},
        }
        write_json(tmp / "manifest.json", manifest)
    return manifest


def _check_chunk(name: str, k: int, x: np.ndarray, y: np.ndarray, spec: DataSpec) -> None:
    where = f"{name}: chunk {k}"
    if x.shape[1:] != spec.shape or y.shape != (len(x),):
        raise DataError(
            f"{where}: expected x of shape (m, {', '.join(map(str, spec.shape))}) and y of shape (m,), got "
            f"{x.shape} and {y.shape}"
        )
    if not np.issubdtype(y.dtype, np.integer):
        raise DataError(f"{where}: expected integer labels, got dtype {y.dtype}")
    if not np.isfinite(x).all():
        raise DataError(f"{where}: the data contains NaN or inf values")
    hi = spec.num_classes - 1 if spec.num_classes else -1  # unlabelled: every y is -1
    if len(y) and (y.min() < -1 or y.max() > hi):
        raise DataError(f"{where}: expected labels in [-1, {hi}], got [{y.min()}, {y.max()}]")


def is_streamed(root: str | Path, name: str) -> bool:
    """Whether dataset ``name`` was prepared by :func:`prepare_streamed` (Parquet shards only, no arrays)."""
    return bool(load_manifest(root, name).get("streamed"))


def _split_file(root: str | Path, name: str, split: str) -> Path:
    path = Path(root) / name / f"{split}.npz"
    if path.exists():
        return path
    if (Path(root) / name / "manifest.json").exists() and is_streamed(root, name):
        raise DataError(
            f"dataset {name!r}: expected the arrays {path}, got a streamed dataset (Parquet shards only: it was "
            "prepared chunk by chunk, larger than memory); only training on Ray workers (train.num_workers >= 1) "
            "reads it, not a stage that needs whole arrays"
        )
    raise DataError(f"dataset {name!r} is not prepared ({path} missing); run `dvc repro prepare` first")


def load_attributes(root: str | Path, name: str, split: str) -> dict[str, np.ndarray]:
    """The per-sample attributes (``DataSpec.attributes``) of one split: name -> int64 (N,) ids."""
    path = _split_file(root, name, split)
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
    path = _split_file(root, name, split)
    with np.load(path, allow_pickle=False) as z:
        return z["x"], z["y"]
