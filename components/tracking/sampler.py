"""The registered model: an MLflow pyfunc *sampler*, ``predict({"n": 16, "seed": 0}) -> samples``.

Logged from code (``sampler_model.py``) with the trained model directory as an artifact — weights as
safetensors plus ``config.json``, never a pickled object — and the ``components`` package as code, so
``mlflow.pyfunc.load_model("models:/<name>@champion")`` works in any environment with the requirements.
Sampler options (``steps``, ``temperature``, ``sampler``, ``eta`` ...) are pyfunc ``params``.
"""

from __future__ import annotations

from typing import Any

import mlflow.pyfunc
import numpy as np
import pandas as pd


class Sampler(mlflow.pyfunc.PythonModel):
    """Loads the model once; each call draws ``n`` samples from a seeded generator."""

    def load_context(self, context: Any) -> None:
        from components.models.store import load_info, load_trained

        self.model = load_trained(context.artifacts["model_dir"])
        self.info = load_info(context.artifacts["model_dir"])

    # ``pd.DataFrame`` is one of the hints MLflow infers no schema from (ours is logged explicitly) and the form
    # a request takes once the signature has been enforced; without any hint MLflow warns on every load, past
    # any warnings filter. Direct calls may still pass a dict or a list of one record (see _request).
    def predict(self, context, model_input: pd.DataFrame, params=None):
        from components.errors import GenfoundryError
        from components.tracking.loading import draw

        n, seed = _request(model_input)
        try:
            return draw(self.model, n, seed=seed, options=params)  # text: list of strings; else an array
        except GenfoundryError as e:  # a bad request: MLflow answers it as a client error
            raise ValueError(str(e)) from None


def _request(model_input: Any) -> tuple[int, int]:
    """Accept ``{"n": 16, "seed": 0}``, a one-row DataFrame with those columns, or a list of such records."""
    if isinstance(model_input, pd.DataFrame):
        if len(model_input) != 1:
            raise ValueError(
                f"Sampler.predict: expected one request row with columns n, seed, got {len(model_input)} rows"
            )
        row = model_input.iloc[0].to_dict()
    elif isinstance(model_input, dict):
        row = {k: (v[0] if isinstance(v, list | np.ndarray) else v) for k, v in model_input.items()}
    elif isinstance(model_input, list) and len(model_input) == 1 and isinstance(model_input[0], dict):
        row = model_input[0]
    else:
        raise ValueError(
            f"Sampler.predict: expected a request {{'n': int, 'seed': int}}, got {type(model_input).__name__}"
        )
    return int(row.get("n", 16)), int(row.get("seed", 0))
