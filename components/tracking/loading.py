"""Load a registered genfoundry model for sampling on this machine without running anything the registry holds.

``mlflow.pyfunc.load_model`` runs whatever a model version carries: a cloudpickled ``python_model``, or the code
logged with it. Anyone with write access to the registry could make ``genfoundry sample`` run their code. So the
CLI never calls it. :func:`load_registered` downloads the version's files, checks that it is genfoundry's own
sampler (the pyfunc flavor logged from code with ``sampler_model.py``, and our ``model_dir`` artifact with
``config.json`` and ``model.safetensors``), refuses anything else with one line, and rebuilds the model with the
*installed* genfoundry code from the safetensors weights and the JSON config: nothing is unpickled, no
downloaded code is imported. (``mlflow models serve`` still uses the pyfunc, on a machine that chose to serve it.)
"""

from __future__ import annotations

import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from components.errors import GenfoundryError
from components.models.base import GenerativeModel
from components.models.store import CONFIG, WEIGHTS, load_info, load_trained

CODE_LOADER = "mlflow.pyfunc.loaders.code_model"  # the loader MLflow records for a model logged from code
SAMPLER_CODE = "sampler_model.py"
MODEL_DIR_ARTIFACT = "model_dir"


@dataclass(frozen=True)
class LoadedModel:
    uri: str
    model: GenerativeModel
    info: dict[str, Any]  # the trained model's config.json (family, dataset, model params, spec, hashes)


def model_uri(model: str) -> str:
    """``name@alias`` or ``name/version`` -> ``models:/...``; a ``models:/`` or ``runs:/`` URI passes through."""
    if model.startswith(("models:/", "runs:/")):
        return model
    if "://" in model or model.startswith("/"):
        raise GenfoundryError(
            f"--model: expected a registered model (NAME@ALIAS, NAME/VERSION, models:/... or runs:/...), got {model!r}"
        )
    return f"models:/{model}"


def check_sampler(local: Path, uri: str) -> Path:
    """The ``model_dir`` of a downloaded model if it is genfoundry's sampler; else one clear error."""
    mlmodel = local / "MLmodel"
    if not mlmodel.is_file():
        raise GenfoundryError(f"{uri}: expected an MLflow model (an MLmodel file), got none")
    try:
        meta = yaml.safe_load(mlmodel.read_text())
    except yaml.YAMLError as e:
        raise GenfoundryError(f"{uri}: MLmodel is not valid YAML ({str(e).splitlines()[0]})") from None
    flavors = meta.get("flavors") if isinstance(meta, dict) else None
    pyfunc = flavors.get("python_function") if isinstance(flavors, dict) else None
    if not isinstance(pyfunc, dict):
        raise GenfoundryError(
            f"{uri}: expected a genfoundry sampler (pyfunc flavor), got flavors {sorted(flavors or {})}"
        )
    loader, code = pyfunc.get("loader_module"), Path(str(pyfunc.get("model_code_path", ""))).name
    if loader != CODE_LOADER or code != SAMPLER_CODE or "python_model" in pyfunc:
        raise GenfoundryError(
            f"{uri}: expected genfoundry's sampler (pyfunc logged from {SAMPLER_CODE}), got loader {loader!r} "
            f"with code {code or pyfunc.get('python_model')!r}; refusing to load it (it could run code)"
        )
    entry = (pyfunc.get("artifacts") or {}).get(MODEL_DIR_ARTIFACT) or {}
    model_dir = (local / str(entry.get("path", ""))).resolve()
    if not entry.get("path") or not model_dir.is_relative_to(local.resolve()):
        raise GenfoundryError(
            f"{uri}: expected a {MODEL_DIR_ARTIFACT!r} artifact inside the model, got {entry or None}"
        )
    missing = [f for f in (CONFIG, WEIGHTS) if not (model_dir / f).is_file()]
    if missing:
        raise GenfoundryError(f"{uri}: expected {MODEL_DIR_ARTIFACT}/{CONFIG} and {WEIGHTS}, missing {missing}")
    return model_dir


def _download_sampler(uri: str, tmp: str) -> Path:
    """``uri``'s artifacts downloaded into ``tmp`` and checked to be a genfoundry sampler; its model folder."""
    import mlflow.artifacts

    try:
        local = Path(mlflow.artifacts.download_artifacts(uri, dst_path=tmp))
    except Exception as e:  # MlflowException: no such model/alias/version, an unreachable server
        raise GenfoundryError(f"cannot load {uri}: {str(e).splitlines()[0]}") from None
    return check_sampler(local, uri)


def registered_weights(model: str) -> tuple[str, dict[str, Any], bytes]:
    """``(uri, config.json, model.safetensors bytes)`` of a registered genfoundry sampler, checked as
    :func:`load_registered` checks it; nothing is unpickled or imported (transfer learning reads these)."""
    uri = model_uri(model)
    with tempfile.TemporaryDirectory() as tmp:
        model_dir = _download_sampler(uri, tmp)
        return uri, load_info(model_dir), (model_dir / WEIGHTS).read_bytes()


def load_registered(model: str, *, device: str = "cpu") -> LoadedModel:
    """Download ``model`` (NAME@ALIAS, NAME/VERSION or a URI) and rebuild it from its weights and config."""
    uri = model_uri(model)
    with tempfile.TemporaryDirectory() as tmp:
        model_dir = _download_sampler(uri, tmp)
        try:
            info = load_info(model_dir)
            net = load_trained(model_dir, device=device)
        except GenfoundryError:
            raise
        except Exception as e:  # a config.json that does not describe a model, weights that do not fit it
            raise GenfoundryError(f"{uri}: cannot rebuild the model from its weights ({e})") from None
    return LoadedModel(uri=uri, model=net, info=info)


MAX_SAMPLES = 10_000  # per request: the registry's pyfunc and the CLI draw all samples in one process


def draw(model: GenerativeModel, n: int, *, seed: int, options: dict[str, Any] | None = None) -> Any:
    """``n`` samples from a seeded generator with the sampler ``options`` the model accepts (its
    ``sampler_defaults``): images/points as a float32 array, text as a list of strings."""
    import torch

    if not 1 <= n <= MAX_SAMPLES:
        raise GenfoundryError(f"n: expected 1 <= n <= {MAX_SAMPLES}, got {n}")
    options = {k: v for k, v in (options or {}).items() if v is not None}
    accepted = set(model.sampler_defaults())
    unknown = sorted(set(options) - accepted)
    if unknown:
        raise GenfoundryError(
            f"{model.family} sampler: expected options among {sorted(accepted) or 'none'}, got {unknown}"
        )
    with torch.no_grad():
        out = model.sample(n, generator=torch.Generator().manual_seed(seed), **options)
    return out if isinstance(out, list) else out.float().cpu().numpy()
