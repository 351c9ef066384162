"""The parent of a transfer-learning run (``train.init_from``): its weights, and the lineage that the MLflow run,
the registered version and the model card record.

A parent is a registered model (``NAME@ALIAS`` or ``NAME/VERSION``: downloaded and checked by
:func:`components.tracking.loading.registered_weights`, never unpickled) or another experiment of the same
params.yaml (its ``models/<experiment>/``, which its train stage wrote). Either way the weights are safetensors
bytes and the parent must be of the child's family; anything else is one line, before anything trains.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from components.errors import GenfoundryError
from components.models.store import WEIGHTS, load_info

TAG_PREFIX = "parent."  # run and model-version tags: parent.model, parent.version, parent.weights_sha256, ...


@dataclass(frozen=True)
class Parent:
    kind: str  # "registered" or "experiment"
    model: str  # the registered model's name, or the experiment
    version: str | None  # the registered version (an alias resolved); None for an experiment
    weights_sha256: str
    family: str
    dataset: str | None
    run_id: str | None  # the parent's MLflow training run
    weights: bytes

    def record(self) -> dict[str, Any]:
        """The lineage as JSON (config.json's ``init_from``, train.json, registry.json)."""
        return {
            "kind": self.kind,
            "model": self.model,
            "version": self.version,
            "weights_sha256": self.weights_sha256,
            "family": self.family,
            "dataset": self.dataset,
            "run_id": self.run_id,
        }

    def tags(self) -> dict[str, str]:
        """MLflow tags of the child's run and registered version."""
        return {f"{TAG_PREFIX}{k}": str(v) for k, v in self.record().items() if v is not None}

    def label(self) -> str:
        """``NAME vVERSION`` or ``experiment NAME`` (the leaderboard, the console)."""
        return f"{self.model} v{self.version}" if self.version else f"experiment {self.model}"


def lineage_tags(info: dict[str, Any]) -> dict[str, str]:
    """The ``parent.*`` tags of a trained model's ``config.json`` lineage (none without ``init_from``)."""
    lineage = info.get("init_from") or {}
    keys = ("kind", "model", "version", "weights_sha256", "run_id")
    return {f"{TAG_PREFIX}{k}": str(lineage[k]) for k in keys if lineage.get(k) is not None}


def check_family(parent: Parent, family: str, *, where: str) -> None:
    """``where``: the child in params.yaml (``experiments.<key>`` or ``finetune.<key>``)."""
    if parent.family != family:
        raise GenfoundryError(
            f"{where}.train.init_from: expected a {family} model, got {parent.label()} of family "
            f"{parent.family!r}; nothing trained"
        )


def from_experiment(models_root: str | Path, experiment: str, *, where: str) -> Parent:
    """The trained model of ``experiment`` in ``models_root/<experiment>/``; ``where``: the child in params.yaml."""
    directory = Path(models_root) / experiment
    if not (directory / WEIGHTS).is_file():
        raise GenfoundryError(
            f"{where}.train.init_from: expected the trained model of {experiment!r} in {directory}, got "
            f"none; train it first (`dvc repro` does, before the child) (nothing trained)"
        )
    return _parent("experiment", experiment, None, load_info(directory), (directory / WEIGHTS).read_bytes())


def _parent(kind: str, model: str, version: str | None, info: dict, data: bytes) -> Parent:
    """A parent from its config.json and weights bytes (hashed here)."""
    return Parent(
        kind=kind,
        model=model,
        version=version,
        weights_sha256=hashlib.sha256(data).hexdigest(),
        family=str(info.get("family")),
        dataset=info.get("dataset"),
        run_id=info.get("run_id"),
        weights=data,
    )


def resolve_version(source: str) -> tuple[str, str]:
    """``(name, version)`` of ``NAME@ALIAS`` or ``NAME/VERSION`` in the registry; one line when there is none."""
    from mlflow.exceptions import MlflowException
    from mlflow.tracking import MlflowClient

    from components.tracking import registry

    c = MlflowClient()
    if "@" in source:
        name, alias = source.split("@", 1)
        try:
            return name, str(c.get_model_version_by_alias(name, alias).version)
        except MlflowException:
            try:
                c.get_registered_model(name)
            except MlflowException:
                raise GenfoundryError(
                    f"train.init_from: expected a registered model, got {source!r}: there is no model {name!r}"
                ) from None
            raise GenfoundryError(f"train.init_from: expected a registered model, got {source!r}: {name} has no "
                                  f"alias {alias!r}") from None  # fmt: skip
    name, version = source.split("/", 1)
    try:
        registry.check_version(c, name, version)
    except GenfoundryError as e:
        raise GenfoundryError(f"train.init_from {source!r}: {e}") from None
    return name, str(version)


def from_registry(source: str) -> Parent:
    """The registered version ``source`` names (an alias resolved to its version, recorded as such)."""
    from components.tracking.loading import registered_weights

    name, version = resolve_version(source)
    _, info, data = registered_weights(f"{name}/{version}")
    return _parent("registered", name, version, info, data)
