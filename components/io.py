"""Atomic file writes: an output is either complete or absent, never half-written; and nothing genfoundry did
not write is ever replaced or removed (a folder it writes carries :data:`MARKER`)."""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from components.errors import GenfoundryError

#: written into every folder :func:`atomic_path` creates; only a folder holding it is ever replaced
MARKER = ".genfoundry-output"


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike[str]) -> Iterator[Path]:
    """Yield a temporary path next to ``path``; rename it over ``path`` only if the block succeeds.

    Works for files and for directories (the block creates whichever it wants at the yielded path; a folder
    gets :data:`MARKER`). An existing folder is replaced only if it holds the marker, i.e. genfoundry wrote
    it; a folder of anyone else's, or a symlink, stops the write with one line before anything changes.
    """
    path = Path(path)
    if path.is_symlink():
        raise GenfoundryError(f"{path}: expected an output genfoundry writes, got a symlink; nothing was changed")
    if path.is_dir() and not (path / MARKER).exists():
        raise GenfoundryError(
            f"{path}: expected a folder genfoundry wrote (it holds {MARKER}), got someone else's folder; "
            "move it away, nothing was changed"
        )
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.", dir=path.parent)) / path.name
    try:
        yield tmp
        if tmp.is_dir():
            (tmp / MARKER).write_text("written by genfoundry: replaced as a whole by the next write\n")
        if path.is_dir():
            old = path.parent / f".{path.name}.old-{os.getpid()}"
            path.rename(old)
            tmp.rename(path)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, path)
    finally:
        shutil.rmtree(tmp.parent, ignore_errors=True)


def write_json(path: str | os.PathLike[str], obj: Any) -> None:
    """Write ``obj`` as indented JSON, atomically."""
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(obj, indent=2, sort_keys=True, default=_json_default) + "\n")


def write_text(path: str | os.PathLike[str], text: str) -> None:
    """Write text atomically."""
    with atomic_path(path) as tmp:
        tmp.write_text(text)


def headline(report: dict[str, Any], *, nested: tuple[str, ...] = ()) -> dict[str, Any]:
    """The headline of a report for a DVC metrics file: its top-level numbers and booleans, plus the ``nested``
    numbers named by path (``"simclr.fid"`` becomes ``simclr_fid``). The whole report goes to a details file
    beside it, so ``dvc metrics show`` and ``dvc metrics diff`` stay one screen wide."""
    out = {k: v for k, v in report.items() if isinstance(v, int | float | bool) or v is None}
    for path in nested:
        node: Any = report
        for part in path.split("."):
            node = node.get(part) if isinstance(node, dict) else None
        if isinstance(node, int | float | bool):
            out[path.replace(".", "_")] = node
    return out


def read_json(path: str | os.PathLike[str]) -> Any:
    return json.loads(Path(path).read_text())


def _json_default(o: Any) -> Any:
    if isinstance(o, np.generic):
        return o.item()
    if isinstance(o, np.ndarray):
        return o.tolist()
    if isinstance(o, Path):
        return str(o)
    raise TypeError(f"write_json: expected a JSON-serialisable value, got {type(o).__name__}")


def sha256_arrays(*arrays: np.ndarray) -> str:
    """A content hash of arrays (dtype, shape and bytes), stable across runs and machines."""
    h = hashlib.sha256()
    for a in arrays:
        a = np.ascontiguousarray(a)
        h.update(str(a.dtype).encode())
        h.update(str(a.shape).encode())
        h.update(a.tobytes())
    return h.hexdigest()


def stable_hash(obj: Any, length: int = 12) -> str:
    """A stable short hash of a JSON-able object (params sections, configs): sorted keys, ``str`` for the rest."""
    blob = json.dumps(obj, sort_keys=True, default=str).encode()
    return hashlib.sha256(blob).hexdigest()[:length]


def sha256_file(path: str | os.PathLike[str]) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()
