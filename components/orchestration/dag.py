"""What ``dvc.yaml`` asks of ``params.yaml``: every params key a stage tracks must exist, and an experiment under
``finetune`` names its parent as ``train.init_from.source`` (the key ``train_ft@EXP``'s dependency on the
parent's model reads).

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
    over their section (``${experiments}`` or ``${finetune}``)."""
    out: list[tuple[str, str]] = []
    for name, stage in (dvc.get("stages") or {}).items():
        if "foreach" in stage:
            section = {"${experiments}": "experiments", "${finetune}": "finetune"}.get(stage["foreach"])
            items = params.get(section) if section else None
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


def finetune_problems(params: dict[str, Any]) -> list[str]:
    """One line per ``finetune`` experiment whose parent is not written as ``train.init_from: {source: NAME}``:
    ``train_ft@EXP`` depends on ``models/${item.train.init_from.source}``, which DVC cannot read from the
    shorthand ``init_from: NAME`` (the params parser accepts both; :func:`components.config.check_sections`
    checks that the parent is an experiment)."""
    out = []
    for key, exp in (params.get("finetune") or {}).items():
        init = ((exp or {}).get("train") or {}).get("init_from") if isinstance(exp, dict) else None
        if not (isinstance(init, dict) and isinstance(init.get("source"), str)):
            name = init if isinstance(init, str) else "NAME"
            out.append(
                f"finetune.{key}.train.init_from: expected {{source: NAME}} (dvc.yaml's train_ft reads "
                f"init_from.source), got {init!r}; write init_from: {{source: {name}}}"
            )
    return out
