"""The training loop every family shares: data-parallel epochs, checkpoints, divergence checks.

``train_worker`` is Ray Train's ``train_loop_per_worker``; :func:`fit` runs the same epochs in-process
(no Ray, no DDP) for tests and benchmarks. Both go through :func:`run_epochs`.
"""

from __future__ import annotations

import math
import os
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
from torch import Tensor, nn
from torch.utils.data import DataLoader, DistributedSampler, TensorDataset

from components.config import TrainConfig
from components.data import load_spec, load_split
from components.data.spec import DataSpec
from components.errors import DivergenceError
from components.models import build_model
from components.models.base import GenerativeModel, OptimConfig, TrainStep

EpochCallback = Callable[[int, dict[str, float]], None]
StepCallback = Callable[[int, int], None]


@dataclass
class LoopState:
    """What a checkpoint holds besides the weights."""

    epoch: int = 0  # epochs completed
    history: list[dict[str, float]] = field(default_factory=list)


def data_tensors(spec: DataSpec, x: np.ndarray, y: np.ndarray) -> tuple[Tensor, Tensor]:
    """Arrays of a prepared split as training tensors (text is tokenised)."""
    if spec.kind == "text":
        from components.data.text import encode

        return torch.from_numpy(encode(list(x), spec)), torch.from_numpy(y)
    return torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32)), torch.from_numpy(y)


def optim_config(cfg: TrainConfig, device: torch.device) -> OptimConfig:
    amp = cfg.amp and device.type == "cuda"
    return OptimConfig(lr=cfg.lr, weight_decay=cfg.weight_decay, betas=cfg.betas, grad_clip=cfg.grad_clip, amp=amp)


def make_loader(data: tuple[Tensor, ...], cfg: TrainConfig, *, rank: int, world: int) -> DataLoader:
    ds = TensorDataset(*data)
    sampler = DistributedSampler(ds, num_replicas=world, rank=rank, shuffle=True, seed=cfg.seed, drop_last=True)
    batch = min(cfg.batch_size, max(1, len(sampler)))
    return DataLoader(ds, batch_size=batch, sampler=sampler, drop_last=True)


def lr_factor(schedule: str, progress: float) -> float:
    """Multiplier of the base learning rate at ``progress`` in [0, 1) of the run."""
    if schedule == "linear":
        return 1.0 - progress
    if schedule == "cosine":
        return 0.5 * (1.0 + math.cos(math.pi * progress))
    return 1.0


def set_lr(step: TrainStep, cfg: TrainConfig, progress: float) -> None:
    """Set every optimizer's lr from its base lr and the schedule: a pure function of the step index, so a
    resumed run continues the schedule without any scheduler state in the checkpoint."""
    if cfg.lr_schedule == "constant":
        return
    f = lr_factor(cfg.lr_schedule, progress)
    for opt in step.optimizers.values():
        for group in opt.param_groups:
            group["lr"] = group.setdefault("initial_lr", group["lr"]) * f


def run_epochs(
    model: GenerativeModel,
    step: TrainStep,
    loader: DataLoader,
    cfg: TrainConfig,
    state: LoopState,
    *,
    device: torch.device,
    on_epoch: Callable[[LoopState, dict[str, float]], None],
    on_step: StepCallback | None = None,
) -> None:
    """Train from ``state.epoch`` to ``cfg.epochs``; raise :class:`DivergenceError` on a non-finite step.

    Per-epoch means are all-reduced across ranks (so every rank sees the same numbers and takes the same
    divergence decision) before ``on_epoch`` is called.
    """
    for epoch in range(state.epoch + 1, cfg.epochs + 1):
        model.train()
        loader.sampler.set_epoch(epoch)  # type: ignore[union-attr]
        sums: dict[str, Tensor] = {}
        n = 0
        for i, batch in enumerate(loader):
            set_lr(step, cfg, ((epoch - 1) * len(loader) + i) / (cfg.epochs * len(loader)))
            batch = tuple(t.to(device, non_blocking=True) for t in batch)
            logs = step(batch)
            for k, v in logs.items():
                if k.startswith("grad_norm") and not torch.isfinite(v):
                    # grad norms are computed after the all-reduce: every rank stops at this same step.
                    raise DivergenceError(
                        f"training diverged at epoch {epoch}, step {i}: {k} = {v.item()}; "
                        "lower train.lr, set train.grad_clip, or change the model's params"
                    )
                sums[k] = sums.get(k, torch.zeros((), device=device)) + v.float()
            n += 1
            if on_step is not None:
                on_step(epoch, i + 1)
        means = _all_reduce_means(sums, n, device)
        bad = {
            k: v for k, v in means.items() if not math.isfinite(v) or (k.startswith("loss") and abs(v) > cfg.max_loss)
        }
        if bad:
            k, v = next(iter(bad.items()))
            raise DivergenceError(
                f"training diverged at epoch {epoch}: mean {k} = {v:.4g} (limit train.max_loss = {cfg.max_loss:g}); "
                "lower train.lr, set train.grad_clip, or change the model's params"
            )
        state.epoch = epoch
        state.history.append({"epoch": epoch, **means})
        on_epoch(state, means)


def mode_probe(model: GenerativeModel, spec: DataSpec, *, n: int = 2500, seed: int = 0) -> dict[str, float]:
    """Training health on a 2-D mixture: the mode metrics of ``n`` fresh samples (benchmarks.md §1).

    Empty for datasets without mixture means. Uses its own generator, so training's RNG stream is untouched.
    """
    if spec.kind != "points" or "means" not in spec.extras:
        return {}
    from components.evaluation.modes import mode_metrics

    with torch.no_grad():
        x = model.sample(n, generator=torch.Generator().manual_seed(seed))
    m = mode_metrics(x.cpu(), np.asarray(spec.extras["means"]), float(spec.extras["sigma"]))
    return {f"probe_{k}": float(m[k]) for k in ("modes_captured", "pct_high_quality", "reverse_kl")}


@torch.no_grad()
def evaluate_loss(model: GenerativeModel, loader: DataLoader, *, device: torch.device) -> dict[str, float]:
    """Mean objective terms on held-out data (``val_<term>``), all-reduced across ranks.

    Runs the unwrapped model in eval mode under a forked RNG, so the training run's random stream (and so
    its result) is the same with or without this evaluation.
    """
    from components.models.base import eval_mode

    sums: dict[str, Tensor] = {}
    n = 0
    devices = [device] if device.type == "cuda" else []
    with torch.random.fork_rng(devices=devices), eval_mode(model):
        for batch in loader:
            batch = tuple(t.to(device, non_blocking=True) for t in batch)
            for k, v in model(batch).items():
                sums[k] = sums.get(k, torch.zeros((), device=device)) + v.detach().float()
            n += 1
    return {f"val_{k}": v for k, v in _all_reduce_means(sums, n, device).items()}


def _all_reduce_means(sums: dict[str, Tensor], n: int, device: torch.device) -> dict[str, float]:
    keys = sorted(sums)
    vec = torch.stack([sums[k] for k in keys] + [torch.tensor(float(n), device=device)])
    if dist.is_available() and dist.is_initialized():
        dist.all_reduce(vec)
    total = vec[-1].clamp_min(1)
    return {k: (vec[i] / total).item() for i, k in enumerate(keys)}


def fit(
    model: GenerativeModel,
    data: tuple[Tensor, ...],
    cfg: TrainConfig,
    *,
    callback: EpochCallback | None = None,
    device: str | torch.device = "cpu",
) -> list[dict[str, float]]:
    """Train in-process (one worker, no DDP) through the same epoch loop as Ray workers; return the history."""
    torch.manual_seed(cfg.seed)
    device = torch.device(device)
    model.to(device)
    step = model.make_train_step(wrap=lambda m: m, optim=optim_config(cfg, device))
    state = LoopState()

    def on_epoch(s: LoopState, means: dict[str, float]) -> None:
        if callback is not None:
            callback(s.epoch, means)

    run_epochs(model, step, make_loader(data, cfg, rank=0, world=1), cfg, state, device=device, on_epoch=on_epoch)
    return state.history


# --------------------------------------------------------------------------------------------------------
# Checkpoints: plain tensors and primitives only, loadable with torch.load(weights_only=True).


def save_checkpoint(directory: str | Path, model: nn.Module, step: TrainStep, state: LoopState) -> None:
    torch.save(
        {
            "model": model.state_dict(),
            "optimizers": {k: o.state_dict() for k, o in step.optimizers.items()},
            "epoch": state.epoch,
            "history": state.history,
        },
        Path(directory) / "state.pt",
    )


def load_checkpoint(directory: str | Path, model: nn.Module, step: TrainStep | None = None) -> LoopState:
    blob = torch.load(Path(directory) / "state.pt", map_location="cpu", weights_only=True)
    model.load_state_dict(blob["model"])
    if step is not None:
        for k, o in step.optimizers.items():
            o.load_state_dict(blob["optimizers"][k])
    return LoopState(epoch=int(blob["epoch"]), history=list(blob["history"]))


# --------------------------------------------------------------------------------------------------------
# Ray Train worker.


def train_worker(config: dict[str, Any]) -> None:
    """``train_loop_per_worker`` for ``TorchTrainer``; ``config`` is built by ``components.training.driver``.

    Rank 0 logs per-epoch metrics to the MLflow run whose id is passed in, sends progress events to the
    driver's queue, and writes the checkpoint each epoch (all ranks call ``ray.train.report``: a barrier).
    On divergence every rank stops at the same step; rank 0 tells the driver, which fails the run.
    """
    import ray.train
    import ray.train.torch

    cfg = TrainConfig(**config["train"])
    ctx = ray.train.get_context()
    rank, world = ctx.get_world_rank(), ctx.get_world_size()
    torch.set_num_threads(max(1, int(config.get("threads_per_worker", 1))))
    torch.manual_seed(cfg.seed)  # identical initial weights on every rank (DDP also broadcasts rank 0's)
    device = ray.train.torch.get_device()

    spec = load_spec(config["data_root"], config["dataset"])
    data = data_tensors(spec, *load_split(config["data_root"], config["dataset"], "train"))
    model = build_model(config["family"], config["model"], spec).to(device)
    if config.get("init_weights") is not None:  # warm start (a checkpoint, when resuming, still wins below)
        from components.training.warm_start import load_weights

        load_weights(model, config["init_weights"])

    def wrap(m: nn.Module) -> nn.Module:
        if world == 1:
            return m
        return nn.parallel.DistributedDataParallel(m, device_ids=[device.index] if device.type == "cuda" else None)

    step = model.make_train_step(wrap=wrap, optim=optim_config(cfg, device))
    val_loader = None
    if config.get("val_split"):  # held-out metrics each epoch (hyperparameter search compares these)
        val = data_tensors(spec, *load_split(config["data_root"], config["dataset"], config["val_split"]))
        val_ds = TensorDataset(*val)
        val_loader = DataLoader(
            val_ds,
            batch_size=cfg.batch_size,
            sampler=DistributedSampler(val_ds, num_replicas=world, rank=rank, shuffle=False),
        )
    # Weights are identical (seeded above, and DDP broadcasts rank 0's); from here on each rank draws its own
    # noise (latents, timesteps, dropout), or two workers would repeat each other's samples.
    torch.manual_seed(cfg.seed + rank)
    state = LoopState()
    ckpt = ray.train.get_checkpoint()
    if ckpt is not None:
        with ckpt.as_directory() as d:
            state = load_checkpoint(d, model, step)
    queue = config.get("queue")
    logger = _MlflowEpochLogger(config.get("tracking_uri"), config.get("run_id")) if rank == 0 else None
    if logger is not None:
        logger.backfill(state.history)  # epochs checkpointed before a crash but not yet logged
        logger.resumed(state.epoch)
    if rank == 0 and queue is not None:
        queue.put({"event": "start", "epoch": state.epoch, "epochs": cfg.epochs, "steps": None, "pid": os.getpid()})

    def on_step(epoch: int, i: int) -> None:
        if rank == 0 and queue is not None and (i % 10 == 0):
            queue.put_nowait({"event": "step", "epoch": epoch, "step": i})

    def on_epoch(s: LoopState, means: dict[str, float]) -> None:
        if val_loader is not None:  # every rank: the means are all-reduced
            means = {**means, **evaluate_loss(model, val_loader, device=device)}
            s.history[-1].update(means)
        metrics = {**means, "epoch": s.epoch}
        if rank == 0:
            means = {**means, **mode_probe(model, spec, seed=cfg.seed)}  # 2-D data: modes captured so far
            with tempfile.TemporaryDirectory() as tmp:
                save_checkpoint(tmp, model, step, s)
                ray.train.report(metrics, checkpoint=ray.train.Checkpoint.from_directory(tmp))
            if logger is not None:  # after the checkpoint is persisted: a restart never logs an epoch twice
                logger.log(s.epoch, means)
            if queue is not None:
                queue.put({"event": "epoch", "epoch": s.epoch, "epochs": cfg.epochs, "metrics": means})
        else:
            ray.train.report(metrics, checkpoint=None)

    loader = make_loader(data, cfg, rank=rank, world=world)
    if rank == 0 and queue is not None:
        queue.put({"event": "steps", "steps": len(loader)})
    try:
        run_epochs(model, step, loader, cfg, state, device=device, on_epoch=on_epoch, on_step=on_step)
    except DivergenceError as e:
        if rank == 0 and queue is not None:
            queue.put({"event": "diverged", "message": str(e)})
        if logger is not None:
            logger.fail(str(e))
        return  # every rank returns: retrying a diverged run from its checkpoint would only diverge again
    if rank == 0 and queue is not None:
        queue.put({"event": "done", "epoch": state.epoch})


class _MlflowEpochLogger:
    """Logs per-epoch means to an existing MLflow run (rank 0 only), with step = epoch.

    Idempotent across restarts: an epoch already in the run is not logged again. (A worker killed after its
    report but before Ray registered the checkpoint makes the restarted group replay that epoch; the run then
    keeps the first values and records the replay in the tag ``train.replayed_epochs``.)
    """

    def __init__(self, tracking_uri: str | None, run_id: str | None):
        self.run_id = run_id
        self.logged: set[int] = set()
        self.replayed: list[int] = []
        if run_id:
            os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
            from mlflow.tracking import MlflowClient

            self.client = MlflowClient(tracking_uri=tracking_uri)
            self.logged = {m.step for m in self.client.get_metric_history(run_id, "train/loss")}

    def resumed(self, epoch: int) -> None:
        """Record a start from a checkpoint (tag ``train.resumed_from``: the epochs resumed from, in order)."""
        if not self.run_id or epoch == 0:
            return
        tags = self.client.get_run(self.run_id).data.tags
        previous = tags.get("train.resumed_from")
        self.client.set_tag(self.run_id, "train.resumed_from", f"{previous},{epoch}" if previous else str(epoch))

    def fail(self, message: str) -> None:
        if self.run_id:
            self.client.set_tag(self.run_id, "failure", message)

    def backfill(self, history: list[dict[str, float]]) -> None:
        """Log checkpointed epochs that the MLflow run does not have yet (a crash between the two)."""
        for h in history:
            if int(h["epoch"]) not in self.logged:
                self.log(int(h["epoch"]), {k: v for k, v in h.items() if k != "epoch"})

    def log(self, epoch: int, means: dict[str, float]) -> None:
        if not self.run_id:
            return
        if epoch in self.logged:
            self.replayed.append(epoch)
            self.client.set_tag(self.run_id, "train.replayed_epochs", ",".join(map(str, self.replayed)))
            return
        from mlflow.entities import Metric

        ts = int(time.time() * 1000)
        self.client.log_batch(
            self.run_id, metrics=[Metric(_metric_name(k), float(v), ts, epoch) for k, v in sorted(means.items())]
        )
        self.logged.add(epoch)


def _metric_name(key: str) -> str:
    """``loss`` -> ``train/loss``; ``val_loss`` -> ``val/loss``."""
    return f"val/{key[4:]}" if key.startswith("val_") else f"train/{key}"
