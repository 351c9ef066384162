"""Stage ``prepare``: load each dataset of ``params.prepare``, validate, split and save under data/prepared.

A source that yields chunks (``synthetic``) is written chunk by chunk (``components.data.prepare_streamed``), so
a dataset larger than memory can be declared too; it is then trained on Ray workers only (see components.data).
"""

from __future__ import annotations

import typer

from components.data import get_source, prepare_dataset, prepare_streamed
from components.data.spec import RawChunks
from components.errors import DataError
from components.io import atomic_path, write_json
from components.layout import DATA, REPORTS
from pipelines._common import console, params, stage

app = typer.Typer(add_completion=False)


@app.command()
@stage
def main() -> None:
    """Prepare every dataset; all of data/prepared is replaced at once, or not at all."""
    cfg = params().prepare
    summary = {}
    with atomic_path(DATA) as tmp:
        tmp.mkdir()
        for name, ds in cfg.datasets.items():
            try:
                raw = get_source(ds.source)(**ds.source_kwargs(), seed=cfg.seed)
            except DataError as e:
                raise DataError(f"dataset {name!r}: {e}") from None
            prepare = prepare_streamed if isinstance(raw, RawChunks) else prepare_dataset
            m = prepare(name, raw, tmp, val=cfg.split.val, test=cfg.split.test, seed=cfg.seed,
                        shard_mib=cfg.shard_mib)  # fmt: skip
            summary[name] = {s: v["n"] for s, v in m["splits"].items()} | {"sha256": m["sha256"][:12]}
            console.print(f"prepared [bold]{name}[/]: " + ", ".join(f"{s} {v['n']}" for s, v in m["splits"].items()))
    write_json(REPORTS / "prepare.json", summary)


if __name__ == "__main__":
    app()
