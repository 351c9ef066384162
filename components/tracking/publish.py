"""Publish a trained experiment to the MLflow Model Registry: a new version of its pyfunc sampler, with its
model card, tags and description (:mod:`components.tracking.registry` then decides its aliases)."""

from __future__ import annotations

import platform
import tempfile
import warnings
from collections.abc import Callable, Sequence
from importlib import metadata
from pathlib import Path
from typing import Any

import mlflow
import pandas as pd
from mlflow.models import infer_signature
from mlflow.tracking import MlflowClient

import components
from components.tracking.card import CARD_FILE

SAMPLER_FILE = Path(__file__).with_name("sampler_model.py")
_REQUIREMENTS = ("torch", "numpy", "pandas", "safetensors", "pydantic", "mlflow", "pillow")


def _requirements() -> list[str]:
    reqs = []
    for pkg in _REQUIREMENTS:
        try:
            v = metadata.version(pkg)
            reqs.append(f"{pkg}=={v.split('+')[0]}")
        except metadata.PackageNotFoundError:
            reqs.append(pkg)
    return reqs


def log_sampler(
    *,
    run_id: str,
    model_dir: str | Path,
    name: str,
    sample_params: dict[str, Any],
    example_output: Any,
    tags: dict[str, str],
    description: str,
    card: Callable[[str], str] | None = None,
    card_files: Sequence[str | Path] = (),
) -> str:
    """Log the pyfunc sampler to ``run_id`` and register it as a new version of ``name``; return the version.

    ``card(version)`` returns the version's model card (markdown): it is logged to the run under
    ``model_card/v<version>/`` with ``card_files`` (e.g. the sample grid it shows), linked from the
    description and recorded in the version's tag ``model_card``.
    """
    example = pd.DataFrame({"n": [4], "seed": [0]})
    with warnings.catch_warnings():  # "integer columns cannot hold missing values": n and seed never are
        warnings.simplefilter("ignore", UserWarning)
        signature = infer_signature(example, example_output, params=sample_params or None)
    with mlflow.start_run(run_id=run_id):
        info = mlflow.pyfunc.log_model(
            name="sampler",
            python_model=str(SAMPLER_FILE),
            artifacts={"model_dir": str(Path(model_dir).resolve())},
            code_paths=[str(Path(components.__file__).parent)],
            signature=signature,
            input_example=example,
            pip_requirements=_requirements(),
            registered_model_name=name,
            metadata={"python": platform.python_version()},
        )
    version = str(info.registered_model_version)
    c = MlflowClient()
    for k, v in tags.items():
        c.set_model_version_tag(name, version, k, str(v))
    if card is not None:
        uri = log_card(c, run_id, version, card(version), card_files)
        c.set_model_version_tag(name, version, "model_card", uri)
        description = f"{description.rstrip()}\n\nModel card: [{CARD_FILE}]({uri})\n"
    c.update_model_version(name, version, description=description)
    return version


def log_card(c: MlflowClient, run_id: str, version: str, text: str, files: Sequence[str | Path] = ()) -> str:
    """Log a model card and its files under ``model_card/v<version>/`` of the run; return the card's URI."""
    folder = f"model_card/v{version}"
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / CARD_FILE
        path.write_text(text)
        c.log_artifact(run_id, str(path), artifact_path=folder)
    for f in files:
        c.log_artifact(run_id, str(f), artifact_path=folder)
    return f"runs:/{run_id}/{folder}/{CARD_FILE}"
