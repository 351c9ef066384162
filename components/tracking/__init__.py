"""MLflow tracking and registry helpers, and the registered pyfunc sampler."""
