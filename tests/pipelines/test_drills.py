"""Failure drills on a tiny copy of the project (digits; one small VAE trained on 1 Ray worker, 12 epochs).

1. ``dvc repro train@vae_d``, and SIGKILL the stage's driver (``python -m pipelines.train vae_d``, what
   ``genfoundry train vae_d`` runs) after its first checkpoint: the repro fails, dvc.lock records nothing.
2. ``dvc repro train@vae_d`` again: the stage resumes from the last Ray checkpoint (same
   ``RunConfig(name, storage_path)``), not from scratch; as soon as the worker has recorded the resume,
   SIGINT reaches dvc's process group (what Ctrl-C does) and interrupts it. (Waiting for one more checkpoint
   first was a race: when the first drill's last checkpoint is epoch 3, the next one is the final epoch and
   the repro could finish before the signal landed; seen once in a full-suite run. With 4 epochs the
   resume itself could start at epoch 3 and finish before the signal: 12 leave it epochs to run.)
3. ``dvc repro train@vae_d`` resumes once more and finishes: ``dvc status`` has nothing to do for the stage,
   dvc.lock, the model and reports/vae_d/train.json agree on 12 epochs, and the one MLflow run has every epoch
   exactly once, with the two resumes recorded in its tag ``train.resumed_from``.

The drills repro the train stage and its upstream (``prepare``), not evaluate/audit/register: those stages
have nothing to resume, and their interruption is DVC's ordinary stage-failure path (tested in
test_dvc_pipeline.py with a diverged run).
"""

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest
import yaml

from tests.conftest import ROOT
from tests.pipelines.conftest import copy_project, init_repo, run_checked

pytestmark = pytest.mark.slow  # end to end: `make test-slow` (CI runs it after `make test`)

BIN = Path(sys.executable).parent
EPOCHS = 12  # enough that a resume always has epochs left (the first kill can land a few checkpoints late)
STAGE = "train@vae_d"


def _params() -> dict:
    """The project's params.yaml (so every section dvc.yaml tracks exists), cut down to one tiny experiment."""
    p = yaml.safe_load((ROOT / "params.yaml").read_text())
    p["prepare"]["datasets"] = {"digits": {"source": "digits"}}
    p["ray"] = {"storage_path": "ray_results"}
    p["mlflow"] = {"experiment": "drill", "model_prefix": "drill"}
    p["finetune"] = {}  # its fine-tune names datasets this copy drops
    p["experiments"] = {
        "vae_d": {
            "family": "vae",
            "dataset": "digits",
            "model": {"latent_dim": 4, "width": 8},
            # batch 16: ~80 steps an epoch, so an epoch lasts long enough to interrupt the run between two
            "train": {"epochs": EPOCHS, "batch_size": 16, "lr": 0.003, "num_workers": 1, "max_failures": 0},
            "evaluate": {},  # the validate stage checks every section dvc.yaml tracks; these take the defaults
            "audit": {},
            "selection": {},
        }
    }
    return p


def _run(args, cwd, env, check=True):
    return run_checked(args, cwd, env, check, timeout=600)


@pytest.fixture(scope="module")
def project(tmp_path_factory, mlflow_db):
    d = tmp_path_factory.mktemp("drill")
    copy_project(d)
    (d / "params.yaml").write_text(yaml.safe_dump(_params()))
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("PYTEST", "MLFLOW_TRACKING_URI", "RAY_ADDRESS", "RAY_TRAIN_"))
    }
    env["PATH"] = f"{BIN}{os.pathsep}{env.get('PATH', '')}"
    env["PYTHONPATH"] = str(d)
    env["RAY_TRAIN_HEALTH_CHECK_INTERVAL_S"] = "0.5"  # Ray Train's controller notices start and end sooner
    init_repo(d, env)
    mlflow_db(d / "mlflow.db")  # the stages' default store (untracked), its schema already migrated
    return d, env


class _Repro:
    """``dvc repro STAGE`` in its own session (process group), its output in a log file."""

    def __init__(self, d: Path, env: dict, name: str):
        self.log = d / f"{name}.log"
        self.proc = subprocess.Popen(
            [str(BIN / "dvc"), "repro", STAGE],
            cwd=d,
            env=env,
            stdout=self.log.open("w"),
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        self.seen: set[int] = set()

    def wait_for(self, what: str, cond, timeout: float = 300) -> None:
        deadline = time.time() + timeout
        while time.time() < deadline:
            self._remember_children()
            if cond():
                return
            if self.proc.poll() is not None:
                rc = self.proc.returncode
                raise AssertionError(f"dvc repro ended ({rc}) before {what}:\n{self.output()[-3000:]}")
            time.sleep(0.1)
        raise AssertionError(f"Expected {what} within {timeout}s:\n{self.output()[-3000:]}")

    def _remember_children(self) -> None:
        try:
            self.seen |= {p.pid for p in psutil.Process(self.proc.pid).children(recursive=True)}
        except psutil.NoSuchProcess:
            pass

    def train_driver(self) -> psutil.Process:
        for p in psutil.Process(self.proc.pid).children(recursive=True):
            try:
                if "pipelines.train" in " ".join(p.cmdline()):
                    return p
            except psutil.Error:
                continue
        raise AssertionError("no `python -m pipelines.train` process under dvc repro")

    def finish(self, timeout: float = 120) -> int:
        """Wait for dvc to exit, then end what is left of the processes it started (Ray's, if any)."""
        try:
            rc = self.proc.wait(timeout=timeout)
        finally:
            time.sleep(1)
            for pid in self.seen:
                try:
                    psutil.Process(pid).kill()
                except psutil.NoSuchProcess:
                    pass
        return rc

    def output(self) -> str:
        return self.log.read_text()


def _checkpoints(d: Path) -> set[str]:
    """The checkpoints a rerun can resume from: those Ray Train's checkpoint manager has recorded in its
    snapshot. A checkpoint folder alone is not enough: a kill between writing the folder and recording it
    leaves one that the next run rightly ignores (it starts from the last recorded one)."""
    found: set[str] = set()
    for snap in d.glob("ray_results/vae_d-*/checkpoint_manager_snapshot.json"):
        try:
            results = json.loads(snap.read_text()).get("checkpoint_results", [])
        except (OSError, ValueError):  # being rewritten: ask again at the next poll
            continue
        found |= {r["checkpoint_dir_name"] for r in results if (snap.parent / r["checkpoint_dir_name"]).is_dir()}
    return found


def _lock_has_stage(d: Path) -> bool:
    lock = d / "dvc.lock"
    return lock.exists() and STAGE in (yaml.safe_load(lock.read_text()) or {}).get("stages", {})


def _resumed_from(d: Path) -> str | None:
    """The MLflow run's ``train.resumed_from`` tag, read straight from the sqlite store (cheap to poll)."""
    db = d / "mlflow.db"
    if not db.exists():
        return None
    with sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=5) as con:
        try:
            row = con.execute("SELECT value FROM tags WHERE key = 'train.resumed_from'").fetchone()
        except sqlite3.OperationalError:  # tables not created yet
            return None
    return row[0] if row else None


def test_sigkill_of_the_train_driver_fails_the_repro_and_records_nothing(project):
    d, env = project
    repro = _Repro(d, env, "repro1")
    repro.wait_for("the first recorded checkpoint", lambda: _checkpoints(d))
    repro.train_driver().kill()  # SIGKILL: no cleanup, no atexit, no Ray shutdown
    rc = repro.finish()
    assert rc != 0, repro.output()
    assert "Running stage 'train@vae_d'" in repro.output()
    assert not _lock_has_stage(d)
    assert not (d / "models" / "vae_d").exists()


def test_a_rerun_resumes_from_the_checkpoint_and_ctrl_c_interrupts_it(project):
    d, env = project
    before = _checkpoints(d)
    assert before, "the first drill left no checkpoint"
    repro = _Repro(d, env, "repro2")
    repro.wait_for("the worker to record its resume", lambda: _resumed_from(d))
    os.killpg(repro.proc.pid, signal.SIGINT)  # Ctrl-C: dvc and its stage both get SIGINT
    rc = repro.finish()
    resumed = int(_resumed_from(d))
    assert 1 <= resumed < EPOCHS, f"Expected a resume from an epoch in [1, {EPOCHS}), got {resumed}"
    assert rc != 0, repro.output()
    assert not _lock_has_stage(d)


def test_the_next_repro_resumes_again_and_leaves_a_consistent_workspace(project):
    from mlflow.tracking import MlflowClient

    d, env = project
    _run([str(BIN / "dvc"), "repro", STAGE], d, env)
    status = _run([str(BIN / "dvc"), "status", STAGE], d, env)
    assert "up to date" in status.stdout, status.stdout
    assert _lock_has_stage(d)
    lock = yaml.safe_load((d / "dvc.lock").read_text())["stages"][STAGE]
    assert lock["params"]["params.yaml"]["experiments.vae_d.train"]["epochs"] == EPOCHS
    assert json.loads((d / "reports/vae_d/train.json").read_text())["epochs"] == EPOCHS
    assert json.loads((d / "models/vae_d/config.json").read_text())["epochs"] == EPOCHS

    c = MlflowClient(tracking_uri=(uri := f"sqlite:///{d / 'mlflow.db'}"), registry_uri=uri)
    (run,) = c.search_runs([c.get_experiment_by_name("drill").experiment_id], "tags.`genfoundry.experiment` = 'vae_d'")
    assert run.info.status == "FINISHED"
    assert sorted(m.step for m in c.get_metric_history(run.info.run_id, "train/loss")) == list(range(1, EPOCHS + 1))
    resumes = [int(e) for e in run.data.tags["train.resumed_from"].split(",")]
    # the interrupted run may have checkpointed its last epoch before Ctrl-C landed: resuming there is correct
    assert len(resumes) == 2 and 1 <= resumes[0] <= resumes[1] <= EPOCHS
