"""Transfer learning (``train.init_from``): which of a parent's tensors load into a new model, which stay frozen,
and the learning rate of the loaded part.

The rules, pure functions of the two state dicts:

- a tensor loads when the parent has one of the same name and shape (``load`` prefixes narrow the candidates);
  under ``strict`` every tensor of the new model must load, or one line lists the ones that do not;
- tensors that share storage (GPT's tied embedding and output layer) count as one: the parent's safetensors
  file holds one name for them (``safetensors.torch.save_model`` drops the aliases);
- ``freeze`` prefixes select loaded parameters that get ``requires_grad = False`` (an optimizer then never
  touches them: their values stay bit-identical); a prefix that matches no loaded parameter is an error;
- ``lr_mult`` scales the learning rate of the loaded, trainable parameters (a second optimizer param group).

A prefix matches a name at a dot boundary: ``net.blocks.1`` matches ``net.blocks.1.attn.c_attn.weight``, not
``net.blocks.10...``.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import Tensor, nn

from components.errors import ConfigError
from components.models.base import TrainStep

MAX_LISTED = 8  # names listed in one error line


@dataclass(frozen=True)
class TransferPlan:
    """What loads: ``loaded`` names (of the new model's state dict), ``skipped`` name -> why not, ``frozen``."""

    loaded: tuple[str, ...]
    skipped: dict[str, str] = field(default_factory=dict)
    frozen: tuple[str, ...] = ()

    def summary(self) -> dict[str, object]:
        """A JSON-able record (config.json, train.json)."""
        return {
            "loaded": len(self.loaded),
            "skipped": dict(sorted(self.skipped.items())),
            "frozen": list(self.frozen),
        }


def matches(name: str, prefix: str) -> bool:
    """``prefix`` names ``name`` or one of the modules that hold it (a dot boundary)."""
    return name == prefix or name.startswith(prefix.rstrip(".") + ".")


def _listed(names: list[str]) -> str:
    more = f" (and {len(names) - MAX_LISTED} more)" if len(names) > MAX_LISTED else ""
    return ", ".join(names[:MAX_LISTED]) + more


def alias_groups(state: dict[str, Tensor]) -> list[list[str]]:
    """Names of a state dict grouped by the storage they share (one group per distinct tensor)."""
    groups: dict[tuple[int, int, tuple[int, ...]], list[str]] = {}
    for name, t in state.items():
        key = (t.untyped_storage().data_ptr(), t.storage_offset(), tuple(t.shape)) if t.numel() else (id(t), 0, ())
        groups.setdefault(key, []).append(name)
    return list(groups.values())


def plan_transfer(
    target: dict[str, Tensor],
    source: dict[str, Tensor],
    *,
    strict: bool = False,
    load: tuple[str, ...] = (),
    freeze: tuple[str, ...] = (),
    trainable: set[str] | None = None,
) -> TransferPlan:
    """Which tensors of ``target`` (the new model's state dict) take ``source``'s values.

    ``trainable`` names the target's parameters (the rest are buffers); ``freeze`` may name only loaded
    parameters. Raises :class:`ConfigError` (one line) for a strict mismatch, a ``load`` or ``freeze`` prefix
    that matches nothing.
    """
    for prefix in load:
        if not any(matches(n, prefix) for n in target):
            raise ConfigError(
                f"train.init_from.load: expected a name prefix of the model's tensors "
                f"(e.g. {_listed(sorted(target)[:3])}), got {prefix!r}, which matches none"
            )
    loaded: list[str] = []
    skipped: dict[str, str] = {}
    for group in alias_groups(target):
        wanted = [n for n in group if not load or any(matches(n, p) for p in load)]
        if not wanted:
            for n in group:
                skipped[n] = "not in train.init_from.load"
            continue
        present = [n for n in group if n in source]
        if not present:
            for n in group:
                skipped[n] = "not in the parent"
            continue
        src = source[present[0]]
        if tuple(src.shape) != tuple(target[group[0]].shape) or src.dtype != target[group[0]].dtype:
            for n in group:
                skipped[n] = f"shape {list(src.shape)} in the parent, {list(target[group[0]].shape)} here"
            continue
        loaded += sorted(group)
    if strict:
        unused = sorted(set(source) - set(target)) if not load else []
        if skipped or unused:
            bad = [f"{n} ({why})" for n, why in sorted(skipped.items())] + [f"{n} (not in this model)" for n in unused]
            raise ConfigError(
                f"train.init_from.strict: expected every tensor to load, got {len(bad)} that do not: {_listed(bad)}"
            )
    frozen: list[str] = []
    params = trainable if trainable is not None else set(target)
    for prefix in freeze:
        hit = [n for n in loaded if n in params and matches(n, prefix)]
        if not hit:
            raise ConfigError(
                f"train.init_from.freeze: expected a name prefix of loaded parameters, got {prefix!r}, which matches "
                f"none (loaded: {_listed(sorted(n for n in loaded if n in params))})"
            )
        frozen += [n for n in hit if n not in frozen]
    return TransferPlan(tuple(loaded), skipped, tuple(sorted(frozen)))


def read_weights(data: bytes) -> dict[str, Tensor]:
    """Tensors of safetensors bytes (no pickle)."""
    from safetensors.torch import load

    return load(data)


def plan_for(model: nn.Module, source: dict[str, Tensor], **options: object) -> TransferPlan:
    """:func:`plan_transfer` for ``model``'s state dict and parameters."""
    names = {n for n, _ in model.named_parameters(remove_duplicate=False)}
    return plan_transfer(model.state_dict(keep_vars=True), source, trainable=names, **options)  # type: ignore[arg-type]


def apply_transfer(model: nn.Module, source: dict[str, Tensor], plan: TransferPlan) -> None:
    """Copy the planned tensors into ``model`` and freeze the planned parameters."""
    state = model.state_dict(keep_vars=True)
    with torch.no_grad():
        for group in alias_groups({n: state[n] for n in plan.loaded}):
            src = next(source[n] for n in group if n in source)
            state[group[0]].copy_(src.to(state[group[0]].device))
    frozen = set(plan.frozen)
    for name, p in model.named_parameters(remove_duplicate=False):
        if name in frozen:
            p.requires_grad_(False)


def scale_loaded_lr(step: TrainStep, model: nn.Module, plan: TransferPlan, lr_mult: float) -> None:
    """Split each optimizer param group into the new parameters and the loaded ones, whose lr is ``lr_mult``
    times the group's. Call before the first step (and before loading a checkpoint's optimizer state)."""
    if lr_mult == 1.0:
        return
    loaded = {id(p) for n, p in model.named_parameters(remove_duplicate=False) if n in set(plan.loaded)}
    for opt in step.optimizers.values():
        groups, opt.param_groups = opt.param_groups, []
        for g in groups:
            options = {k: v for k, v in g.items() if k != "params"}
            rest = [p for p in g["params"] if id(p) not in loaded]
            ours = [p for p in g["params"] if id(p) in loaded]
            if rest:
                opt.add_param_group({**options, "params": rest})
            if ours:
                opt.add_param_group({**options, "params": ours, "lr": options["lr"] * lr_mult})
