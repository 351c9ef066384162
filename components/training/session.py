"""One training run on one rank: the setup and the epoch callbacks that the Ray worker and the in-process path
(``train.num_workers: 0``) share, so the two cannot drift apart.

:func:`open_session` builds the data, the model (warm-started, or initialised from a parent model:
:mod:`components.training.transfer`), the train step, the held-out loader and the loop state (from a checkpoint
when resuming); :func:`run_session` runs the epochs, and at the end of each one evaluates the held-out split,
probes the modes of 2-D data, writes the checkpoint through a :class:`Reporter` (Ray Train's, or
:class:`~components.training.checkpoint.LocalCheckpoints`), logs the epoch
to the job's :class:`~components.training.job.EpochLog` and tells the driver through ``events``.
"""

from __future__ import annotations

import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import torch

from components.data.spec import DataSpec
from components.errors import DivergenceError
from components.models import build_model
from components.models.base import GenerativeModel, TrainStep, Wrap
from components.training.checkpoint import load_checkpoint, save_checkpoint
from components.training.ingest import Batches, DataSource
from components.training.job import EventSink, TrainJob
from components.training.loop import LoopState, evaluate_loss, optim_config, run_epochs
from components.training.probe import mode_probe
from components.training.transfer import apply_transfer, plan_for, read_weights, scale_loaded_lr
from components.training.warm_start import load_weights

STEP_EVENT_EVERY = 10  # optimizer steps between two progress events


class Reporter(Protocol):
    """Where each rank reports an epoch: ``checkpoint`` is a folder on rank 0 and None elsewhere. Ray Train's
    report is a barrier: every rank calls it every epoch."""

    def report(self, metrics: dict[str, Any], checkpoint: Path | None) -> None: ...


@dataclass
class Session:
    job: TrainJob
    spec: DataSpec
    model: GenerativeModel
    step: TrainStep
    loader: Batches
    val_loader: Batches | None
    state: LoopState
    rank: int
    device: torch.device


def open_session(
    job: TrainJob,
    *,
    data: DataSource,
    rank: int,
    world: int,
    device: torch.device,
    wrap: Wrap,
    resume_from: Path | None,
) -> Session:
    """Everything one rank needs to train ``job`` on ``data`` (:mod:`components.training.ingest`: the prepared
    arrays in-process, Ray Data shards on a Ray worker); ``resume_from`` is a checkpoint folder (or None)."""
    cfg = job.train
    torch.manual_seed(cfg.seed)  # identical initial weights on every rank (DDP also broadcasts rank 0's)
    spec = data.spec
    model = build_model(job.family, job.model, spec).to(device)
    loader = data.batches(model, "train", train=True, rank=rank, world=world)
    if job.init_weights is not None:  # warm start (a checkpoint, when resuming, still wins below)
        load_weights(model, job.init_weights)
    plan = None
    if job.transfer is not None:  # before the step wraps the model: frozen parameters get no DDP hooks
        t = job.transfer
        source = read_weights(t.weights)
        plan = plan_for(model, source, strict=t.strict, load=t.load, freeze=t.freeze)
        apply_transfer(model, source, plan)
    step = model.make_train_step(wrap=wrap, optim=optim_config(cfg, device))
    if plan is not None and job.transfer is not None:
        scale_loaded_lr(step, model, plan, job.transfer.lr_mult)
    val_loader = data.batches(model, job.val_split, train=False, rank=rank, world=world) if job.val_split else None
    # Weights are identical (seeded above, and DDP broadcasts rank 0's); from here on each rank draws its own
    # noise (latents, timesteps, dropout), or two workers would repeat each other's samples.
    torch.manual_seed(cfg.seed + rank)
    state = load_checkpoint(resume_from, model, step) if resume_from is not None else LoopState()
    return Session(job, spec, model, step, loader, val_loader, state, rank, device)


def run_session(s: Session, *, reporter: Reporter, events: EventSink | None = None) -> None:
    """Train ``s`` to ``train.epochs``. On divergence every rank stops at the same step, rank 0 records why, and
    :class:`DivergenceError` is raised (the Ray worker returns instead: a retry would only diverge again)."""
    cfg, rank = s.job.train, s.rank
    log = s.job.epoch_log if rank == 0 else None
    emit = events if rank == 0 else None
    if log is not None:
        log.open()
        log.backfill(s.state.history)  # epochs checkpointed before a crash but not yet logged
        log.resumed(s.state.epoch)
    if emit is not None:
        emit({"event": "start", "epoch": s.state.epoch, "epochs": cfg.epochs, "steps": None, "pid": os.getpid()})
        emit({"event": "steps", "steps": len(s.loader)})

    def on_step(epoch: int, i: int) -> None:
        if emit is not None and i % STEP_EVENT_EVERY == 0:
            emit({"event": "step", "epoch": epoch, "step": i})

    def on_epoch(state: LoopState, means: dict[str, float]) -> None:
        if s.val_loader is not None:  # every rank: the means are all-reduced
            means = {**means, **evaluate_loss(s.model, s.val_loader, device=s.device)}
            state.history[-1].update(means)
        metrics = {**means, "epoch": state.epoch}
        if rank != 0:
            reporter.report(metrics, None)
            return
        means = {**means, **mode_probe(s.model, s.spec, seed=cfg.seed)}  # 2-D data: modes captured so far
        with tempfile.TemporaryDirectory() as tmp:
            save_checkpoint(tmp, s.model, s.step, state)
            reporter.report(metrics, Path(tmp))
        if log is not None:  # after the checkpoint is persisted: a restart never logs an epoch twice
            log.log(state.epoch, means)
        if emit is not None:
            emit({"event": "epoch", "epoch": state.epoch, "epochs": cfg.epochs, "metrics": means})

    try:
        run_epochs(s.model, s.step, s.loader, cfg, s.state, device=s.device, on_epoch=on_epoch, on_step=on_step)
    except DivergenceError as e:
        if emit is not None:
            emit({"event": "diverged", "message": str(e)})
        if log is not None:
            log.fail(str(e))
        raise
    if emit is not None:
        emit({"event": "done", "epoch": s.state.epoch})
