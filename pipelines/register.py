"""Stage ``register@<experiment>``: the trained model -> MLflow Model Registry as a pyfunc sampler.

New version -> ``challenger``; -> ``champion`` only if the audit passed and it beats the champion on the
experiment's selection metric (old champion -> ``previous``). A FAILED run (e.g. diverged) is never registered.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
import typer

from components.errors import ConfigError, GenfoundryError
from components.io import read_json, write_json
from components.layout import AUDIT_DETAILS, EVAL_DETAILS, eval_dir, model_dir, report_file
from components.models.store import load_trained
from components.tracking import publish, registry, runs
from components.tracking.card import card_summary, model_card
from components.tracking.lineage import lineage_tags
from pipelines._common import EXPERIMENT, console, experiment_context, stage

app = typer.Typer(add_completion=False)


@app.command()
@stage
def main(experiment: str = EXPERIMENT) -> None:
    p, exp, info = experiment_context(experiment)
    metrics = read_json(report_file(experiment, EVAL_DETAILS))
    audit = read_json(report_file(experiment, AUDIT_DETAILS))
    c = runs.client(Path.cwd())
    run = c.get_run(info["run_id"])
    if run.info.status == "FAILED":
        raise GenfoundryError(f"MLflow run {info['run_id']} of {experiment!r} FAILED; it is not registered")
    metric = exp.selection.metric
    value = metrics.get(metric)
    if not isinstance(value, int | float):
        numeric = sorted(k for k, v in metrics.items() if isinstance(v, int | float))
        raise ConfigError(f"{p.where(experiment)}.selection.metric = {metric!r}: expected one of {numeric}")

    name = registry.model_name(p.mlflow.model_prefix, experiment)
    fp = registry.fingerprint(
        info["weights_sha256"], json.dumps(metrics, sort_keys=True), json.dumps(audit, sort_keys=True)
    )
    version = registry.find_version(c, name, fp)
    if version is None:
        model = load_trained(model_dir(experiment))
        with torch.no_grad():
            example = model.sample(4, generator=torch.Generator().manual_seed(0))
        example = example if isinstance(example, list) else example.numpy()
        commit = runs.git_commit(Path.cwd())
        tags = {
            "fingerprint": fp,
            "experiment": experiment,
            "family": info["family"],
            "dataset": info["dataset"],
            "git_commit": commit,
            "params_hash": info["params_hash"],
            "data_sha256": info["data_sha256"],
            "weights_sha256": info["weights_sha256"],
            "audit.passed": audit["passed"],
            "audit.failed": "; ".join(audit["failed"]),
            **{f"metric.{k}": v for k, v in metrics.items() if isinstance(v, int | float)},
            **lineage_tags(info),
        }
        grid = eval_dir(experiment) / "samples.png"
        text = eval_dir(experiment) / "samples.txt"

        def card(v: str) -> str:
            return model_card(
                name=name,
                version=v,
                experiment=experiment,
                info=info,
                params=run.data.params,
                metrics=metrics,
                audit=audit,
                git_commit=commit,
                sample_image=grid.name if grid.exists() else None,
                sample_text="\n".join(text.read_text().splitlines()[:20]) if text.exists() else None,
            )

        version = publish.log_sampler(
            run_id=info["run_id"],
            model_dir=model_dir(experiment),
            name=name,
            sample_params=model.sampler_defaults(),
            example_output=example,
            tags=tags,
            description=card_summary(experiment, info, metrics, audit),
            card=card,
            card_files=[grid] if grid.exists() else [],
        )
    decision = registry.decide(
        c,
        name,
        version,
        audit_passed=audit["passed"],
        audit_reason="; ".join(audit["failed"]),
        metric=metric,
        mode=exp.selection.mode,
        value=float(value),
    )
    lineage = info.get("init_from")
    write_json(
        report_file(experiment, "registry.json"),
        {**decision.to_dict(), **({"parent": _parent_record(lineage)} if lineage else {})},
    )
    console.print(
        f"registered [bold]{name}[/] v{version}: {'[green]promoted[/]' if decision.promoted else 'not promoted'}"
        f" — {decision.reason}"
    )


def _parent_record(lineage: dict) -> dict:
    """The parent as registry.json records it (the leaderboard's parent column)."""
    keys = ("kind", "model", "version", "weights_sha256", "loaded", "frozen")
    return {k: lineage.get(k) for k in keys}


if __name__ == "__main__":
    app()
