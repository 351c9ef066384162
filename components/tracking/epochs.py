"""Per-epoch training metrics into an existing MLflow run: the :class:`~components.training.job.EpochLog` the
train stage hands to its job (training itself imports no MLflow)."""

from __future__ import annotations

import os
import time


class MlflowEpochLog:
    """Logs per-epoch means to the MLflow run ``run_id`` (rank 0 only), with step = epoch.

    Idempotent across restarts: an epoch already in the run is not logged again. (A worker killed after its
    report but before Ray registered the checkpoint makes the restarted group replay that epoch; the run then
    keeps the first values and records the replay in the tag ``train.replayed_epochs``.) Pickles as its two
    strings: the client is made on the worker, by :meth:`open`.
    """

    def __init__(self, tracking_uri: str | None, run_id: str):
        self.tracking_uri = tracking_uri
        self.run_id = run_id
        self.client = None
        self.logged: set[int] = set()
        self.replayed: list[int] = []

    def __getstate__(self) -> dict[str, str | None]:
        return {"tracking_uri": self.tracking_uri, "run_id": self.run_id}

    def __setstate__(self, state: dict[str, str | None]) -> None:
        self.__init__(state["tracking_uri"], state["run_id"])  # type: ignore[misc]

    def open(self) -> None:
        os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
        from mlflow.tracking import MlflowClient

        self.client = MlflowClient(tracking_uri=self.tracking_uri)
        self.logged = {m.step for m in self.client.get_metric_history(self.run_id, "train/loss")}

    def resumed(self, epoch: int) -> None:
        """Record a start from a checkpoint (tag ``train.resumed_from``: the epochs resumed from, in order)."""
        if epoch == 0:
            return
        tags = self.client.get_run(self.run_id).data.tags
        previous = tags.get("train.resumed_from")
        self.client.set_tag(self.run_id, "train.resumed_from", f"{previous},{epoch}" if previous else str(epoch))

    def fail(self, message: str) -> None:
        self.client.set_tag(self.run_id, "failure", message)

    def backfill(self, history: list[dict[str, float]]) -> None:
        """Log checkpointed epochs that the MLflow run does not have yet (a crash between the two)."""
        for h in history:
            if int(h["epoch"]) not in self.logged:
                self.log(int(h["epoch"]), {k: v for k, v in h.items() if k != "epoch"})

    def log(self, epoch: int, means: dict[str, float]) -> None:
        if epoch in self.logged:
            self.replayed.append(epoch)
            self.client.set_tag(self.run_id, "train.replayed_epochs", ",".join(map(str, self.replayed)))
            return
        from mlflow.entities import Metric

        ts = int(time.time() * 1000)
        self.client.log_batch(
            self.run_id, metrics=[Metric(metric_name(k), float(v), ts, epoch) for k, v in sorted(means.items())]
        )
        self.logged.add(epoch)


def metric_name(key: str) -> str:
    """``loss`` -> ``train/loss``; ``val_loss`` -> ``val/loss``."""
    return f"val/{key[4:]}" if key.startswith("val_") else f"train/{key}"
