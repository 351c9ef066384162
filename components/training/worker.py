"""Ray Train's ``train_loop_per_worker``: one rank of a :class:`~components.training.job.TrainJob`.

The worker receives the frozen job as it is (``train_loop_config = {"job": job, "data": plan, "queue": events}``:
``plan`` a :class:`~components.training.ingest.ShardPlan`, its batches the Ray Datasets the trainer was given),
wraps the model for DistributedDataParallel, resumes from the checkpoint Ray hands it, and runs the session every
path shares (:mod:`components.training.session`). It reads nothing from the driver's filesystem.
"""

from __future__ import annotations

import contextlib
from pathlib import Path
from typing import Any

import torch
from torch import nn

from components.errors import DivergenceError
from components.models.base import Wrap
from components.training.job import EventSink, TrainJob
from components.training.session import open_session, run_session


class RayReporter:
    """Every rank reports each epoch (``ray.train.report`` is a barrier); rank 0 hands over its checkpoint."""

    def report(self, metrics: dict[str, Any], checkpoint: Path | None) -> None:
        import ray.train

        ray.train.report(metrics, checkpoint=ray.train.Checkpoint.from_directory(checkpoint) if checkpoint else None)


def ddp_wrap(world: int, device: torch.device) -> Wrap:
    def wrap(m: nn.Module) -> nn.Module:
        if world == 1:
            return m
        return nn.parallel.DistributedDataParallel(m, device_ids=[device.index] if device.type == "cuda" else None)

    return wrap


def queue_sink(queue: Any) -> EventSink | None:
    """Progress events to the driver's Ray queue; step events never block training."""
    if queue is None:
        return None

    def sink(ev: dict[str, Any]) -> None:
        (queue.put_nowait if ev["event"] == "step" else queue.put)(ev)

    return sink


def train_worker(config: dict[str, Any]) -> None:
    """One rank: ``config["job"]`` is the :class:`TrainJob`, ``config["data"]`` its
    :class:`~components.training.ingest.ShardPlan`, ``config["queue"]`` the driver's event queue (or None).

    On divergence every rank returns normally after rank 0 has told the driver (which fails the run): retrying a
    diverged run from its checkpoint would only diverge again.
    """
    import ray.train
    import ray.train.torch

    job: TrainJob = config["job"]
    ctx = ray.train.get_context()
    rank, world = ctx.get_world_rank(), ctx.get_world_size()
    torch.set_num_threads(job.train.cpus_per_worker)
    device = ray.train.torch.get_device()
    checkpoint = ray.train.get_checkpoint()
    with checkpoint.as_directory() if checkpoint else contextlib.nullcontext() as resume_from:
        session = open_session(
            job,
            data=config["data"],
            rank=rank,
            world=world,
            device=device,
            wrap=ddp_wrap(world, device),
            resume_from=Path(resume_from) if resume_from else None,
        )
    try:
        run_session(session, reporter=RayReporter(), events=queue_sink(config.get("queue")))
    except DivergenceError:
        return
