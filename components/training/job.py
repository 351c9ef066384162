"""What one training run is: a frozen :class:`TrainJob`, handed as it is to every Ray worker (or run in-process).

The job carries the experiment's already-parsed configs (``TrainConfig`` and the family's ``Config``), never a
re-flattened dict. All paths are absolute: workers may run on other nodes. Per-epoch logging is injected as an
:class:`EpochLog` (``components.tracking.epochs`` provides the MLflow one), so training imports no tracking code.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from components.config import TrainConfig
from components.errors import ConfigError
from components.models.configs import FamilyConfig
from components.models.family import get_family

EventSink = Callable[[dict[str, Any]], None]


class EpochLog(Protocol):
    """Where rank 0 records each finished epoch. Must pickle (it travels to the workers inside the job)."""

    def open(self) -> None:
        """Connect (called once, on rank 0, before any other method)."""

    def backfill(self, history: list[dict[str, float]]) -> None:
        """Record checkpointed epochs the log does not have yet (a crash between checkpoint and log)."""

    def resumed(self, epoch: int) -> None:
        """Record a start from the checkpoint of ``epoch`` (0: a fresh start)."""

    def log(self, epoch: int, means: dict[str, float]) -> None:
        """Record one epoch's all-reduced means (idempotent: an epoch already recorded is not recorded again)."""

    def fail(self, message: str) -> None:
        """Record why the run stopped (divergence)."""


@dataclass(frozen=True)
class Transfer:
    """Transfer learning: the parent's weights and how to use them (``train.init_from``)."""

    weights: bytes  # the parent's model.safetensors
    strict: bool = False  # every parameter must load
    load: tuple[str, ...] = ()  # name prefixes to load (empty: all that fit)
    freeze: tuple[str, ...] = ()  # name prefixes of loaded parameters kept fixed
    lr_mult: float = 1.0  # learning-rate multiplier of the loaded, trainable parameters


@dataclass(frozen=True)
class TrainJob:
    """Everything a training run needs."""

    key: str  # the experiment
    family: str
    model: FamilyConfig  # the family's parsed hyperparameters
    dataset: str
    data_root: str
    train: TrainConfig
    run_name: str  # Ray run name (a rerun with the same name and storage path resumes)
    storage_path: str
    epoch_log: EpochLog | None = None
    init_weights: bytes | None = None  # warm start: safetensors bytes (a checkpoint, when resuming, still wins)
    val_split: str | None = None  # held-out ``val_*`` metrics each epoch (hyperparameter search compares these)
    transfer: Transfer | None = None  # init from a parent model (a checkpoint, when resuming, still wins)

    def __post_init__(self) -> None:
        expected = get_family(self.family).config
        if not isinstance(self.model, expected):
            raise ConfigError(f"TrainJob.model: expected a parsed {expected.__name__}, got {type(self.model).__name__}")


def run_identity(*, experiment: str, family: str, model: dict[str, Any], train: TrainConfig, data_sha256: str,
                 init_sha256: str | None = None) -> tuple[str, str]:  # fmt: skip
    """``(params_hash, run_key)`` of a training run: a hash of everything that shapes the weights (family, the
    code of its model and of the loop, the model params as written, train params, the data, the initial
    weights), and ``<experiment>-<hash>``. The Ray
    run name and the MLflow run are keyed by it, so a rerun of the same configuration resumes the same run."""
    from components.io import stable_hash

    shaping = {
        "family": family,
        "code": code_sha256(family),  # an edited objective or loop must not resume the old code's checkpoint
        "model": model,
        "train": train.shaping_dump(),
        "data": data_sha256,
        **({"init": init_sha256} if init_sha256 else {}),  # a resume keeps its own init
    }
    key_hash = stable_hash(shaping)
    return key_hash, f"{experiment}-{key_hash}"


def code_sha256(family: str) -> str:
    """sha256 of the sources that shape a family's weights: ``components/models/{base,<family>}.py`` and
    every module of ``components/training`` (what dvc.yaml's train stage lists for them)."""
    import hashlib

    models = Path(__file__).resolve().parents[1] / "models"
    files = [models / "base.py", models / f"{family}.py", *sorted(Path(__file__).resolve().parent.glob("*.py"))]
    h = hashlib.sha256()
    for f in files:
        h.update(f.name.encode() + b"\0" + f.read_bytes() + b"\0")
    return h.hexdigest()
