"""What every stage shares: paths, params loading, one-line errors, the MLflow run of an experiment."""

from __future__ import annotations

import functools
import hashlib
import json
import logging
import os
import sys
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import typer
from rich.console import Console

from components.config import ExperimentConfig, Params, load_params
from components.errors import GenfoundryError

DATA = Path("data/prepared")
FEATURES = Path("data/features")
MODELS = Path("models")
REPORTS = Path("reports")

console = Console(stderr=True)
F = TypeVar("F", bound=Callable[..., Any])


def quiet() -> None:
    """Keep stage output to our own progress and results."""
    os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
    os.environ.setdefault("GIT_PYTHON_REFRESH", "quiet")
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    warnings.filterwarnings("ignore")
    for name in ("mlflow", "alembic", "ray", "urllib3", "git"):
        logging.getLogger(name).setLevel(logging.ERROR)


def stage(fn: F) -> F:
    """Run a stage: a :class:`GenfoundryError` becomes one red line on stderr and exit code 2."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        quiet()
        try:
            return fn(*args, **kwargs)
        except GenfoundryError as e:
            console.print(f"[bold red]error:[/] {e}", highlight=False, soft_wrap=True)
            sys.exit(2)

    return wrapper  # type: ignore[return-value]


def params(path: str | Path = "params.yaml") -> Params:
    return load_params(path)


def params_hash(obj: Any) -> str:
    """A stable short hash of a JSON-able object (params sections, configs)."""
    blob = json.dumps(obj, sort_keys=True, default=str).encode()
    return hashlib.sha256(blob).hexdigest()[:12]


EXPERIMENT = typer.Argument(..., help="experiment key in params.yaml")


def experiment_context(key: str) -> tuple[Params, ExperimentConfig, dict[str, Any]]:
    """The parsed params, the experiment's section and its trained model's info (run id, hashes)."""
    p = params()
    return p, p.experiment(key), run_info(key)


def run_info(key: str) -> dict[str, Any]:
    path = MODELS / key / "config.json"
    if not path.exists():
        raise GenfoundryError(f"experiment {key!r} has no trained model ({path}); run `dvc repro train@{key}`")
    return json.loads(path.read_text())


def progress_bar() -> Any:
    """The stages' rich progress bar: description, bar, done/total, a free-text ``info`` field, elapsed time."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    return Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[info]}"),
        TimeElapsedColumn(),
        console=console,
        transient=False,
    )
