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
from components.models.store import load_trained
from components.tracking import registry, runs
from components.tracking.card import model_card
from pipelines._common import EXPERIMENT, MODELS, REPORTS, console, experiment_context, stage

app = typer.Typer(add_completion=False)


@app.command()
@stage
def main(experiment: str = EXPERIMENT) -> None:
    p, exp, info = experiment_context(experiment)
    metrics = read_json(REPORTS / experiment / "eval.json")
    audit = read_json(REPORTS / experiment / "audit.json")
    c = runs.client(Path.cwd())
    run = c.get_run(info["run_id"])
    if run.info.status == "FAILED":
        raise GenfoundryError(f"MLflow run {info['run_id']} of {experiment!r} FAILED; it is not registered")
    metric = exp.selection.metric
    value = metrics.get(metric)
    if not isinstance(value, int | float):
        numeric = sorted(k for k, v in metrics.items() if isinstance(v, int | float))
        raise ConfigError(f"experiments.{experiment}.selection.metric = {metric!r}: expected one of {numeric}")

    name = registry.model_name(p.mlflow.model_prefix, experiment)
    fp = registry.fingerprint(
        info["weights_sha256"], json.dumps(metrics, sort_keys=True), json.dumps(audit, sort_keys=True)
    )
    version = registry.find_version(c, name, fp)
    if version is None:
        model = load_trained(MODELS / experiment)
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
        }
        eval_dir = REPORTS / experiment / "eval"
        grid = eval_dir / "samples.png"
        text = eval_dir / "samples.txt"

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

        version = registry.log_sampler(
            run_id=info["run_id"],
            model_dir=MODELS / experiment,
            name=name,
            sample_params=model.sampler_defaults(),
            example_output=example,
            tags=tags,
            description=_card(experiment, info["family"], info["dataset"], info, metrics, audit),
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
    write_json(REPORTS / experiment / "registry.json", decision.to_dict())
    console.print(
        f"registered [bold]{name}[/] v{version}: {'[green]promoted[/]' if decision.promoted else 'not promoted'}"
        f" — {decision.reason}"
    )


def _card(experiment: str, family: str, dataset: str, info: dict, metrics: dict, audit: dict) -> str:
    """A short model card (markdown) for the registry."""
    rows = "\n".join(f"| {k} | {v:.4g} |" for k, v in metrics.items() if isinstance(v, float))
    return (
        f"# {experiment}\n\n{family} trained on `{dataset}` (data sha256 `{info['data_sha256'][:16]}`), "
        f"params hash `{info['params_hash']}`, MLflow run `{info['run_id']}`.\n\n"
        f"| metric | value |\n|---|---|\n{rows}\n\n"
        f"Audit: {'passed' if audit['passed'] else 'FAILED: ' + '; '.join(audit['failed'])} "
        f"(FD L2 {audit.get('fd_l2', float('nan')):.4f}).\n\n"
        f"Protocol: `{json.dumps(metrics.get('protocol', {}), sort_keys=True)}`\n"
    )


if __name__ == "__main__":
    app()
