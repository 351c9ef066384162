"""``genfoundry retrain``: the scheduled retrain (logic in ``components.orchestration.retrain``)."""

from __future__ import annotations

import sys
from pathlib import Path

import typer
from rich.console import Console

from components.errors import GenfoundryError
from components.orchestration.retrain import (
    EXIT_CONFIG,
    EXIT_FAILED,
    EXIT_LOCKED,
    LOCK_FILE,
    LockHeld,
    exclusive_lock,
    retrain,
)
from pipelines._common import console, error_line, params, quiet

HELP = (
    "Retrain when something changed: take the lock, detect new/changed/removed files in `retrain.watch` and "
    "out-of-date stages (`dvc status`), run `dvc repro` if any, and append one JSON record (changes; per "
    "experiment: new version, champion before/after, metric old vs new, audit, decision and reason) to "
    "`retrain.log` and to the MLflow experiment `<mlflow.experiment>-retrain`.\n\n"
    "Exit codes:\n"
    "0  ok: promoted, kept the champion, or nothing to do\n"
    f"{EXIT_FAILED}  a stage failed (`dvc repro`); the record says which and why\n"
    f"{EXIT_CONFIG}  bad configuration (params.yaml, dvc.yaml, retrain.watch, retrain.log)\n"
    f"{EXIT_LOCKED} (EX_TEMPFAIL) another retrain holds {LOCK_FILE}: nothing was done, try again later"
)

app = typer.Typer(add_completion=False)
stdout = Console(highlight=False, soft_wrap=True)


@app.command(help=HELP)
def main() -> None:
    quiet()
    root = Path.cwd()
    try:
        with exclusive_lock(root / LOCK_FILE):
            p = params()
            record = retrain(root, p, on_line=lambda line: stdout.out(line, end=""))
    except LockHeld as e:
        error_line(e, label="retrain")
        sys.exit(EXIT_LOCKED)
    except GenfoundryError as e:  # ConfigError: params.yaml, dvc.yaml, retrain.watch, retrain.log
        error_line(e)
        sys.exit(EXIT_CONFIG)
    _summary(record)
    sys.exit(record["exit_code"])


def _summary(record: dict) -> None:
    files = record["changes"].get("files")
    changed = ", ".join(f"{len(v)} {k}" for k, v in files.items() if v) if files else "baseline recorded"
    stale = ", ".join(sorted(record["changes"]["stages"])) or "none"
    console.print(f"retrain: watched files: {changed or 'unchanged'}; stages out of date: {stale}", soft_wrap=True)
    if record["outcome"] == "nothing_to_do":
        console.print(f"retrain: nothing to do{' — ' + record['note'] if record.get('note') else ''}", soft_wrap=True)
    for k, v in record["experiments"].items():
        new = f"v{v.get('version')}" + (" (new)" if v.get("new_version") else "")
        console.print(
            f"retrain: [bold]{k}[/] {new}: {v['decision']} — {v['reason']} (champion {v.get('champion_before')} -> "
            f"{v.get('champion_after')})",
            soft_wrap=True,
        )
    if record["outcome"] == "failed":
        error_line(f"dvc repro failed: {record.get('error')}")
    if record.get("mlflow_error"):
        console.print(f"[yellow]warning:[/] the record did not reach MLflow: {record['mlflow_error']}", soft_wrap=True)
    console.print(
        f"retrain: {record['outcome']} in {record['duration_s']}s; record appended to {record['log']}", soft_wrap=True
    )


if __name__ == "__main__":
    app()
