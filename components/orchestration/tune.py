"""Hyperparameter search for one experiment: Ray Tune over Ray Train runs (the Train V2 pattern).

Each Tune trial is a small driver function (:func:`_trial`) that builds a ``TorchTrainer`` running the
pipeline's own :func:`~components.training.worker.train_worker` with one sampled configuration, plus held-out
(``val_*``) metrics every epoch. ``TuneReportCallback`` forwards the workers' per-epoch reports to Tune, where
ASHA (asynchronous successive halving) stops trials whose metric trails the others at a rung. Every trial logs
its epochs into an MLflow child run of the search's parent run. The result is the best configuration as
``train.*`` / ``model.*`` overrides of the experiment's params.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from components.config import ExperimentConfig, apply_overrides
from components.errors import DivergenceError, GenfoundryError
from components.tune_config import Distribution

EventSink = Callable[[dict[str, Any]], None]
TRIAL_TAG = "genfoundry.tune_trial"
#: what a trial's driver process asks of the cluster: no CPU (it only waits for its Train run), a little memory
DRIVER_RESOURCES = {"cpu": 0, "memory": 256 * 2**20}


@dataclass(frozen=True)
class TuneJob:
    """One search; all paths absolute (trials may run on other nodes)."""

    key: str
    experiment: ExperimentConfig  # with .tune set
    data_root: str
    name: str  # Tune run name, unique per search: <storage_path>/<name>/
    storage_path: str
    use_gpu: bool = False
    tracking_uri: str | None = None
    mlflow_experiment_id: str | None = None
    parent_run_id: str | None = None

    @property
    def epochs(self) -> int:
        assert self.experiment.tune is not None
        return self.experiment.tune.epochs or self.experiment.train.epochs


@dataclass
class TuneOutcome:
    best: dict[str, Any]  # {"train.lr": 0.0031, "model.width": 32}
    best_value: float
    best_trial: str
    best_epochs: int
    best_run_id: str | None
    metric: str
    mode: str
    scheduler: dict[str, Any]
    trials: list[dict[str, Any]] = field(default_factory=list)


def search_space(space: dict[str, Distribution]) -> dict[str, dict[str, Any]]:
    """params.yaml's ``tune.space`` as a Tune ``param_space``: ``{"train": {...}, "model": {...}}``."""
    from ray import tune

    out: dict[str, dict[str, Any]] = {"train": {}, "model": {}}
    for name, dist in space.items():
        section, _, key = name.partition(".")
        value = getattr(dist, dist.kind)
        out[section][key] = {
            "choice": lambda v: tune.choice(list(v)),
            "grid": lambda v: tune.grid_search(list(v)),
            "uniform": lambda v: tune.uniform(*v),
            "loguniform": lambda v: tune.loguniform(*v),
            "randint": lambda v: tune.randint(v[0], v[1] + 1),  # params.yaml: both ends included
        }[dist.kind](value)
    return out


def overrides(config: dict[str, Any]) -> dict[str, Any]:
    """A trial's sampled config as ``{"train.lr": ..., "model.width": ...}``; floats drawn from a continuous
    range are rounded to 4 significant digits, so the value a trial runs is the value written back."""
    return {f"{section}.{k}": _round(v) for section in ("train", "model") for k, v in config.get(section, {}).items()}


def _round(v: Any) -> Any:
    if isinstance(v, float) and math.isfinite(v) and v != 0:
        return float(f"{v:.4g}")
    return v


def _trial(config: dict[str, Any], *, job: TuneJob) -> None:
    """One trial's driver: a Ray Train run of ``train_worker`` with the sampled configuration."""
    import ray.tune
    from ray.tune.integration.ray_train import TuneReportCallback

    from components.tracking.epochs import MlflowEpochLog
    from components.training.driver import torch_trainer
    from components.training.job import TrainJob

    exp, t = job.experiment, job.experiment.tune
    assert t is not None
    trial_id = ray.tune.get_context().get_trial_id()
    values = overrides(config)
    train, model = apply_overrides(exp, values)
    train = train.model_copy(update={"epochs": job.epochs, "num_workers": t.workers_per_trial})
    client, run_id = None, None
    if job.parent_run_id:
        from mlflow.tracking import MlflowClient

        from components.tracking import runs

        client = MlflowClient(tracking_uri=job.tracking_uri)
        run_id = runs.find_or_create_run(
            client,
            job.mlflow_experiment_id,
            f"{job.name}/{trial_id}",
            run_name=f"{job.key}-{trial_id}",
            tags={"mlflow.parentRunId": job.parent_run_id, "genfoundry.experiment": job.key, TRIAL_TAG: trial_id},
        )
        runs.log_params(
            client, run_id, {"tune": values, "model": model.model_dump(exclude_unset=True), "train": train.model_dump()}
        )
    train_job = TrainJob(
        key=job.key,
        family=exp.family,
        model=model,
        dataset=exp.dataset,
        data_root=job.data_root,
        train=train,
        run_name=f"{job.name}-{trial_id}",  # stable across a restart of this trial: it resumes its checkpoint
        storage_path=job.storage_path,
        epoch_log=MlflowEpochLog(job.tracking_uri, run_id) if run_id else None,
        val_split="val",
    )
    trainer = torch_trainer(train_job, use_gpu=job.use_gpu, callbacks=[TuneReportCallback()], num_to_keep=1)
    result = trainer.fit()
    done = int((result.metrics or {}).get("epoch", 0))
    if done < train.epochs:  # the workers stopped early on their own: divergence
        reason = client.get_run(run_id).data.tags.get("failure") if client and run_id else None
        if client and run_id:
            client.set_terminated(run_id, status="FAILED")
        raise DivergenceError(reason or f"trial {trial_id}: expected {train.epochs} epochs, got {done}")
    if client and run_id:
        client.set_terminated(run_id, status="FINISHED")


def _progress_callback(on_event: EventSink | None) -> Any:
    """A Tune callback turning trial events into ``on_event`` dicts (it runs in the driver process)."""
    from ray.tune import Callback

    class Progress(Callback):
        def __init__(self, sink: EventSink | None):
            self.sink = sink

        def __getstate__(self):  # Tune pickles its run config (for Tuner.restore): leave the sink behind
            return {"sink": None}

        def emit(self, ev: dict[str, Any]) -> None:
            if self.sink is not None:
                self.sink(ev)

        def on_trial_start(self, iteration, trials, trial, **info):
            self.emit({"event": "trial_start", "trial": trial.trial_id, "config": overrides(trial.config)})

        def on_trial_result(self, iteration, trials, trial, result, **info):
            self.emit({"event": "trial_result", "trial": trial.trial_id, "result": dict(result)})

        def on_trial_complete(self, iteration, trials, trial, **info):
            self.emit({"event": "trial_complete", "trial": trial.trial_id})

        def on_trial_error(self, iteration, trials, trial, **info):
            self.emit({"event": "trial_error", "trial": trial.trial_id})

    return Progress(on_event)


def max_concurrent(job: TuneJob) -> int:
    """``tune.max_concurrent``, or as many trials as the cluster has CPUs (GPUs) for their workers."""
    import ray

    t = job.experiment.tune
    assert t is not None
    if t.max_concurrent:
        return t.max_concurrent
    resources = ray.cluster_resources()
    per_trial = t.workers_per_trial * (1 if job.use_gpu else job.experiment.train.cpus_per_worker)
    have = resources.get("GPU", 0) if job.use_gpu else resources.get("CPU", 1)
    return max(1, int(have // per_trial))


def tune(job: TuneJob, *, on_event: EventSink | None = None) -> TuneOutcome:
    """Run the search and return the best configuration; raise if no trial finished an epoch."""
    from components.training.driver import init_ray

    init_ray(dashboard=True)
    import ray.tune
    from ray.tune.schedulers import ASHAScheduler
    from ray.tune.search.basic_variant import BasicVariantGenerator

    t = job.experiment.tune
    if t is None:
        raise GenfoundryError(
            f"experiments.{job.key}.tune: expected a search section, got none; add one to params.yaml"
        )
    scheduler = {
        "name": "ASHA",
        "time_attr": "epoch",
        "max_t": job.epochs,
        "grace_period": t.grace_period,
        "reduction_factor": t.reduction_factor,
    }
    concurrent = max_concurrent(job)
    if on_event:
        on_event({"event": "search", "num_samples": t.num_samples, "max_concurrent": concurrent, **scheduler})
    os.environ.setdefault("TUNE_DISABLE_AUTO_CALLBACK_LOGGERS", "1")  # no TensorBoard/CSV files per trial
    os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")  # the legacy reporter honours verbose=0: no trial tables
    # A trial ASHA stops is still inside trainer.fit(): end its driver (and with it the Train run and the
    # workers' CPUs) after a few seconds, not Tune's default 600 s grace period.
    os.environ.setdefault("TUNE_FORCE_TRIAL_CLEANUP_S", "2")
    tuner = ray.tune.Tuner(
        ray.tune.with_resources(ray.tune.with_parameters(_trial, job=job), dict(DRIVER_RESOURCES)),
        param_space=search_space(t.space),
        tune_config=ray.tune.TuneConfig(
            metric=t.metric,
            mode=t.mode,
            num_samples=t.num_samples,
            scheduler=ASHAScheduler(
                time_attr="epoch", max_t=job.epochs, grace_period=t.grace_period, reduction_factor=t.reduction_factor
            ),
            search_alg=BasicVariantGenerator(max_concurrent=concurrent, random_state=t.seed),
            trial_dirname_creator=_trial_dirname,
        ),
        run_config=ray.tune.RunConfig(
            name=job.name,
            storage_path=job.storage_path,
            verbose=0,
            callbacks=[_progress_callback(on_event)],
            failure_config=ray.tune.FailureConfig(max_failures=0),
        ),
    )
    grid = tuner.fit()
    trials = []
    for r in grid:
        m = r.metrics or {}
        epochs = int(m.get("epoch", 0))
        value = m.get(t.metric)
        status = "error" if r.error else ("completed" if epochs >= job.epochs else "stopped")
        trials.append(
            {
                "trial": os.path.basename(r.path.rstrip("/")),  # trial_dirname_creator: the trial id
                "config": overrides(r.config),
                "status": status,
                "epochs": epochs,
                t.metric: value,
                **({"error": _one_line(r.error)} if r.error else {}),
            }
        )
    _close_child_runs(job, trials)
    ok = [tr for tr in trials if tr["status"] != "error" and _finite(tr[t.metric])]
    if not ok:
        errors = [tr.get("error") for tr in trials if tr.get("error")]
        missing = [tr for tr in trials if tr["status"] != "error" and tr[t.metric] is None]
        if missing:
            raise GenfoundryError(
                f"experiments.{job.key}.tune.metric: expected a reported metric "
                f"(e.g. loss, val_loss, val_<term of the {job.experiment.family} objective>), got {t.metric!r}"
            )
        raise GenfoundryError(
            f"experiments.{job.key}.tune: expected at least one finished trial, got none "
            f"({errors[0] if errors else 'no results'})"
        )
    best = (min if t.mode == "min" else max)(ok, key=lambda tr: tr[t.metric])
    return TuneOutcome(
        best=best["config"],
        best_value=float(best[t.metric]),
        best_trial=best["trial"],
        best_epochs=best["epochs"],
        best_run_id=best.get("run_id"),
        metric=t.metric,
        mode=t.mode,
        scheduler=scheduler,
        trials=trials,
    )


def _close_child_runs(job: TuneJob, trials: list[dict[str, Any]]) -> None:
    """Trials ASHA stopped (their driver was ended mid-run) or that errored: close their MLflow child runs."""
    if not job.parent_run_id:
        return
    from mlflow.tracking import MlflowClient

    c = MlflowClient(tracking_uri=job.tracking_uri)
    children = c.search_runs(
        [job.mlflow_experiment_id], filter_string=f"tags.mlflow.parentRunId = '{job.parent_run_id}'", max_results=1000
    )
    by_trial = {r.data.tags.get(TRIAL_TAG): r for r in children}
    for tr in trials:
        run = by_trial.get(tr["trial"])
        if run is None:
            continue
        tr["run_id"] = run.info.run_id
        c.set_tag(run.info.run_id, "tune.status", tr["status"])
        if tr["status"] == "stopped":
            c.set_tag(run.info.run_id, "tune.stopped_at_epoch", str(tr["epochs"]))
        if run.info.status == "RUNNING":
            status = {"completed": "FINISHED", "stopped": "KILLED", "error": "FAILED"}[tr["status"]]
            if tr.get("error"):
                c.set_tag(run.info.run_id, "failure", tr["error"])
            c.set_terminated(run.info.run_id, status=status)


def _finite(v: Any) -> bool:
    return isinstance(v, int | float) and math.isfinite(v)


def _one_line(e: BaseException) -> str:
    from components.training.driver import _root_cause

    return _root_cause(e)


def _trial_dirname(trial: Any) -> str:
    return trial.trial_id
