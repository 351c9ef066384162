"""Stage ``train@<experiment>``: Ray Train data-parallel training, one MLflow run, models/<experiment>/.

A rerun resumes: the Ray run name and the MLflow run are keyed by a hash of everything that shapes the
weights (family, model, train params, data), so a crashed stage continues from its last checkpoint and
logs into the same MLflow run.
"""

from __future__ import annotations

import csv
import io
import time
from pathlib import Path
from typing import Any

import typer

from components.config import ExperimentConfig, Params
from components.data import load_manifest
from components.errors import ConfigError
from components.io import write_json, write_text
from components.layout import DATA, MODELS, model_dir, report_file
from components.models.store import save_trained
from components.tracking import runs
from components.tracking.champion import WarmStart
from components.tracking.epochs import MlflowEpochLog
from components.tracking.lineage import Parent
from components.training.driver import storage_path, train
from components.training.job import TrainJob, Transfer, run_identity
from components.training.transfer import TransferPlan
from pipelines._common import EXPERIMENT, console, params, progress_bar, stage

app = typer.Typer(add_completion=False)


@app.command()
@stage
def main(experiment: str = EXPERIMENT) -> None:
    p = params()
    exp = p.experiment(experiment)
    root = Path.cwd()
    manifest = load_manifest(DATA, exp.dataset)
    c = runs.client(root)
    init = _init_from(experiment, exp, p.where(experiment)) if exp.train.init_from else None
    parent, transfer, plan = init if init else (None, None, None)
    warm = _warm_start(p, experiment, exp) if p.retrain.warm_start and parent is None else None
    key_hash, run_key = run_identity(
        experiment=experiment,
        family=exp.family,
        model=exp.model,
        train=exp.train,
        data_sha256=manifest["sha256"],
        init_sha256=parent.weights_sha256 if parent else warm.weights_sha256 if warm and warm.weights else None,
    )
    tags = runs.train_tags(
        root,
        experiment=experiment,
        family=exp.family,
        dataset=exp.dataset,
        params_hash=key_hash,
        data_sha256=manifest["sha256"],
    )
    if warm:
        tags["warm_start"] = warm.source if warm.weights else f"no: {warm.reason}"
    if parent:
        tags.update(parent.tags())
    run_id = runs.find_or_create_run(
        c, runs.ensure_experiment(c, p.mlflow.experiment, root), run_key, run_name=experiment, tags=tags
    )
    runs.log_params(
        c,
        run_id,
        {"family": exp.family, "dataset": exp.dataset, "model": exp.model, "train": exp.train.model_dump()},
    )
    job = TrainJob(
        key=experiment,
        family=exp.family,
        model=exp.family_config,
        dataset=exp.dataset,
        data_root=str((root / DATA).resolve()),
        train=exp.train,
        run_name=run_key,
        storage_path=storage_path(p.ray.storage_path, root),
        epoch_log=MlflowEpochLog(c.tracking_uri, run_id),
        init_weights=warm.weights if warm else None,
        transfer=transfer,
    )
    t0 = time.time()
    try:
        with _progress(experiment) as on_event:
            model, state = train(job, on_event=on_event)
        wall = time.time() - t0
        info = _save(experiment, exp, model, state, wall, run_id=run_id, run_key=run_key, key_hash=key_hash,
                     data_sha256=manifest["sha256"], warm=warm,
                     lineage={**parent.record(), **plan.summary()} if parent and plan else None)  # fmt: skip
    except KeyboardInterrupt:  # Ctrl-C: the run is resumable, the rerun continues it
        c.set_terminated(run_id, status="KILLED")
        raise
    except Exception as e:  # divergence, an infeasible cluster, a failed write: never a RUNNING run left behind
        c.set_tag(run_id, "failure", str(e).strip().splitlines()[-1] if str(e).strip() else type(e).__name__)
        c.set_terminated(run_id, status="FAILED")
        raise
    final = {k: v for k, v in state.history[-1].items() if k != "epoch"} if state.history else {}
    runs.set_tags(c, run_id, {"weights_sha256": info["weights_sha256"]})
    runs.log_metrics(c, run_id, {"train_wall_seconds": wall})
    c.set_terminated(run_id, status="FINISHED")
    console.print(
        f"trained [bold]{experiment}[/] ({exp.family} on {exp.dataset}): {state.epoch} epochs in "
        f"{wall:.0f}s on {max(exp.train.num_workers, 1)} worker(s); loss {final.get('loss', float('nan')):.4g}"
    )


def _save(
    experiment: str,
    exp: ExperimentConfig,
    model: Any,
    state: Any,
    wall: float,
    *,
    run_id: str,
    run_key: str,
    key_hash: str,
    data_sha256: str,
    warm: WarmStart | None,
    lineage: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """models/<experiment>/ (safetensors + config.json), reports/<experiment>/train.json and its history."""
    info = save_trained(
        model_dir(experiment),
        model,
        {
            "experiment": experiment,
            "family": exp.family,
            "model": exp.model,
            "dataset": exp.dataset,
            "run_id": run_id,
            "run_key": run_key,
            "params_hash": key_hash,
            "data_sha256": data_sha256,
            "epochs": state.epoch,
            "num_workers": exp.train.num_workers,
            **({"warm_start": warm.to_dict()} if warm else {}),
            **({"init_from": lineage} if lineage else {}),
        },
    )
    final = {k: v for k, v in state.history[-1].items() if k != "epoch"} if state.history else {}
    write_json(
        report_file(experiment, "train.json"),
        {
            "epochs": state.epoch,
            "wall_seconds": round(wall, 1),
            "num_workers": exp.train.num_workers,
            **final,
            **({"init_from": lineage} if lineage else {}),
        },
    )
    write_text(report_file(experiment, "train_history.csv"), _csv(state.history))
    return info


def _init_from(experiment: str, exp: ExperimentConfig, where: str) -> tuple[Parent, Transfer, TransferPlan]:
    """``train.init_from``: the parent's weights, checked against this experiment's model (family, strict
    loading, load and freeze prefixes) before any run starts; one line on any mismatch."""
    from components.data import load_spec
    from components.models import build_model
    from components.tracking.lineage import check_family, from_experiment, from_registry
    from components.training.transfer import plan_for, read_weights

    init = exp.train.init_from
    assert init is not None
    if init.registered:
        parent = from_registry(init.source)
    else:
        parent = from_experiment(MODELS, init.source, where=where)
    check_family(parent, exp.family, where=where)
    transfer = Transfer(
        weights=parent.weights,
        strict=init.strict,
        load=tuple(init.load),
        freeze=tuple(init.freeze),
        lr_mult=init.lr_mult,
    )
    model = build_model(exp.family, exp.family_config, load_spec(DATA, exp.dataset))
    try:
        plan = plan_for(model, read_weights(parent.weights), strict=init.strict, load=transfer.load,
                        freeze=transfer.freeze)  # fmt: skip
    except ConfigError as e:
        raise ConfigError(f"{where}.{e} (parent {parent.label()}); nothing trained") from None
    skipped = f"; not loaded: {', '.join(sorted(plan.skipped))}" if plan.skipped else ""
    console.print(
        f"init [bold]{experiment}[/] from {parent.label()} (sha256 {parent.weights_sha256[:12]}): "
        f"{len(plan.loaded)} tensors loaded, {len(plan.frozen)} frozen{skipped}",
        soft_wrap=True,
    )
    return parent, transfer, plan


def _warm_start(p: Params, experiment: str, exp: ExperimentConfig) -> WarmStart:
    """``retrain.warm_start``: the champion's weights when its architecture matches (else the reason why not)."""
    from components.data import load_spec
    from components.tracking.champion import champion_weights
    from components.tracking.registry import model_name

    name = model_name(p.mlflow.model_prefix, experiment)
    try:
        warm = champion_weights(name, family=exp.family, model=exp.family_config, spec=load_spec(DATA, exp.dataset))
    except Exception as e:  # MlflowException, an unreachable server: train, but say why not warm
        warm = WarmStart(None, None, None, f"cannot read the champion of {name} ({str(e).splitlines()[0]})")
    console.print(f"warm start [bold]{experiment}[/]: {warm.reason}", soft_wrap=True)
    return warm


def _csv(history: list[dict[str, float]]) -> str:
    if not history:
        return "epoch\n"
    keys = ["epoch"] + sorted({k for h in history for k in h} - {"epoch"})
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=keys)
    w.writeheader()
    w.writerows(history)
    return buf.getvalue()


class _progress:
    """Progress fed by the workers' events (epochs and steps), instead of Ray's log stream."""

    def __init__(self, name: str):
        self.name = name
        self.bar = progress_bar()
        self.task = None
        self.steps = None

    def __enter__(self):
        self.bar.start()
        self.task = self.bar.add_task(f"train {self.name}", total=None, info="starting Ray workers")
        return self.on_event

    def on_event(self, ev: dict) -> None:
        kind = ev.get("event")
        if kind == "start":
            self.bar.update(
                self.task,
                total=ev["epochs"],
                completed=ev["epoch"],
                info="resumed from checkpoint" if ev["epoch"] else "",
            )
        elif kind == "steps":
            self.steps = ev["steps"]
        elif kind == "step" and self.steps:
            self.bar.update(self.task, info=f"step {ev['step']}/{self.steps}")
        elif kind == "epoch":
            loss = ev["metrics"].get("loss")
            self.bar.update(
                self.task,
                total=ev["epochs"],
                completed=ev["epoch"],
                info=f"loss {loss:.4g}" if loss is not None else "",
            )

    def __exit__(self, *exc):
        self.bar.stop()
        return False


if __name__ == "__main__":
    app()
