"""Stage ``validate``: the whole params.yaml checked before any other stage runs (they all come after it).

It parses every section (as every stage does) and checks that each params key dvc.yaml tracks exists, so a
mistake stops ``dvc repro`` here, with one line, before DVC deletes any stage's outputs. Its output never
changes while params.yaml stays valid: nothing downstream reruns because of it.
"""

from __future__ import annotations

import typer

from components.config import read_yaml
from components.errors import ConfigError
from components.io import write_json
from components.layout import PARAMS, REPORTS
from components.orchestration.dag import finetune_problems, missing_params
from pipelines._common import console, params, stage

app = typer.Typer(add_completion=False)
OUT = REPORTS / "params_valid.json"


@app.command()
@stage
def main() -> None:
    """Validate params.yaml against its schema and against what dvc.yaml's stages track."""
    p = params()
    dvc = read_yaml(PARAMS.with_name("dvc.yaml"))
    raw = read_yaml(PARAMS)
    missing = finetune_problems(raw) + missing_params(dvc if isinstance(dvc, dict) else {}, raw)
    if missing:
        raise ConfigError(missing[0] + (f" (and {len(missing) - 1} more)" if len(missing) > 1 else ""))
    write_json(OUT, {"params.yaml": "valid"})
    console.print(f"params.yaml: valid ({len(p.experiments)} experiments, {len(p.prepare.datasets)} datasets)")


if __name__ == "__main__":
    app()
