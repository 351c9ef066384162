"""The contract every generative family implements, and the default single-optimizer training step.

A family module (``components/models/<family>.py``) defines:

- its hyperparameters: a pydantic model in :mod:`components.models.configs` (torch-free; unknown keys are
  errors), named in the family's record in :mod:`components.models.family`;
- networks (plain ``nn.Module``s) separate from the objective;
- the objective, a :class:`GenerativeModel` subclass: ``forward(batch)`` returns a dict with the scalar
  ``"loss"`` plus any named terms to log; ``sample(n, generator=...)`` draws samples;
- ``build(config: Config, spec: DataSpec) -> GenerativeModel``.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, ClassVar

import torch
from pydantic import BaseModel, ConfigDict
from torch import Tensor, nn

from components.data.spec import DataSpec
from components.errors import ConfigError
from components.models.configs import FamilyConfig

Batch = tuple[Tensor, ...]
Wrap = Callable[[nn.Module], nn.Module]


class OptimConfig(BaseModel):
    """What the training loop tells a family about optimisation (from ``train`` params)."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    lr: float
    weight_decay: float = 0.0
    betas: tuple[float, float] = (0.9, 0.999)
    grad_clip: float | None = None
    amp: bool = False  # bf16 autocast of the forward pass (the loop sets it only on CUDA)


class TrainStep:
    """One optimisation step. ``__call__(batch)`` returns detached scalars to log (losses, grad norms).

    ``optimizers`` are checkpointed by the loop. Every value whose key starts with ``grad_norm`` must be
    computed after the data-parallel all-reduce, so that it is identical on every rank: the loop stops the
    run on the first non-finite one, and all ranks stop at the same step.
    """

    def __init__(self, fn: Callable[[Batch], dict[str, Tensor]], optimizers: dict[str, torch.optim.Optimizer]):
        self._fn = fn
        self.optimizers = optimizers

    def __call__(self, batch: Batch) -> dict[str, Tensor]:
        return self._fn(batch)


class GenerativeModel(nn.Module, ABC):
    """A family's objective wrapped around its network(s)."""

    family: ClassVar[str]
    #: sampler options ``sample`` accepts, with defaults: they become the registered model's params schema
    sample_params: ClassVar[dict[str, Any]] = {}
    #: per-sample attributes (``DataSpec.attributes``) the model reads: its batches are (x, y, *those ids)
    batch_attributes: tuple[str, ...] = ()

    def __init__(self, *, spec: DataSpec, config: FamilyConfig):
        super().__init__()
        self.spec = spec
        self.config = config

    def sampler_defaults(self) -> dict[str, Any]:
        """``sample_params`` with this model's own defaults (what a request that names no option gets)."""
        return dict(type(self).sample_params)

    @abstractmethod
    def forward(self, batch: Batch) -> dict[str, Tensor]:
        """Training objective on one batch: ``{"loss": scalar, <term>: scalar, ...}``."""

    @abstractmethod
    @torch.no_grad()
    def sample(self, n: int, *, generator: torch.Generator | None = None, **options: Any) -> Any:
        """``n`` samples: images (n, C, H, W) in [0, 1], points (n, D), or a list of strings for text."""

    def make_train_step(self, *, wrap: Wrap, optim: OptimConfig) -> TrainStep:
        """Default: one AdamW over all parameters, the whole objective wrapped for data parallelism."""
        net = wrap(self)
        opt = torch.optim.AdamW(self.parameters(), lr=optim.lr, weight_decay=optim.weight_decay, betas=optim.betas)

        def step(batch: Batch) -> dict[str, Tensor]:
            with autocast(batch[0], optim.amp):
                out = net(batch)
            opt.zero_grad(set_to_none=True)
            out["loss"].backward()
            norm = grad_norm(self.parameters(), optim.grad_clip)
            opt.step()
            self.after_step()
            return {**{k: v.detach() for k, v in out.items()}, "grad_norm": norm}

        return TrainStep(step, {"opt": opt})

    def after_step(self) -> None:
        """Hook after each optimiser step (e.g. an EMA update)."""

    def likelihood(self, batch: Batch) -> dict[str, Tensor]:
        """Per-batch likelihood terms where the family defines one (e.g. ``{"nll_bits_per_dim": ...}``)."""
        return {}

    def evaluation_figures(self, real: Batch, *, generator: torch.Generator) -> dict[str, Tensor]:
        """Family-specific pictures: name -> image batch (n, C, H, W) in [0, 1], drawn as a grid."""
        return {}

    def sampler_info(self) -> dict[str, Any]:
        """What sampling used (sampler, steps, EMA or raw weights): recorded in the protocol card."""
        return {}


def reject_options(family: str, unknown: dict[str, Any], accepted: tuple[str, ...] = ()) -> None:
    """Every family's ``sample`` ends its keyword list with ``**unknown`` and calls this: an option it does not
    take is a :class:`ConfigError` naming it (``evaluate.sampler`` and the registry's params reach ``sample``)."""
    if unknown:
        expected = f"options among {list(accepted)}" if accepted else "no sampler options"
        raise ConfigError(f"{family}.sample: expected {expected}, got {sorted(unknown)}")


@torch.no_grad()
def ema_update(ema: nn.Module, net: nn.Module, weight: Tensor) -> None:
    """θ_ema ← θ_ema + weight·(θ − θ_ema) for every parameter (weight 1: a copy); buffers are copied."""
    for p_ema, p in zip(ema.parameters(), net.parameters(), strict=True):
        p_ema.lerp_(p, weight.to(p.dtype))
    for b_ema, b in zip(ema.buffers(), net.buffers(), strict=True):
        b_ema.copy_(b)


@contextmanager
def eval_mode(module: nn.Module) -> Iterator[None]:
    """Put ``module`` in eval mode for the block (dropout/batch-norm off while sampling), then restore it."""
    was_training = module.training
    module.eval()
    try:
        yield
    finally:
        module.train(was_training)


def autocast(like: Tensor, enabled: bool) -> torch.autocast:
    """bf16 autocast on ``like``'s device when enabled (no GradScaler needed for bf16)."""
    return torch.autocast(like.device.type, dtype=torch.bfloat16, enabled=enabled)


def grad_norm(params: Any, clip: float | None) -> Tensor:
    """Total gradient 2-norm (clipping to ``clip`` if set); computed from the (already all-reduced) grads."""
    params = [p for p in params if p.grad is not None]
    if not params:
        return torch.zeros(())
    if clip:
        return torch.nn.utils.clip_grad_norm_(params, clip).detach()
    return torch.linalg.vector_norm(torch.stack([torch.linalg.vector_norm(p.grad.detach()) for p in params]))
