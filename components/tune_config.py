"""``experiments.<name>.tune``: the schema of a Ray Tune search (``genfoundry tune``), parsed with params.yaml.

The search's cross-checks against its experiment (every value it may draw is a valid setting) live with the
experiment's schema in :mod:`components.config`.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field, PositiveFloat, PositiveInt, model_validator

from components.schema import Strict

#: ``train`` keys a search may vary; the others shape the search itself (epochs: ``tune.epochs``; workers:
#: ``tune.workers_per_trial``) or would only select noise (seed).
TUNABLE_TRAIN_KEYS = ("batch_size", "lr", "weight_decay", "betas", "grad_clip")


class Distribution(Strict):
    """One hyperparameter's search domain: exactly one of these keys.

    ``choice``/``grid`` list the values (grid: every value is tried, ``num_samples`` times each);
    ``uniform``/``loguniform`` are [low, high] floats; ``randint`` is [low, high] integers, both included.
    """

    choice: list[Any] | None = Field(None, min_length=1)
    grid: list[Any] | None = Field(None, min_length=1)
    uniform: tuple[float, float] | None = None
    loguniform: tuple[PositiveFloat, PositiveFloat] | None = None
    randint: tuple[int, int] | None = None

    @model_validator(mode="after")
    def _exactly_one(self) -> Distribution:
        given = [k for k in type(self).model_fields if getattr(self, k) is not None]
        if len(given) != 1:
            raise ValueError(
                f"expected exactly one of {list(type(self).model_fields)} per hyperparameter, got {given or 'none'}"
            )
        kind = given[0]
        if kind in ("uniform", "loguniform", "randint"):
            lo, hi = getattr(self, kind)
            if (lo > hi) if kind == "randint" else (lo >= hi):
                rule = "low <= high" if kind == "randint" else "low < high"
                raise ValueError(f"expected {kind} [low, high] with {rule}, got [{lo}, {hi}]")
        return self

    @property
    def kind(self) -> str:
        return next(k for k in type(self).model_fields if getattr(self, k) is not None)

    def candidates(self) -> list[Any]:
        """Values that must all be valid settings: every listed value, or both ends of a range."""
        value = getattr(self, self.kind)
        return list(value)


class TuneConfig(Strict):
    """``experiments.<name>.tune``: a Ray Tune search over the family's hyperparameters (``genfoundry tune``)."""

    space: dict[str, Distribution] = Field(
        ..., description="'train.<key>' or 'model.<key>' -> distribution, e.g. {'train.lr': {loguniform: [1e-4, 1e-2]}}"
    )
    num_samples: PositiveInt = 8
    max_concurrent: PositiveInt | None = Field(None, description="trials at once (None: as many as the cluster fits)")
    metric: str = Field("val_loss", description="per-epoch metric ASHA compares: loss, val_loss, val_<term>, ...")
    mode: Literal["min", "max"] = "min"
    epochs: PositiveInt | None = Field(None, description="epochs of a trial that is never stopped (None: train.epochs)")
    grace_period: PositiveInt = Field(1, description="ASHA: epochs every trial runs before it can be stopped")
    reduction_factor: float = Field(2.0, gt=1, description="ASHA: 1/reduction_factor of the trials go on per rung")
    workers_per_trial: PositiveInt = 1
    seed: int = Field(0, description="seed of the random search (which configurations are drawn)")

    # Messages start at "expected": format_validation_error puts the section's key in front.
    @model_validator(mode="after")
    def _keys(self) -> TuneConfig:
        if not self.space:
            raise ValueError(
                "expected at least one hyperparameter in space, got none; "
                "add e.g. 'train.lr': {loguniform: [1.0e-4, 1.0e-2]}"
            )
        for name in self.space:
            section, _, key = name.partition(".")
            if section not in ("train", "model") or not key:
                raise ValueError(f"expected space keys 'train.<key>' or 'model.<key>', got {name!r}")
            if section == "train" and key not in TUNABLE_TRAIN_KEYS:
                raise ValueError(
                    f"expected space keys among the tunable train keys {list(TUNABLE_TRAIN_KEYS)}, got {name!r} "
                    "(trial length: tune.epochs; workers: tune.workers_per_trial)"
                )
        if self.epochs is not None and self.grace_period > self.epochs:
            raise ValueError(f"expected grace_period <= epochs = {self.epochs}, got {self.grace_period}")
        return self
