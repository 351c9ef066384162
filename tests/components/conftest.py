"""One local Ray instance for every Ray test under tests/components (starting one costs seconds on 2 cores)."""

from __future__ import annotations

import os

import pytest


@pytest.fixture(scope="package")
def ray_session():
    """4 logical CPUs on the real 2 cores: three 1-worker tune trials run at once (the tiny models leave the
    cores mostly idle; Ray only counts CPUs to place workers). The dashboard is on, as ``genfoundry tune``
    runs it: Ray Train's placement-group cleaner needs its state API to free the workers of a stopped trial.
    The controller polls its workers every 0.5 s instead of 2 s, so a run's end and a dead worker are seen
    sooner."""
    import ray

    from components.training.driver import init_ray

    saved = os.environ.get("RAY_TRAIN_HEALTH_CHECK_INTERVAL_S")
    os.environ["RAY_TRAIN_HEALTH_CHECK_INTERVAL_S"] = "0.5"
    init_ray(num_cpus=4, dashboard=True)
    yield
    ray.shutdown()
    if saved is None:
        os.environ.pop("RAY_TRAIN_HEALTH_CHECK_INTERVAL_S", None)
    else:
        os.environ["RAY_TRAIN_HEALTH_CHECK_INTERVAL_S"] = saved
