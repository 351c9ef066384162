"""Launch one :class:`~components.training.job.TrainJob` on Ray Train (``TorchTrainer``), or in-process.

The Ray run is named deterministically (experiment key + hash of everything that shapes the weights), so a rerun
of the stage after a crash continues from the newest checkpoint under ``storage_path/name``. The in-process path
(``train.num_workers: 0``, tests only) runs the same session with local checkpoints under the same folder.
"""

from __future__ import annotations

import logging
import os
import queue as queue_mod
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from components.config import TrainConfig
from components.data import load_spec
from components.errors import DivergenceError, GenfoundryError
from components.models import build_model
from components.models.base import GenerativeModel
from components.training.checkpoint import LocalCheckpoints, load_checkpoint
from components.training.ingest import LocalData, data_config, ray_datasets, shard_plan
from components.training.job import EventSink, TrainJob
from components.training.loop import LoopState
from components.training.session import open_session, run_session
from components.training.worker import train_worker

IN_PROCESS_DIR = "in_process"  # <storage_path>/<run name>/in_process: the in-process path's checkpoints


def init_ray(*, num_cpus: int | None = None, dashboard: bool = False) -> None:
    """Connect to ``RAY_ADDRESS`` if set (a cluster, or inside ``ray job submit``), else start a quiet local Ray.

    ``dashboard`` starts the local instance with its dashboard, whose state API Ray Train needs to remove the
    workers' placement group of a run whose controller was killed (a Tune trial that ASHA stopped).
    """
    import ray

    if ray.is_initialized():
        return
    os.environ.setdefault("RAY_DEDUP_LOGS", "1")
    os.environ.setdefault("RAY_TRAIN_V2_ENABLED", "1")
    # the raylet waits this long for its (Python) agent to start: Ray's 30 s is too short on 2 busy cores
    os.environ.setdefault("RAY_agent_register_timeout_ms", "120000")
    # "local" always starts a fresh instance: a bare ray.init() would join any `ray start` cluster on this machine
    address = os.environ.get("RAY_ADDRESS") or "local"
    local = address == "local"
    runtime_env = None
    saved_port = os.environ.get("RAY_GCS_SERVER_PORT")
    if local and dashboard:
        # The state API finds "its" instance through RAY_ADDRESS; without it, a second Ray instance on this
        # machine (another user's, a test's) makes every state query in our workers fail. So fix the GCS
        # port up front and hand the workers its address.
        port = _free_port()
        os.environ["RAY_GCS_SERVER_PORT"] = str(port)
        runtime_env = {"env_vars": {"RAY_ADDRESS": f"{ray.util.get_node_ip_address()}:{port}"}}
    try:
        ray.init(
            address=address,
            num_cpus=num_cpus if local else None,
            include_dashboard=dashboard if local else None,
            logging_level=logging.ERROR,
            log_to_driver=False,  # worker output stays in Ray's log files; progress reaches us through a queue
            configure_logging=True,
            runtime_env=runtime_env,
        )
    finally:
        if local and dashboard:
            if saved_port is None:
                os.environ.pop("RAY_GCS_SERVER_PORT", None)
            else:
                os.environ["RAY_GCS_SERVER_PORT"] = saved_port


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("", 0))
        return s.getsockname()[1]


def resolve_use_gpu(use_gpu: bool | str) -> bool:
    """``auto`` means: use GPUs when the Ray cluster has any."""
    if use_gpu != "auto":
        return bool(use_gpu)
    import ray

    return ray.cluster_resources().get("GPU", 0) > 0


def local_resources() -> dict[str, float]:
    """What a local Ray instance started here would have (``ray.init`` takes every CPU and GPU)."""
    return {"CPU": float(os.cpu_count() or 1), "GPU": float(torch.cuda.device_count())}


def check_resources(
    train: TrainConfig,
    *,
    use_gpu: bool,
    wait_s: float,
    poll_s: float = 2.0,
    resources: Callable[[], dict[str, float]] | None = None,
) -> None:
    """Fail with one line, before ``fit()``, if the cluster cannot hold the workers: Ray would otherwise wait for
    them forever. A cluster that may grow (an autoscaler; we joined ``RAY_ADDRESS``) gets ``wait_s`` to do so; a
    local instance never grows, so it is checked once."""
    import ray

    resources = resources or ray.cluster_resources
    need = {"CPU": train.num_workers * train.cpus_per_worker}
    if use_gpu:
        need["GPU"] = train.num_workers * train.gpus_per_worker
    deadline = time.monotonic() + wait_s
    while True:
        have = resources()
        short = {r: n for r, n in need.items() if have.get(r, 0) < n}
        if not short:
            return
        if time.monotonic() >= deadline:
            break
        time.sleep(poll_s)
    asked = f"train.num_workers = {train.num_workers} x train.cpus_per_worker = {train.cpus_per_worker}"
    if use_gpu:
        asked += f" and train.gpus_per_worker = {train.gpus_per_worker:g} (use_gpu: {train.use_gpu})"
    has = ", ".join(f"{have.get(r, 0):g} {r}" for r in need)
    waited = f" after waiting {wait_s:g} s (train.start_timeout_s)" if wait_s else ""
    raise GenfoundryError(
        f"train: expected a Ray cluster with {', '.join(f'{n:g} {r}' for r, n in need.items())} for {asked}, got "
        f"{has}{waited}; lower train.num_workers / cpus_per_worker, set use_gpu: auto, or add nodes"
    )


def train(job: TrainJob, *, on_event: EventSink | None = None) -> tuple[GenerativeModel, LoopState]:
    """Train (or resume) ``job`` and return the trained model (on CPU) with its loop state.

    ``train.num_workers == 0`` trains in-process without Ray (for tests); otherwise ``num_workers`` Ray
    Train workers run data-parallel (gloo on CPU, NCCL on GPU).
    """
    if job.train.num_workers == 0:
        return _train_in_process(job, on_event)
    return _train_ray(job, on_event)


def _train_in_process(job: TrainJob, on_event: EventSink | None) -> tuple[GenerativeModel, LoopState]:
    store = LocalCheckpoints(Path(job.storage_path) / job.run_name / IN_PROCESS_DIR)
    device = torch.device("cpu")
    data = LocalData(job.data_root, job.dataset, job.train)
    session = open_session(job, data=data, rank=0, world=1, device=device, wrap=lambda m: m, resume_from=store.latest())
    run_session(session, reporter=store, events=on_event)
    return session.model.to(device).eval(), session.state


def _train_ray(job: TrainJob, on_event: EventSink | None) -> tuple[GenerativeModel, LoopState]:
    import ray.train
    from ray.util.queue import Queue
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

    if not os.environ.get("RAY_ADDRESS") and not ray.is_initialized():
        # the local instance init_ray would start gets this machine's CPUs and GPUs: an infeasible request
        # fails here, before Ray starts (seconds on a small machine)
        local_gpu = job.train.use_gpu is True or (job.train.use_gpu == "auto" and torch.cuda.device_count() > 0)
        check_resources(job.train, use_gpu=local_gpu, wait_s=0, resources=local_resources)
    init_ray()
    use_gpu = resolve_use_gpu(job.train.use_gpu)
    check_resources(
        job.train, use_gpu=use_gpu, wait_s=job.train.start_timeout_s if os.environ.get("RAY_ADDRESS") else 0
    )
    # the progress queue's actor lives on the driver's node: anywhere else, losing that node (a worker node's
    # raylet killed) would take the queue, and with it the restarted workers' first put, down with it
    here = NodeAffinitySchedulingStrategy(ray.get_runtime_context().get_node_id(), soft=False)
    events: Queue = Queue(maxsize=10_000, actor_options={"num_cpus": 0, "scheduling_strategy": here})
    trainer = torch_trainer(job, use_gpu=use_gpu, queue=events)
    diverged: list[str] = []
    stop = threading.Event()

    def pump() -> None:
        while not stop.is_set() or events.qsize() > 0:
            try:
                ev = events.get(timeout=0.25)
            except (queue_mod.Empty, Exception):  # ray.util.queue.Empty subclasses queue.Empty
                continue
            if ev.get("event") == "diverged":
                diverged.append(ev["message"])
            if on_event:
                on_event(ev)

    t = threading.Thread(target=pump, daemon=True)
    t.start()
    try:
        result = trainer.fit()
    except ray.train.TrainingFailedError as e:
        raise GenfoundryError(
            f"training of {job.key!r} failed after {job.train.max_failures} retries: {_root_cause(e)}"
        ) from e
    finally:
        stop.set()
        t.join(timeout=10)
        ray.kill(events.actor, no_restart=True)
    if diverged:
        raise DivergenceError(diverged[0])
    if result.checkpoint is None:
        raise GenfoundryError(f"training of {job.key!r} produced no checkpoint (train.epochs = {job.train.epochs})")
    model = build_model(job.family, job.model, load_spec(job.data_root, job.dataset))  # the driver has data/
    with result.checkpoint.as_directory() as d:
        state = load_checkpoint(d, model)
    return model.to(torch.device("cpu")), state


def torch_trainer(
    job: TrainJob,
    *,
    use_gpu: bool,
    queue: Any = None,
    callbacks: list[Any] | None = None,
    num_to_keep: int = 2,
    datasets: bool = True,
) -> Any:
    """The ``TorchTrainer`` running :func:`~components.training.worker.train_worker` on ``job``:
    ``train.num_workers`` DDP workers (gloo on CPU, NCCL on GPU; gloo also when workers share a GPU,
    ``train.gpus_per_worker < 1``), restarts from the last checkpoint up to ``train.max_failures`` times, and a
    rerun with the same ``job.run_name``/``job.storage_path`` resumes from that run's newest checkpoint.

    The workers' data are Ray Datasets of the split's Parquet shards, read on this process's node
    (:func:`~components.training.ingest.ray_datasets`; ``datasets=False`` builds the trainer without reading them,
    to inspect its settings)."""
    import ray.train
    from ray.train.torch import TorchConfig, TorchTrainer

    train: TrainConfig = job.train
    splits = ("train", job.val_split) if job.val_split else ("train",)
    # fails at once, with one line, for a dataset prepared before shards existed
    plan = shard_plan(job.data_root, job.dataset, train, splits=splits) if datasets else None
    return TorchTrainer(
        train_worker,
        train_loop_config={"job": job, "data": plan, "queue": queue},
        datasets=ray_datasets(job.data_root, job.dataset, train, splits=splits) if datasets else None,
        dataset_config=data_config(train),
        torch_config=TorchConfig(backend="nccl" if use_gpu and train.gpus_per_worker >= 1 else "gloo"),
        scaling_config=ray.train.ScalingConfig(
            num_workers=train.num_workers,
            use_gpu=use_gpu,
            resources_per_worker={"CPU": train.cpus_per_worker, **({"GPU": train.gpus_per_worker} if use_gpu else {})},
        ),
        run_config=ray.train.RunConfig(
            name=job.run_name,
            storage_path=job.storage_path,
            callbacks=callbacks,
            failure_config=ray.train.FailureConfig(max_failures=train.max_failures),
            checkpoint_config=ray.train.CheckpointConfig(num_to_keep=num_to_keep),
        ),
    )


def _root_cause(e: BaseException) -> str:
    while e.__cause__ is not None:
        e = e.__cause__
    lines = [ln for ln in str(e).strip().splitlines() if ln.strip()]
    return lines[-1] if lines else type(e).__name__


def storage_path(path: str, root: str | Path) -> str:
    """Ray needs an absolute path or a URI (``s3://``, ``gs://`` ...) for ``RunConfig.storage_path``."""
    if "://" in path:
        return path
    return str((Path(root) / path).resolve())
