"""``genfoundry tune EXP``: Ray Tune (ASHA) over ``experiments.EXP.tune.space``; a command, not a DVC stage.

A search costs many trainings, so ``dvc repro`` never runs it. It reads the prepared data, runs the trials
(each a Ray Train run of the pipeline's training loop, logged as an MLflow child run of one parent run) and
writes the best configuration to ``reports/EXP/tune_best.json``. ``--apply`` then writes those values into
``params.yaml`` (comments and layout kept), so the next ``dvc repro`` retrains EXP with them; the file also
names the equivalent ``dvc exp run -S ...`` command, for trying them as a DVC experiment instead.
"""

from __future__ import annotations

import io
import json
import time
from pathlib import Path
from typing import Any

import typer

from components.config import ExperimentConfig, load_params
from components.data import load_manifest
from components.errors import ConfigError, GenfoundryError
from components.io import stable_hash, write_json
from components.layout import DATA, PARAMS, report_file
from components.orchestration.tune import TuneJob, tune
from components.tracking import runs
from components.training.driver import init_ray, resolve_use_gpu, storage_path
from pipelines._common import EXPERIMENT, console, params, progress_bar, stage

app = typer.Typer(add_completion=False)


def best_file(experiment: str) -> Path:
    return report_file(experiment, "tune_best.json")


@app.command()
@stage
def main(
    experiment: str = EXPERIMENT,
    apply: bool = typer.Option(False, "--apply", help="write the best values into params.yaml afterwards"),
    apply_only: bool = typer.Option(
        False, "--apply-only", help="no search: write the values of the last search (tune_best.json) into params.yaml"
    ),
) -> None:
    """Search EXP's hyperparameters (params.yaml experiments.EXP.tune) with Ray Tune and ASHA early stopping."""
    if apply_only:
        apply_best(experiment)
        return
    p = params()
    exp = p.experiment(experiment)
    if exp.tune is None:
        raise ConfigError(
            f"{p.where(experiment)} has no 'tune' section in params.yaml; add e.g. "
            "tune: {num_samples: 8, space: {train.lr: {loguniform: [1.0e-4, 1.0e-2]}}}"
        )
    manifest = load_manifest(DATA, exp.dataset)
    if exp.tune.metric.startswith("val_") and not manifest["splits"]["val"]["n"]:
        raise ConfigError(
            f"tune.metric {exp.tune.metric!r} needs a validation split, but {exp.dataset!r} has none "
            "(prepare.split.val = 0); set prepare.split.val > 0 or tune.metric: loss"
        )
    root = Path.cwd()
    name = f"tune-{experiment}-{time.strftime('%Y%m%d-%H%M%S')}"
    c = runs.client(root)
    exp_id = runs.ensure_experiment(c, p.mlflow.experiment, root)
    parent = c.create_run(
        exp_id,
        run_name=name,
        tags={
            "genfoundry.experiment": experiment,
            "genfoundry.tune": "search",
            "genfoundry.family": exp.family,
            "git_commit": runs.git_commit(root),
            "data_sha256": manifest["sha256"],
        },
    ).info.run_id
    runs.log_params(
        c,
        parent,
        {
            "family": exp.family,
            "dataset": exp.dataset,
            "model": exp.model,
            "train": exp.train.model_dump(),
            "tune": {**exp.tune.model_dump(exclude={"space"}), "space": _space(exp)},
        },
    )
    init_ray(num_cpus=p.ray.num_cpus, dashboard=True)
    job = TuneJob(
        key=experiment,
        experiment=exp,
        data_root=str((root / DATA).resolve()),
        name=name,
        storage_path=storage_path(p.ray.storage_path, root),
        use_gpu=resolve_use_gpu(exp.train.use_gpu),
        tracking_uri=c.tracking_uri,
        mlflow_experiment_id=exp_id,
        parent_run_id=parent,
    )
    t0 = time.time()
    try:
        with _progress(experiment, exp) as on_event:
            outcome = tune(job, on_event=on_event)
    except BaseException as e:
        c.set_tag(parent, "failure", str(e).splitlines()[0] if str(e) else type(e).__name__)
        c.set_terminated(parent, status="FAILED" if isinstance(e, Exception) else "KILLED")
        raise
    wall = time.time() - t0
    overrides = {f"{p.where(experiment)}.{k}": v for k, v in outcome.best.items()}
    result = {
        "experiment": experiment,
        "metric": outcome.metric,
        "mode": outcome.mode,
        "value": outcome.best_value,
        "epochs": outcome.best_epochs,
        "trial": outcome.best_trial,
        "params": overrides,
        "dvc_exp_run": "dvc exp run " + " ".join(f"-S '{k}={_yaml_value(v)}'" for k, v in overrides.items()),
        "apply": f"genfoundry tune {experiment} --apply-only",
        "mlflow": {"parent_run_id": parent, "best_run_id": outcome.best_run_id, "tracking_uri": c.tracking_uri},
        "scheduler": outcome.scheduler,
        "search": {
            "name": name,
            "space": _space(exp),
            "num_samples": exp.tune.num_samples,
            "params_hash": stable_hash({"model": exp.model, "train": exp.train.model_dump(), "tune": _space(exp)}),
            "data_sha256": manifest["sha256"],
            "wall_seconds": round(wall, 1),
        },
        "trials": outcome.trials,
    }
    write_json(best_file(experiment), result)
    runs.log_metrics(c, parent, {f"best_{outcome.metric}": outcome.best_value, "tune_wall_seconds": wall})
    runs.set_tags(
        c,
        parent,
        {"tune.best_trial": outcome.best_trial, "tune.best_run_id": outcome.best_run_id or "", **overrides},
    )
    c.set_terminated(parent, status="FINISHED")
    counts = {s: sum(tr["status"] == s for tr in outcome.trials) for s in ("completed", "stopped", "error")}
    console.print(
        f"tuned [bold]{experiment}[/]: {len(outcome.trials)} trials in {wall:.0f}s "
        f"({counts['completed']} completed, {counts['stopped']} stopped by ASHA, {counts['error']} failed); "
        f"best {outcome.metric} {outcome.best_value:.4g} with "
        + ", ".join(f"{k} = {v}" for k, v in outcome.best.items())
    )
    console.print(f"wrote {best_file(experiment)}", highlight=False)
    if apply:
        apply_best(experiment)
    else:
        console.print(
            f"to train with it: `genfoundry tune {experiment} --apply-only` (writes params.yaml) then `dvc repro`, "
            f"or try it as a DVC experiment: `{result['dvc_exp_run']}`",
            highlight=False,
            soft_wrap=True,
        )


def _space(exp: ExperimentConfig) -> dict[str, Any]:
    assert exp.tune is not None
    return {k: {d.kind: getattr(d, d.kind)} for k, d in exp.tune.space.items()}


def _yaml_value(v: Any) -> str:
    return json.dumps(list(v) if isinstance(v, tuple) else v)


def apply_best(experiment: str, path: Path = PARAMS) -> None:
    """Write the last search's best values into ``params.yaml``, keeping its comments and layout."""
    from ruamel.yaml import YAML  # a dvc dependency: round-trips YAML with comments

    f = best_file(experiment)
    if not f.exists():
        raise GenfoundryError(f"{f} not found; run `genfoundry tune {experiment}` first")
    best = json.loads(f.read_text())["params"]
    yaml = YAML()
    yaml.preserve_quotes = True
    yaml.width = 4096
    yaml.representer.add_representer(type(None), lambda r, _: r.represent_scalar("tag:yaml.org,2002:null", "null"))
    doc = yaml.load(path.read_text())
    listed = "finetune" if experiment in (doc.get("finetune") or {}) else "experiments"
    prefix = f"{listed}.{experiment}."
    for dotted, value in best.items():
        if not dotted.startswith(prefix):
            raise GenfoundryError(f"{f}: {dotted!r} is not a key of experiment {experiment!r}")
        section, key = dotted[len(prefix) :].split(".", 1)
        exp = doc[listed][experiment]
        if exp.get(section) is None:
            exp[section] = {}
        exp[section][key] = list(value) if isinstance(value, tuple) else value
    buf = io.StringIO()
    yaml.dump(doc, buf)
    tmp = path.with_name(f".{path.name}.tune")
    tmp.write_text(buf.getvalue())
    try:
        load_params(tmp)  # the result must still be a valid params.yaml
    except GenfoundryError:
        tmp.unlink()
        raise
    tmp.replace(path)
    console.print(
        f"params.yaml: {listed}.{experiment} <- "
        + ", ".join(f"{k[len(prefix) :]} = {v}" for k, v in best.items())
        + f"; `dvc repro` retrains {experiment} with them",
        highlight=False,
    )


class _progress:
    """A progress bar of trials (done of num_samples) with the best metric so far."""

    def __init__(self, name: str, exp: ExperimentConfig):
        assert exp.tune is not None
        self.name, self.metric, self.mode = name, exp.tune.metric, exp.tune.mode
        self.total = exp.tune.num_samples * _grid_size(exp)
        self.bar = progress_bar()
        self.best: float | None = None
        self.running: set[str] = set()

    def __enter__(self):
        self.bar.start()
        self.task = self.bar.add_task(f"tune {self.name}", total=self.total, info="starting Ray")
        return self.on_event

    def on_event(self, ev: dict) -> None:
        kind = ev.get("event")
        if kind == "trial_start":
            self.running.add(ev["trial"])
        elif kind == "trial_result":
            v = ev["result"].get(self.metric)
            if isinstance(v, int | float) and (
                self.best is None or (v < self.best if self.mode == "min" else v > self.best)
            ):
                self.best = v
        elif kind in ("trial_complete", "trial_error"):
            self.running.discard(ev["trial"])
            self.bar.advance(self.task)
        best = f"best {self.metric} {self.best:.4g}" if self.best is not None else ""
        self.bar.update(self.task, info=f"{len(self.running)} running  {best}")

    def __exit__(self, *exc):
        self.bar.stop()
        return False


def _grid_size(exp: ExperimentConfig) -> int:
    assert exp.tune is not None
    n = 1
    for d in exp.tune.space.values():
        if d.grid is not None:
            n *= len(d.grid)
    return n


if __name__ == "__main__":
    app()
