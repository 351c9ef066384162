"""Stages ``summary@<experiment>`` and ``report``: the leaderboard of every experiment (components.reporting).

``python -m pipelines.report summary EXP`` bundles ``reports/EXP/eval_details.json``, ``audit_details.json``,
``registry.json`` and the eval pictures into ``reports/summaries/EXP.json``. DVC cannot list the outputs of
every ``foreach`` item as one stage's deps (iterative/dvc#8171), and a dep on ``reports/`` would contain the
leaderboard itself; so ``report`` depends on the folder ``reports/summaries``, which holds exactly one
output of every experiment, and DVC orders it after all of them.

``python -m pipelines.report leaderboard`` reads the summaries of the experiments in params.yaml (with
their family, dataset and selection metric) and writes ``reports/leaderboard.md`` and the self-contained
``reports/leaderboard.html``, both logged to MLflow as artifacts of a run named ``leaderboard`` in the
project's experiment. ``genfoundry leaderboard`` prints the markdown.
"""

from __future__ import annotations

from pathlib import Path

import typer

from components.errors import GenfoundryError
from components.io import read_json, write_json, write_text
from components.layout import (
    AUDIT_DETAILS,
    EVAL_DETAILS,
    LEADERBOARD_HTML,
    LEADERBOARD_MD,
    eval_dir,
    report_file,
    summary_file,
)
from components.reporting.summary import bundle
from pipelines._common import EXPERIMENT, console, params, stage, stage_for

app = typer.Typer(add_completion=False, no_args_is_help=True)


@app.command("summary")
@stage
def summary(experiment: str = EXPERIMENT) -> None:
    """Bundle one experiment's eval/audit/registry reports and sample grid (stage summary@EXP)."""
    parts = {}
    for name, stage_name in ((EVAL_DETAILS, "evaluate"), (AUDIT_DETAILS, "audit"), ("registry.json", "register")):
        path = report_file(experiment, name)
        if not path.exists():
            raise GenfoundryError(
                f"Expected {path} for the leaderboard, got no such file; "
                f"run `dvc repro {stage_for(stage_name, experiment)}`"
            )
        parts[name] = read_json(path)
    figures = {p.stem: p.read_bytes() for p in sorted(eval_dir(experiment).glob("*.png"))}
    text = eval_dir(experiment) / "samples.txt"
    audio = {p.stem: p.read_bytes() for p in sorted(eval_dir(experiment).glob("sample_*.wav"))}
    try:
        summary = bundle(
            experiment,
            parts[EVAL_DETAILS],
            parts[AUDIT_DETAILS],
            parts["registry.json"],
            figures=figures,
            sample_text=text.read_text() if text.exists() else None,
            audio=audio,
        )
    except ValueError as e:
        raise GenfoundryError(f"{e}; rerun its stages (`dvc repro -f {stage_for('evaluate', experiment)}`)") from None
    write_json(summary_file(experiment), summary)
    console.print(f"summarized [bold]{experiment}[/] for the leaderboard")


@app.command("leaderboard")
@stage
def main() -> None:
    """Write reports/leaderboard.md and .html from every experiment's summary and log them to MLflow."""
    from components.reporting.leaderboard import entry, leaderboard_html, leaderboard_markdown

    p = params()
    entries = []
    for key, exp in p.experiments.items():
        path = summary_file(key)
        if not path.exists():
            raise GenfoundryError(
                f"Expected {path} for experiment {key!r}, got no such file; run `dvc repro {p.stage('summary', key)}`"
            )
        entries.append(
            entry(
                read_json(path),
                family=exp.family,
                dataset=exp.dataset,
                selection=(exp.selection.metric, exp.selection.mode),
                model=exp.model,
            )
        )
    write_text(LEADERBOARD_MD, leaderboard_markdown(entries))
    write_text(LEADERBOARD_HTML, leaderboard_html(entries))
    run_id = log_leaderboard(p.mlflow.experiment, entries)
    console.print(
        f"leaderboard of {len(entries)} experiments: {LEADERBOARD_MD}, {LEADERBOARD_HTML} (MLflow run {run_id})"
    )


def log_leaderboard(experiment_name: str, entries: list) -> str:
    """A new MLflow run ``leaderboard`` in the project's experiment: both pages as artifacts, each experiment's
    selection metric as ``<experiment>.<metric>``, the registry decisions as tags."""
    from components.reporting.leaderboard import champion_cell
    from components.tracking import runs

    c = runs.client(Path.cwd())
    exp_id = runs.ensure_experiment(c, experiment_name)
    run_id = c.create_run(
        exp_id,
        run_name="leaderboard",
        tags={
            "genfoundry.leaderboard": "true",
            "git_commit": runs.git_commit(Path.cwd()),
            "experiments": ",".join(e.experiment for e in entries),
        },
    ).info.run_id
    try:
        runs.log_metrics(
            c,
            run_id,
            {
                f"{e.experiment}.{e.selection_metric}": e.eval[e.selection_metric]
                for e in entries
                if isinstance(e.eval.get(e.selection_metric), int | float)
            },
        )
        runs.set_tags(c, run_id, {f"registry.{e.experiment}": champion_cell(e.registry) for e in entries})
        for path in (LEADERBOARD_MD, LEADERBOARD_HTML):
            c.log_artifact(run_id, str(path))
    except Exception:
        c.set_terminated(run_id, "FAILED")
        raise
    c.set_terminated(run_id, "FINISHED")
    return run_id


if __name__ == "__main__":
    app()
