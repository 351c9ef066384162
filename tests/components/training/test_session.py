"""The setup the Ray worker and the in-process path share (``components.training.session``), run in-process:
held-out metrics, the mode probe, checkpoints and resume, the epoch log, divergence, and a job that pickles as it
travels to Ray workers. (The same session under Ray Train, with two workers: test_driver.py.)"""

from __future__ import annotations

import pickle

import pytest

from components.config import TrainConfig
from components.data import get_source, prepare_dataset
from components.errors import DivergenceError
from components.models.configs import GANConfig, VAEConfig, WaveNetConfig
from components.tracking.epochs import MlflowEpochLog
from components.training.driver import IN_PROCESS_DIR, train
from components.training.job import TrainJob


class RecordingLog:
    """An :class:`~components.training.job.EpochLog` that keeps what it was told (the protocol, not MLflow)."""

    def __init__(self):
        self.calls: list[tuple] = []

    def open(self):
        self.calls.append(("open",))

    def backfill(self, history):
        self.calls.append(("backfill", [h["epoch"] for h in history]))

    def resumed(self, epoch):
        self.calls.append(("resumed", epoch))

    def log(self, epoch, means):
        self.calls.append(("log", epoch, sorted(means)))

    def fail(self, message):
        self.calls.append(("fail", message))


def _job(root, storage, *, epochs=2, log=None, **kw) -> TrainJob:
    return TrainJob(
        key="vae_digits",
        family="vae",
        model=VAEConfig(latent_dim=4, width=8),
        dataset="digits",
        data_root=str(root),
        train=TrainConfig(epochs=epochs, batch_size=64, lr=2e-3, num_workers=0, **kw),
        run_name="vae_digits-test",
        storage_path=str(storage),
        epoch_log=log,
        val_split="val",
    )


def test_in_process_training_reports_held_out_metrics_and_checkpoints_every_epoch(digits_root, tmp_path):
    log, events = RecordingLog(), []
    model, state = train(_job(digits_root, tmp_path, log=log), on_event=events.append)
    assert [h["epoch"] for h in state.history] == [1, 2]
    assert {"loss", "val_loss", "val_recon", "val_kl"} <= set(state.history[-1])
    kept = sorted(p.name for p in (tmp_path / "vae_digits-test" / IN_PROCESS_DIR).iterdir())
    assert kept == ["epoch_000001", "epoch_000002"]
    assert [c[:2] for c in log.calls] == [("open",), ("backfill", []), ("resumed", 0), ("log", 1), ("log", 2)]
    assert [e["event"] for e in events if e["event"] != "step"] == ["start", "steps", "epoch", "epoch", "done"]
    assert not model.training


def test_a_rerun_resumes_from_the_newest_checkpoint(digits_root, tmp_path):
    train(_job(digits_root, tmp_path, epochs=2))
    log, events = RecordingLog(), []
    _, state = train(_job(digits_root, tmp_path, epochs=3, log=log), on_event=events.append)
    assert events[0] == {**events[0], "event": "start", "epoch": 2, "epochs": 3}
    assert [h["epoch"] for h in state.history] == [1, 2, 3]
    assert ("backfill", [1, 2]) in log.calls and ("resumed", 2) in log.calls
    assert [c[1] for c in log.calls if c[0] == "log"][-1] == 3


def test_divergence_stops_the_run_and_tells_the_log(digits_root, tmp_path):
    log = RecordingLog()
    with pytest.raises(DivergenceError, match="max_loss"):
        train(_job(digits_root, tmp_path, log=log, max_loss=1.0))
    assert log.calls[-1][0] == "fail" and "at epoch 1 (training diverged)" in log.calls[-1][1]


def test_two_d_data_get_the_mode_probe_each_epoch(tmp_path):
    prepare_dataset("ring8", get_source("ring8")(n_samples=400, seed=0), tmp_path / "data", val=0.1, test=0.2, seed=0)
    job = TrainJob(
        key="gan_ring",
        family="gan",
        model=GANConfig(latent_dim=2, width=16),
        dataset="ring8",
        data_root=str(tmp_path / "data"),
        train=TrainConfig(epochs=1, batch_size=64, lr=1e-3, num_workers=0),
        run_name="gan_ring",
        storage_path=str(tmp_path / "ray"),
    )
    events = []
    train(job, on_event=events.append)
    (epoch,) = [e for e in events if e["event"] == "epoch"]
    assert {"probe_modes_captured", "probe_pct_high_quality", "probe_reverse_kl"} <= set(epoch["metrics"])


def test_a_model_that_conditions_on_an_attribute_trains_on_batches_that_carry_it(tmp_path):
    """WaveNet with condition_on: [timbre]: the train and val batches are (x, y, timbre) from the prepared split,
    and the joint (pitch class, timbre) counts are those of the train split."""
    import numpy as np

    from components.data import load_attributes, load_split

    raw = get_source("notes")(n_per_class=4, seconds=0.05)
    prepare_dataset("notes", raw, tmp_path / "data", val=0.25, test=0.25, seed=0)
    job = TrainJob(
        key="wavenet_notes",
        family="wavenet",
        model=WaveNetConfig(
            residual_channels=4,
            skip_channels=4,
            dilation_cycles=1,
            layers_per_cycle=3,
            conditional=True,
            condition_on=["timbre"],
        ),
        dataset="notes",
        data_root=str(tmp_path / "data"),
        train=TrainConfig(epochs=1, batch_size=4, lr=1e-3, num_workers=0),
        run_name="wavenet_notes",
        storage_path=str(tmp_path / "ray"),
        val_split="val",
    )
    model, state = train(job)
    assert "val_loss" in state.history[-1]
    _, y = load_split(tmp_path / "data", "notes", "train")
    timbre = load_attributes(tmp_path / "data", "notes", "train")["timbre"]
    seen = model.label_counts.numpy()  # drop_last drops at most batch_size - 1 clips of the epoch
    full = np.zeros_like(seen)
    np.add.at(full, (y, timbre), 1)
    assert (seen <= full).all() and full.sum() - seen.sum() < 4 and seen.shape == (12, 4)


def test_the_job_pickles_with_its_typed_configs_and_epoch_log(digits_root, tmp_path):
    job = _job(digits_root, tmp_path, log=MlflowEpochLog("sqlite:///x.db", "run123"))
    again = pickle.loads(pickle.dumps(job))
    assert again.model == job.model and again.train == job.train
    assert isinstance(again.model, VAEConfig) and again.epoch_log.run_id == "run123"
    assert again.epoch_log.client is None  # connects on the worker, in open()
