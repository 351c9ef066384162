"""Shared fixtures: tiny prepared datasets, a free port, a quiet MLflow/Ray environment."""

from __future__ import annotations

import os
import socket
from pathlib import Path

import pytest
import torch

os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
os.environ.setdefault("RAY_DEDUP_LOGS", "1")
os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
torch.set_num_threads(2)

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="session")
def digits_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """scikit-learn digits prepared (split 0.1/0.2, seed 0) in a temporary data root."""
    from components.data import get_source, prepare_dataset

    root = tmp_path_factory.mktemp("prepared")
    prepare_dataset("digits", get_source("digits")(), root, val=0.1, test=0.2, seed=0)
    return root


@pytest.fixture
def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="session")
def mlflow_db(tmp_path_factory: pytest.TempPathFactory):
    """``mlflow_db(path) -> uri``: a fresh, empty MLflow sqlite store at ``path``, copied from one migrated once
    per session (creating a store runs MLflow's schema migrations: about 8 s on two busy cores)."""
    import shutil

    from mlflow.store.tracking.sqlalchemy_store import SqlAlchemyStore

    template = tmp_path_factory.mktemp("mlflow-template") / "mlflow.db"
    SqlAlchemyStore(f"sqlite:///{template}", str(template.parent / "artifacts")).engine.dispose()

    def make(path: Path) -> str:
        shutil.copy(template, path)
        return f"sqlite:///{path}"

    return make
