"""What every stage shares: params loading, one-line errors, the trained model's info, progress output.

Workspace paths are declared once, in :mod:`components.layout`.
"""

from __future__ import annotations

import functools
import json
import logging
import os
import sys
import time
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import typer
from rich.console import Console

from components.config import ExperimentConfig, Params, load_params
from components.errors import GenfoundryError
from components.layout import model_dir

console = Console(stderr=True)
F = TypeVar("F", bound=Callable[..., Any])


def quiet() -> None:
    """Keep stage output to our own progress and results."""
    os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
    os.environ.setdefault("GIT_PYTHON_REFRESH", "quiet")
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    warnings.filterwarnings("ignore")  # libraries' deprecation and advice noise ...
    # ... but never a warning that means the data is wrong: PIL's decompression-bomb warning becomes an error
    # (the data sources turn it into one line naming the file)
    warnings.filterwarnings("error", message=r".*decompression bomb", category=Warning)
    for name in ("mlflow", "alembic", "ray", "urllib3", "git"):
        logging.getLogger(name).setLevel(logging.ERROR)


def error_line(message: object, *, label: str = "error") -> None:
    """One red line on stderr. The message is printed literally (escaped): user text such as a ``[nan, nan]``
    range is not Rich markup."""
    from rich.markup import escape

    text = " ".join(str(message).split()) or "(no message)"
    console.print(f"[bold red]{label}:[/] {escape(text)}", highlight=False, soft_wrap=True)


def _tracking_store_error(e: BaseException) -> bool:
    """An error raised by MLflow or its database layer (an unreachable server, a corrupt ``mlflow.db``)."""
    return type(e).__module__.split(".")[0] in ("mlflow", "sqlalchemy", "alembic", "sqlite3")


def stage(fn: F) -> F:
    """Run a stage: a :class:`GenfoundryError`, or a failure of the MLflow tracking store, becomes one red line on
    stderr and exit code 2."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        quiet()
        try:
            return fn(*args, **kwargs)
        except GenfoundryError as e:
            error_line(e)
            sys.exit(2)
        except Exception as e:
            if not _tracking_store_error(e):
                raise
            first = next((ln for ln in str(e).splitlines() if ln.strip()), type(e).__name__)
            error_line(
                f"MLflow tracking store ({os.environ.get('MLFLOW_TRACKING_URI') or 'sqlite:///mlflow.db'}): {first}; "
                "check MLFLOW_TRACKING_URI, or move a damaged mlflow.db aside"
            )
            sys.exit(2)

    return wrapper  # type: ignore[return-value]


def params(path: str | Path = "params.yaml") -> Params:
    return load_params(path)


EXPERIMENT = typer.Argument(..., help="experiment key in params.yaml")


def stage_for(name: str, key: str) -> str:
    """dvc.yaml's stage that runs ``name`` for ``key`` (``name_ft@key`` under finetune:), for messages; where
    params.yaml does not parse, ``name@key``."""
    try:
        return params().stage(name, key)
    except GenfoundryError:
        return f"{name}@{key}"


def experiment_context(key: str) -> tuple[Params, ExperimentConfig, dict[str, Any]]:
    """The parsed params, the experiment's section and its trained model's info (run id, hashes)."""
    p = params()
    exp = p.experiment(key)
    return p, exp, run_info(key, stage=p.stage("train", key))


def run_info(key: str, *, stage: str) -> dict[str, Any]:
    """The trained model's info (models/<key>/config.json); ``stage`` names the dvc.yaml stage that makes it."""
    path = model_dir(key) / "config.json"
    if not path.exists():
        raise GenfoundryError(f"experiment {key!r} has no trained model ({path}); run `dvc repro {stage}`")
    return json.loads(path.read_text())


def progress_bar() -> Any:
    """The stages' progress display. On a terminal: a rich bar (description, bar, done/total, a free-text
    ``info`` field, elapsed time). Elsewhere (cron, CI, ``make repro > log``): :class:`PlainProgress`, one
    plain line per completed unit (epoch, trial) and at most one every :data:`PlainProgress.EVERY_S` otherwise."""
    if not console.is_terminal:
        return PlainProgress()
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


class PlainProgress:
    """The part of ``rich.progress.Progress``'s interface the stages use, as plain lines on stderr."""

    EVERY_S = 30.0

    def __init__(
        self, *, stream: Any = None, every_s: float | None = None, clock: Callable[[], float] = time.monotonic
    ):
        self.stream = stream
        self.every_s = self.EVERY_S if every_s is None else every_s
        self.clock = clock
        self.tasks: dict[int, dict[str, Any]] = {}
        self.t0 = self.clock()
        self.last = 0.0

    def start(self) -> None:
        self.t0 = self.last = self.clock()

    def stop(self) -> None:
        pass

    def add_task(self, description: str, *, total: float | None = None, info: str = "") -> int:
        task = len(self.tasks)
        self.tasks[task] = {"description": description, "total": total, "completed": 0, "info": info}
        self._line(task)
        return task

    def advance(self, task: int, advance: float = 1) -> None:
        self.update(task, completed=self.tasks[task]["completed"] + advance)

    def update(self, task: int, *, total: float | None = None, completed: float | None = None, info: str | None = None):
        t = self.tasks[task]
        done_before = t["completed"]
        if total is not None:
            t["total"] = total
        if info is not None:
            t["info"] = info
        if completed is not None:
            t["completed"] = completed
        if t["completed"] != done_before or self.clock() - self.last >= self.every_s:
            self._line(task)

    def _line(self, task: int) -> None:
        t = self.tasks[task]
        total = "?" if t["total"] is None else f"{t['total']:g}"
        elapsed = self.clock() - self.t0
        text = f"{t['description']}: {t['completed']:g}/{total} {t['info']} ({elapsed:.0f} s)".replace("  ", " ")
        print(text, file=self.stream or sys.stderr, flush=True)
        self.last = self.clock()
