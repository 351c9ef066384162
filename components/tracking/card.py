"""The model card of a registered version (markdown): data and its hash, params, metrics, audit, protocol.

Logged with the version's MLflow run under ``model_card/v<version>/`` beside the sample grid it shows, and
linked from the version's description (:func:`components.tracking.publish.log_sampler`).
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from typing import Any

CARD_FILE = "model_card.md"


def _value(v: Any) -> str:
    if isinstance(v, float):
        return f"{v:.4g}" if math.isfinite(v) else str(v)
    if isinstance(v, dict | list):
        return f"`{json.dumps(v, sort_keys=True, default=str)}`"
    return str(v)


def _table(rows: Mapping[str, Any], head: tuple[str, str]) -> list[str]:
    if not rows:
        return ["(none)"]
    out = [f"| {head[0]} | {head[1]} |", "|---|---|"]
    out += [f"| {k} | {_value(v)} |".replace("\n", " ") for k, v in rows.items()]
    return out


def model_card(
    *,
    name: str,
    version: str,
    experiment: str,
    info: Mapping[str, Any],
    params: Mapping[str, Any],
    metrics: Mapping[str, Any],
    audit: Mapping[str, Any],
    git_commit: str,
    sample_image: str | None = None,
    sample_text: str | None = None,
) -> str:
    """The card as markdown. ``info`` is the trained model's ``config.json``; ``params`` the run's params."""
    verdict = "passed" if audit.get("passed") else "FAILED: " + "; ".join(audit.get("failed", []))
    scalars = {k: v for k, v in metrics.items() if isinstance(v, int | float) and not isinstance(v, bool)}
    lines = [
        f"# Model card: {name} v{version}",
        "",
        f"Experiment `{experiment}`: a `{info.get('family')}` model trained on `{info.get('dataset')}`; "
        f"MLflow run `{info.get('run_id')}`, git commit `{git_commit}`.",
        "",
        "## Data",
        "",
        f"- dataset: `{info.get('dataset')}` (prepared by the `prepare` stage, split by its seed)",
        f"- data sha256: `{info.get('data_sha256')}`",
        f"- shape / kind: `{json.dumps({k: info.get('spec', {}).get(k) for k in ('kind', 'shape')})}`",
        "",
        "## Weights",
        "",
        f"- safetensors (`model.safetensors` + `config.json`), never pickled; sha256 `{info.get('weights_sha256')}`",
        f"- params hash (family, model, train, data): `{info.get('params_hash')}`; epochs {info.get('epochs')}",
        "",
        *_lineage(info.get("init_from")),
        "## Params",
        "",
        *_table({"model": info.get("model", {}), **dict(sorted(params.items()))}, ("param", "value")),
        "",
        "## Metrics (evaluate stage)",
        "",
        *_table(scalars, ("metric", "value")),
        "",
        "## Audit",
        "",
        f"Verdict: **{verdict}**",
        "",
    ]
    gates = audit.get("gates", {})
    if gates:
        lines += ["| gate | value | threshold | passed |", "|---|---|---|---|"]
        lines += [
            f"| {g} | {_value(r['value'])} | {r['threshold']:g} | {'yes' if r['passed'] else 'NO'} |"
            for g, r in gates.items()
        ]
        lines.append("")
    shares = audit.get("shares_generated")
    if shares:
        train = audit.get("shares_train", {})
        lines += [f"Shares of `{audit.get('attribute')}` (generated / train):", ""]
        lines += ["| group | generated | train |", "|---|---|---|"]
        lines += [f"| {g} | {s:.3f} | {train.get(g, float('nan')):.3f} |" for g, s in shares.items()]
        lines.append("")
    lines += ["## Protocol", "", *_table(metrics.get("protocol", {}), ("field", "value")), "", "## Samples", ""]
    if sample_image:
        lines.append(f"![samples]({sample_image})")
    elif sample_text:
        lines += ["```", sample_text.strip(), "```"]
    else:
        lines.append("(no samples recorded)")
    return "\n".join(lines) + "\n"


def _lineage(lineage: Mapping[str, Any] | None) -> list[str]:
    """The card's lineage section: the parent model a transfer-learning run started from."""
    if not lineage:
        return []
    parent = f"`{lineage.get('model')}`" + (f" v{lineage['version']}" if lineage.get("version") else "")
    where = "registered model" if lineage.get("kind") == "registered" else "experiment"
    skipped = lineage.get("skipped") or {}
    lines = [
        "## Lineage",
        "",
        f"- initialised from {where} {parent} (a `{lineage.get('family')}` model trained on "
        f"`{lineage.get('dataset')}`, MLflow run `{lineage.get('run_id')}`)",
        f"- parent weights sha256 `{lineage.get('weights_sha256')}`",
        f"- tensors loaded: {lineage.get('loaded')}; not loaded: {', '.join(f'`{k}`' for k in skipped) or 'none'}",
        f"- frozen: {', '.join(f'`{k}`' for k in lineage.get('frozen') or []) or 'none'}",
        "",
    ]
    return lines


def card_summary(experiment: str, info: Mapping[str, Any], metrics: Mapping[str, Any], audit: Mapping[str, Any]) -> str:
    """The short card (markdown) of a version's description in the registry; the full card is linked below it."""
    rows = "\n".join(f"| {k} | {v:.4g} |" for k, v in metrics.items() if isinstance(v, float))
    lineage = info.get("init_from")
    parent = (
        f"Initialised from `{lineage.get('model')}`{' v' + str(lineage['version']) if lineage.get('version') else ''}"
        f" (weights sha256 `{str(lineage.get('weights_sha256'))[:16]}`).\n\n"
        if lineage
        else ""
    )
    return (
        f"# {experiment}\n\n{info['family']} trained on `{info['dataset']}` (data sha256 "
        f"`{info['data_sha256'][:16]}`), params hash `{info['params_hash']}`, MLflow run `{info['run_id']}`.\n\n"
        f"{parent}| metric | value |\n|---|---|\n{rows}\n\n"
        f"Audit: {'passed' if audit['passed'] else 'FAILED: ' + '; '.join(audit['failed'])} "
        f"(FD L2 {audit.get('fd_l2', float('nan')):.4f}).\n\n"
        f"Protocol: `{json.dumps(metrics.get('protocol', {}), sort_keys=True)}`\n"
    )
