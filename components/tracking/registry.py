"""MLflow Model Registry: the aliases of a registered model and the promotion decision.

Logging a trained experiment as a new pyfunc sampler version is :mod:`components.tracking.publish`. Aliases,
not stages: a new version becomes ``challenger``; it becomes ``champion`` only if its audit passed and it beats
the current champion on the experiment's selection metric, and the old champion then keeps alias
``previous``. Re-registering identical weights and results is a no-op.
"""

from __future__ import annotations

import hashlib
import math
from dataclasses import asdict, dataclass
from typing import Any

from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient

from components.errors import GenfoundryError

CHAMPION, CHALLENGER, PREVIOUS = "champion", "challenger", "previous"


@dataclass(frozen=True)
class Decision:
    name: str
    version: str
    promoted: bool
    reason: str
    aliases: tuple[str, ...]
    metric: str
    value: float | None
    champion_before: str | None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def model_name(prefix: str, experiment: str) -> str:
    return f"{prefix}-{experiment}"


def fingerprint(*parts: str) -> str:
    return hashlib.sha256("\n".join(parts).encode()).hexdigest()[:16]


def find_version(c: MlflowClient, name: str, fp: str) -> str | None:
    """The version of ``name`` registered with this fingerprint (weights + results), if any."""
    try:
        versions = c.search_model_versions(f"name = '{name}' and tags.fingerprint = '{fp}'")
    except MlflowException:
        return None
    return versions[0].version if versions else None


def alias_version(c: MlflowClient, name: str, alias: str) -> str | None:
    try:
        return c.get_model_version_by_alias(name, alias).version
    except MlflowException:
        return None


def version_metric(c: MlflowClient, name: str, version: str, metric: str) -> float | None:
    v = c.get_model_version(name, version).tags.get(f"metric.{metric}")
    return float(v) if v is not None else None


def better(new: float, old: float | None, mode: str) -> bool:
    if old is None or not math.isfinite(old):
        return True
    return new < old if mode == "min" else new > old


def decide(
    c: MlflowClient,
    name: str,
    version: str,
    *,
    audit_passed: bool,
    audit_reason: str,
    metric: str,
    mode: str,
    value: float | None,
) -> Decision:
    """Set aliases for a freshly registered (or re-found) version and say why."""
    champion = alias_version(c, name, CHAMPION)
    if champion == version:
        return Decision(name, version, False, "already champion", (CHAMPION,), metric, value, champion)
    c.set_registered_model_alias(name, CHALLENGER, version)
    if not audit_passed:
        kept = f"kept champion v{champion}" if champion else "no champion yet"
        reason = f"{kept}: audit failed ({audit_reason})"
        c.set_model_version_tag(name, version, "promotion", "blocked: " + audit_reason)
        return Decision(name, version, False, reason, (CHALLENGER,), metric, value, champion)
    if value is None or not math.isfinite(value):
        return Decision(name, version, False, f"no finite {metric} to compare", (CHALLENGER,), metric, value, champion)
    old = version_metric(c, name, champion, metric) if champion else None
    if not better(value, old, mode):
        reason = f"kept champion v{champion}: {metric} {value:.4g} does not beat {old:.4g} ({mode})"
        return Decision(name, version, False, reason, (CHALLENGER,), metric, value, champion)
    promote(c, name, version)
    reason = "first champion" if champion is None else f"{metric} {value:.4g} beats champion {champion} ({old:.4g})"
    return Decision(name, version, True, reason, (CHAMPION, CHALLENGER), metric, value, champion)


def check_version(c: MlflowClient, name: str, version: str) -> dict[str, str]:
    """The tags of ``name`` v``version``; a one-line error naming the versions there are if it does not exist."""
    try:
        return dict(c.get_model_version(name, str(version)).tags)
    except MlflowException:
        try:
            known = sorted((v.version for v in c.search_model_versions(f"name = '{name}'")), key=int)
        except MlflowException:
            known = []
        if not known:
            raise GenfoundryError(f"{name}: expected a registered model, got none of that name") from None
        raise GenfoundryError(f"{name}: expected one of versions {known}, got {version!r}") from None


def promote(c: MlflowClient, name: str, version: str) -> str | None:
    """``champion`` ← ``version``; the old champion keeps alias ``previous``. Returns the old champion.

    All or nothing: the version is checked before any alias moves."""
    check_version(c, name, version)
    old = alias_version(c, name, CHAMPION)
    if old == version:
        return old
    if old is not None:
        c.set_registered_model_alias(name, PREVIOUS, old)
    c.set_registered_model_alias(name, CHAMPION, version)
    return old


def rollback(c: MlflowClient, name: str) -> tuple[str, str]:
    """``champion`` ← ``previous``; the demoted version keeps alias ``challenger``. Returns (demoted, restored)."""
    prev = alias_version(c, name, PREVIOUS)
    cur = alias_version(c, name, CHAMPION)
    if prev is None or cur is None:
        raise MlflowException(f"cannot roll back {name}: it needs both a champion and a previous version")
    c.set_registered_model_alias(name, CHAMPION, prev)
    c.set_registered_model_alias(name, CHALLENGER, cur)
    c.delete_registered_model_alias(name, PREVIOUS)
    return cur, prev
