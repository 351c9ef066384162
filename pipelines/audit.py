"""Stage ``audit@<experiment>``: attribute shares of the generated samples vs the data, with a pass/fail gate."""

from __future__ import annotations

from pathlib import Path

import typer

from components.audit.report import audit_shares
from components.data import load_spec, load_split
from components.io import read_json, write_json
from components.tracking import runs
from pipelines._common import DATA, EXPERIMENT, REPORTS, console, experiment_context, stage

app = typer.Typer(add_completion=False)


@app.command()
@stage
def main(experiment: str = EXPERIMENT) -> None:
    _, exp, info = experiment_context(experiment)
    labels = read_json(REPORTS / experiment / "eval" / "labels.json")
    _, y_train = load_split(DATA, exp.dataset, "train")
    attribute = {"image": "class", "points": "mode", "text": "gender"}[load_spec(DATA, exp.dataset).kind]
    report = audit_shares(labels["labels"], y_train, labels["class_names"], exp.audit, attribute=attribute,
                          seed=exp.evaluate.seed)
    write_json(REPORTS / experiment / "audit.json", report)
    c = runs.client(Path.cwd())
    runs.log_metrics(
        c, info["run_id"], {f"audit/{k}": report[k] for k in ("fd_l2", "fd_l1", "fd_kl", "amplification")}
    )
    runs.set_tags(
        c, info["run_id"], {"audit.passed": report["passed"], "audit.failed": "; ".join(report["failed"])}
    )
    verdict = "[green]passed[/]" if report["passed"] else f"[red]failed[/] ({'; '.join(report['failed'])})"
    console.print(
        f"audited [bold]{experiment}[/]: FD L2 {report['fd_l2']:.4f}, KL {report['fd_kl']:.4f} — {verdict}"
    )


if __name__ == "__main__":
    app()
