"""Checkpoints: the model, its optimizers and the loop state as plain tensors and primitives, loadable with
``torch.load(weights_only=True)`` (nothing in a checkpoint runs as code).

Ray Train persists the checkpoint folders of a Ray run itself (``storage_path/<run name>``); the in-process path
keeps its own in :class:`LocalCheckpoints`, so both resume the same way.
"""

from __future__ import annotations

import re
import shutil
from pathlib import Path
from typing import Any

import torch
from torch import nn

from components.io import atomic_path
from components.models.base import TrainStep
from components.training.loop import LoopState

STATE_FILE = "state.pt"


def save_checkpoint(directory: str | Path, model: nn.Module, step: TrainStep, state: LoopState) -> None:
    torch.save(
        {
            "model": model.state_dict(),
            "optimizers": {k: o.state_dict() for k, o in step.optimizers.items()},
            "epoch": state.epoch,
            "history": state.history,
        },
        Path(directory) / STATE_FILE,
    )


def load_checkpoint(directory: str | Path, model: nn.Module, step: TrainStep | None = None) -> LoopState:
    blob = torch.load(Path(directory) / STATE_FILE, map_location="cpu", weights_only=True)
    model.load_state_dict(blob["model"])
    if step is not None:
        for k, o in step.optimizers.items():
            o.load_state_dict(blob["optimizers"][k])
    return LoopState(epoch=int(blob["epoch"]), history=list(blob["history"]))


class LocalCheckpoints:
    """The in-process path's checkpoints: ``<root>/epoch_<N>/state.pt``, each written atomically, the newest
    ``keep`` kept. A :class:`~components.training.session.Reporter` like Ray Train's, on the local disk."""

    _NAME = re.compile(r"^epoch_(\d+)$")

    def __init__(self, root: str | Path, *, keep: int = 2):
        self.root = Path(root)
        self.keep = keep

    def _epochs(self) -> list[tuple[int, Path]]:
        if not self.root.is_dir():
            return []
        found = [(int(m.group(1)), p) for p in self.root.iterdir() if (m := self._NAME.match(p.name))]
        return sorted(f for f in found if (f[1] / STATE_FILE).exists())

    def latest(self) -> Path | None:
        """The newest complete checkpoint folder, or None."""
        epochs = self._epochs()
        return epochs[-1][1] if epochs else None

    def report(self, metrics: dict[str, Any], checkpoint: Path | None) -> None:
        """Keep ``checkpoint`` (a folder holding ``state.pt``) as the checkpoint of ``metrics['epoch']``."""
        if checkpoint is None:
            return
        with atomic_path(self.root / f"epoch_{int(metrics['epoch']):06d}") as tmp:
            shutil.copytree(checkpoint, tmp)
        for _, old in self._epochs()[: -self.keep]:
            shutil.rmtree(old, ignore_errors=True)
