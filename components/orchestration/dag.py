"""What ``dvc.yaml`` asks of ``params.yaml``: every params key a stage tracks must exist, and an experiment that
starts from another one (``train.init_from``) comes after it.

DVC checks a stage's params only when it runs the stage, after it has deleted the stage's outputs: a missing
section (an experiment without ``evaluate:``) used to cost its good outputs before the stage failed. The
``validate`` stage, upstream of every other one, checks all of them first (:func:`missing_params`).
"""

from __future__ import annotations

import re
from typing import Any


def _expand(text: str, key: str, item: dict[str, Any]) -> str:
    text = text.replace("${key}", key)
    return re.sub(r"\$\{item\.(\w+)\}", lambda m: str(item.get(m.group(1), m.group(0))), text)


def tracked_params(dvc: dict[str, Any], params: dict[str, Any]) -> list[tuple[str, str]]:
    """``(stage, dotted params key)`` for every ``params:`` entry of every stage, ``foreach`` stages expanded
    over ``params['experiments']``."""
    out: list[tuple[str, str]] = []
    for name, stage in (dvc.get("stages") or {}).items():
        if "foreach" in stage:
            items = params.get("experiments") if stage["foreach"] == "${experiments}" else None
            body = stage.get("do", {})
            for key, item in (items or {}).items():
                for entry in body.get("params", []) or []:
                    for p in entry if isinstance(entry, dict) else [entry]:
                        out.append((f"{name}@{key}", _expand(str(p), key, item if isinstance(item, dict) else {})))
        else:
            for entry in stage.get("params", []) or []:
                for p in entry if isinstance(entry, dict) else [entry]:
                    out.append((name, str(p)))
    return out


def has_key(params: dict[str, Any], dotted: str) -> bool:
    node: Any = params
    for part in dotted.split("."):
        if not isinstance(node, dict) or part not in node:
            return False
        node = node[part]
    return True


def missing_params(dvc: dict[str, Any], params: dict[str, Any]) -> list[str]:
    """One line per params key a stage tracks that params.yaml lacks (a section may be empty: ``{}``)."""
    return [
        f"params.yaml: expected '{key}' (dvc.yaml's {stage} tracks it), got no such key; add it (an empty "
        "section {} takes the defaults)"
        for stage, key in tracked_params(dvc, params)
        if not has_key(params, key)
    ]


def lineage_problems(params: dict[str, Any]) -> list[str]:
    """One line per experiment whose ``train.init_from`` parent (an experiment) is listed after it.

    DVC cannot give one item of the ``train`` foreach a dependency the others lack (a missing ``${item...}``
    key fails the whole dvc.yaml, and a list-valued ``deps`` is refused by its schema), so no dvc.yaml edge
    joins ``train@PARENT`` to ``train@CHILD``. ``dvc repro`` runs unrelated stages in the order of dvc.yaml
    and of the foreach items, that is of ``experiments``: a parent listed first trains first. Unknown parents,
    another family and cycles are refused by the params parser (``components.config.check_lineage``).
    """
    experiments = params.get("experiments") or {}
    order = {key: i for i, key in enumerate(experiments)}
    out = []
    for key, exp in experiments.items():
        init = ((exp or {}).get("train") or {}).get("init_from") if isinstance(exp, dict) else None
        source = init.get("source") if isinstance(init, dict) else init
        if isinstance(source, str) and source in order and order[source] > order[key]:
            out.append(
                f"experiments.{key}.train.init_from: expected its parent {source!r} listed before it in params.yaml "
                f"(dvc repro trains experiments in that order), got it after; move {source!r} up"
            )
    return out
