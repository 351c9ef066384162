"""Models-from-code entry point for MLflow: ``mlflow.pyfunc.log_model(python_model=<this file>)``."""

import mlflow.models

from components.tracking.sampler import Sampler

mlflow.models.set_model(Sampler())
