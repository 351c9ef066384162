"""The training loop every family shares: data-parallel epochs, the learning-rate schedule, divergence checks.

:func:`run_epochs` is the loop; :mod:`components.training.session` wraps it with what a pipeline run adds
(checkpoints, held-out metrics, the mode probe, per-epoch logging) for both the Ray worker and the in-process
path. :func:`fit` runs the bare loop in-process (no Ray, no DDP, no checkpoints) for tests and benchmarks.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

import torch
import torch.distributed as dist
from torch import Tensor

from components.config import TrainConfig
from components.errors import DivergenceError
from components.models.base import GenerativeModel, OptimConfig, TrainStep, eval_mode
from components.training.ingest import Batches, tensor_batches
from components.training.ingest import data_tensors as data_tensors  # re-exported: the tools' entry point

EpochCallback = Callable[[int, dict[str, float]], None]
StepCallback = Callable[[int, int], None]


@dataclass
class LoopState:
    """What a checkpoint holds besides the weights."""

    epoch: int = 0  # epochs completed
    history: list[dict[str, float]] = field(default_factory=list)


def optim_config(cfg: TrainConfig, device: torch.device) -> OptimConfig:
    amp = cfg.amp and device.type == "cuda"
    return OptimConfig(lr=cfg.lr, weight_decay=cfg.weight_decay, betas=cfg.betas, grad_clip=cfg.grad_clip, amp=amp)


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
    loader: Batches,
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
        loader.set_epoch(epoch)
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
                        f"train: expected finite gradients, got {k} = {v.item()} at epoch {epoch}, step {i} "
                        "(training diverged); lower train.lr, set train.grad_clip, or change the model's params"
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
                f"train: expected finite epoch means with |loss| <= train.max_loss = {cfg.max_loss:g}, "
                f"got mean {k} = {v:.4g} at epoch {epoch} (training diverged); "
                "lower train.lr, set train.grad_clip, or change the model's params"
            )
        state.epoch = epoch
        state.history.append({"epoch": epoch, **means})
        on_epoch(state, means)


@torch.no_grad()
def evaluate_loss(
    model: GenerativeModel, loader: Iterable[tuple[Tensor, ...]], *, device: torch.device
) -> dict[str, float]:
    """Mean objective terms on held-out data (``val_<term>``), all-reduced across ranks.

    Runs the unwrapped model in eval mode under a forked RNG, so the training run's random stream (and so
    its result) is the same with or without this evaluation.
    """
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

    loader = tensor_batches(data, cfg, train=True, rank=0, world=1)
    run_epochs(model, step, loader, cfg, state, device=device, on_epoch=on_epoch)
    return state.history
