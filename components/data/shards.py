"""Each prepared split as Parquet shards Ray Data reads natively: the training workers' input.

A prepared dataset keeps its ``<split>.npz`` arrays (the driver-side stages read them) and adds
``shards/<split>/part-NNNNN.parquet``: the columns a training worker takes, already in the form the model reads
(``x`` float32, or int64 tokens for text; ``y`` int64; ``attr_<name>`` int64), about ``shard_mib`` each. Ray Data
reads them in read tasks on the node that holds them and streams the blocks to the workers through its object
store, so no worker needs the driver's filesystem path. :class:`ShardWriter` appends chunk by chunk and never holds
more than one shard, so a source larger than memory can be written too.

Tensors are stored in Ray's tensor extension column (``ArrowTensorArray``), what ``Dataset.write_parquet`` itself
writes; reading them back needs Ray's extension types registered (``import ray.data``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from components.data.spec import DataSpec
from components.errors import DataError

SHARD_DIR = "shards"
X, Y = "x", "y"
ATTR = "attr_"  # prefix of attribute columns, as in the .npz files


def training_columns(
    spec: DataSpec, x: np.ndarray, y: np.ndarray, attrs: dict[str, np.ndarray]
) -> dict[str, np.ndarray]:
    """The columns a worker trains on: ``x`` as the model reads it (text tokenised), ``y``, then ``attr_<name>``."""
    if spec.kind == "text":
        from components.data.text import encode

        xt = encode(list(x), spec)  # (N, T) int64
    else:
        xt = np.ascontiguousarray(x, dtype=np.float32)
    return {
        X: xt,
        Y: np.asarray(y, dtype=np.int64),
        **{ATTR + k: np.asarray(a, dtype=np.int64) for k, a in attrs.items()},
    }


class ShardWriter:
    """Writes ``part-00000.parquet``, ``part-00001.parquet``, ... of about ``shard_mib`` each into ``folder``.

    Rows are buffered only up to one shard; :meth:`close` writes the rest and returns the shard list (file names
    relative to ``folder``, rows per file). A split with no rows gets one empty file, so every split can be read.
    """

    def __init__(self, folder: str | Path, *, shard_mib: float) -> None:
        if shard_mib <= 0:
            raise DataError(f"shards: expected shard_mib > 0, got {shard_mib}")
        self.folder = Path(folder)
        self.folder.mkdir(parents=True, exist_ok=False)
        self.shard_bytes = int(shard_mib * 2**20)
        self._parts: list[dict[str, np.ndarray]] = []
        self._buffered = 0
        self.files: list[str] = []
        self.rows: list[int] = []

    def add(self, columns: dict[str, np.ndarray]) -> None:
        """Append one chunk of rows (every column the same length, the same columns every time)."""
        n = {len(v) for v in columns.values()}
        if len(n) != 1:
            raise DataError(f"shards: expected columns of one length, got {sorted(n)}")
        if self._parts and columns.keys() != self._parts[0].keys():
            raise DataError(f"shards: expected the columns {sorted(self._parts[0])}, got {sorted(columns)}")
        row_bytes = max(1, sum(v[:1].nbytes for v in columns.values()))
        per_shard = max(1, self.shard_bytes // row_bytes)
        start, total = 0, n.pop()
        if not self._parts:
            self._parts.append({k: _empty_like(v) for k, v in columns.items()})  # column set and dtypes, 0 rows
        while start < total:
            take = min(total - start, per_shard - self._buffered)
            self._parts.append({k: v[start : start + take] for k, v in columns.items()})
            self._buffered += take
            start += take
            if self._buffered >= per_shard:
                self._flush()

    def close(self) -> dict[str, Any]:
        if self._buffered or not self.files:
            self._flush()
        return {"files": self.files, "rows": self.rows}

    def _flush(self) -> None:
        import pyarrow as pa
        import pyarrow.parquet as pq
        from ray.data.extensions import ArrowTensorArray

        if not self._parts:
            raise DataError("shards: expected at least one chunk before the first shard is written")
        cols = {k: np.concatenate([p[k] for p in self._parts]) for k in self._parts[0]}
        table = pa.table({k: ArrowTensorArray.from_numpy(v) if v.ndim > 1 else pa.array(v) for k, v in cols.items()})
        name = f"part-{len(self.files):05d}.parquet"
        pq.write_table(table, self.folder / name)
        self.files.append(name)
        self.rows.append(int(len(cols[X])))
        self._parts = [{k: _empty_like(v) for k, v in cols.items()}]  # the column set for the next check
        self._buffered = 0


def _empty_like(v: np.ndarray) -> np.ndarray:
    """No rows of ``v``'s dtype and row shape, holding no reference to ``v`` (a ``v[:0]`` view would keep the
    whole chunk, or the whole last shard, alive)."""
    return np.empty((0, *v.shape[1:]), v.dtype)


def write_split_shards(folder: str | Path, columns: dict[str, np.ndarray], *, shard_mib: float) -> dict[str, Any]:
    """One in-memory split as shards (see :class:`ShardWriter`)."""
    w = ShardWriter(folder, shard_mib=shard_mib)
    w.add(columns)
    return w.close()


def shard_paths(root: str | Path, name: str, split: str, manifest: dict[str, Any]) -> list[str]:
    """Absolute paths of one split's shards, from the manifest; a dataset prepared before shards existed fails."""
    entry = manifest.get("shards", {}).get(split)
    if not entry:
        raise DataError(
            f"dataset {name!r} has no Parquet shards for {split!r} (prepared by an older version); "
            "re-run `dvc repro prepare`"
        )
    folder = (Path(root) / name / SHARD_DIR / split).resolve()
    return [str(folder / f) for f in entry["files"]]
