"""Fixtures for the two-node cluster tests: a real Ray head and worker node in two network namespaces.

``two_node_cluster`` yields a started :class:`tests.cluster.netns.TwoNodeCluster`, one for all of tests/cluster (it
takes about a minute to start on two busy cores); each test gets it with both nodes alive (a worker node a test
left dead is restarted first). It skips, saying why, only where ``ip netns add`` is not permitted; its teardown
fails if any namespace, link, route, mount or process of the cluster is left behind.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.cluster.netns import NetnsNotPermitted, TwoNodeCluster


@pytest.fixture(scope="package")
def _cluster(mlflow_db, tmp_path_factory: pytest.TempPathFactory) -> Iterator[TwoNodeCluster]:
    # the MLflow store: a copy of one migrated once per session (migrating takes ~8 s)
    cluster = TwoNodeCluster(mlflow_backend_uri=mlflow_db(tmp_path_factory.mktemp("cluster-mlflow") / "mlflow.db"))
    try:
        try:
            cluster.start()
        except NetnsNotPermitted as e:  # issue 18: skip, saying why, only where `ip netns add` is refused (not root)
            pytest.skip(f"ip netns add is not permitted here: {e}")
        yield cluster
    finally:
        cluster.close()


@pytest.fixture
def two_node_cluster(_cluster: TwoNodeCluster) -> TwoNodeCluster:
    """Head (``{"head": 1}``, 1 CPU, the MLflow server) and worker node (``{"worker": 1}``, 1 CPU, the project's
    ``data/`` hidden) over a private veth link, both ALIVE."""
    if _cluster.node_states().get(_cluster.worker.node_id) != "ALIVE":
        _cluster.restart_worker_node()
    return _cluster
