"""``genfoundry sample`` loads only genfoundry's own sampler, rebuilt from its safetensors weights: a registered
cloudpickled model, or a model logged from other code, is refused with one line and nothing of it runs.
(Real MLflow store: sqlite; ``mlflow models serve`` of our models over HTTP: tests/pipelines/test_serve.py.)"""

from __future__ import annotations

import pickle
import sys
from pathlib import Path

import mlflow
import numpy as np
import pytest
from typer.testing import CliRunner

from components.data import load_spec
from components.data.audio import read_wav
from components.data.spec import DataSpec
from components.errors import GenfoundryError
from components.models import build_model
from components.models.store import save_trained
from components.tracking import publish, runs
from components.tracking.loading import MAX_SAMPLES, draw, load_registered, model_uri

RAN = Path(__file__).with_name(".evil-model-ran")


class Evil(mlflow.pyfunc.PythonModel):
    """What an attacker with registry write access registers: code that runs when the model is loaded."""

    def load_context(self, context):
        RAN.write_text("pwned")

    def predict(self, context, model_input, params=None):
        RAN.write_text("pwned")
        return model_input


@pytest.fixture(scope="module")
def registry_store(tmp_path_factory, mlflow_db, digits_root):
    """A sqlite MLflow store with a genfoundry sampler ``gf-load-vae`` v1 and a cloudpickled ``gf-evil`` v1."""
    d = tmp_path_factory.mktemp("loading")
    uri = mlflow_db(d / "mlflow.db")
    mp = pytest.MonkeyPatch()
    mp.setenv("MLFLOW_TRACKING_URI", uri)
    c = runs.client(d)
    exp = runs.ensure_experiment(c, "loading", d)
    spec = load_spec(digits_root, "digits")
    cfg = {"latent_dim": 4, "width": 8}
    save_trained(d / "vae", build_model("vae", cfg, spec), {"family": "vae", "model": cfg, "dataset": "digits"})
    run_id = runs.find_or_create_run(c, exp, "good", run_name="good", tags={})
    publish.log_sampler(
        run_id=run_id,
        model_dir=d / "vae",
        name="gf-load-vae",
        sample_params={},
        example_output=np.zeros((4, 1, 8, 8), np.float32),
        tags={},
        description="a genfoundry sampler",
    )
    audio = DataSpec(name="notes", kind="audio", shape=(1, 64), class_names=("C", "D"), extras={"sample_rate": 8000})
    wcfg = {"residual_channels": 4, "skip_channels": 4, "dilation_cycles": 1, "layers_per_cycle": 2}
    save_trained(d / "wn", build_model("wavenet", wcfg, audio), {"family": "wavenet", "model": wcfg})
    publish.log_sampler(
        run_id=runs.find_or_create_run(c, exp, "audio", run_name="audio", tags={}),
        model_dir=d / "wn",
        name="gf-load-wavenet",
        sample_params={"sampler": "cached", "temperature": 1.0},
        example_output=np.zeros((4, 1, 64), np.float32),
        tags={},
        description="a genfoundry audio sampler",
    )
    with mlflow.start_run(experiment_id=exp):
        mlflow.pyfunc.log_model(name="m", python_model=Evil(), registered_model_name="gf-evil")
    yield uri
    mp.undo()
    RAN.unlink(missing_ok=True)


def test_our_sampler_loads_from_its_weights_without_unpickling(registry_store, monkeypatch):
    monkeypatch.setenv("MLFLOW_TRACKING_URI", registry_store)

    def refuse(*_a, **_k):
        raise AssertionError("something was unpickled")

    for mod in (pickle,) + tuple(m for m in (sys.modules.get("cloudpickle"),) if m):
        monkeypatch.setattr(mod, "load", refuse)
        monkeypatch.setattr(mod, "loads", refuse)
    monkeypatch.setattr("torch.load", refuse)
    loaded = load_registered("gf-load-vae/1")
    assert loaded.info["family"] == "vae" and loaded.uri == "models:/gf-load-vae/1"
    x = draw(loaded.model, 3, seed=0)
    assert x.shape == (3, 1, 8, 8) and np.array_equal(x, draw(loaded.model, 3, seed=0))


def test_a_cloudpickled_model_is_refused_and_never_runs(registry_store, monkeypatch):
    monkeypatch.setenv("MLFLOW_TRACKING_URI", registry_store)
    RAN.unlink(missing_ok=True)
    with pytest.raises(GenfoundryError, match=r"models:/gf-evil/1: expected genfoundry's sampler .*refusing to load"):
        load_registered("gf-evil/1")
    assert not RAN.exists()


def test_the_cli_refuses_it_with_one_line(registry_store, monkeypatch, tmp_path):
    from pipelines import cli

    monkeypatch.setenv("MLFLOW_TRACKING_URI", registry_store)
    monkeypatch.chdir(tmp_path)
    r = CliRunner().invoke(cli.app, ["sample", "-m", "gf-evil/1", "-n", "2", "-o", "x.png"])
    lines = [ln for ln in r.output.splitlines() if ln.strip()]
    assert r.exit_code == 2 and len(lines) == 1 and "refusing to load it" in lines[0], r.output
    assert not RAN.exists() and not (tmp_path / "x.png").exists()


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["-m", "gf-load-vae/7"], "cannot load models:/gf-load-vae/7"),
        (["-m", "gf-load-vae/1", "-n", "10000000"], f"n: expected 1 <= n <= {MAX_SAMPLES}, got 10000000"),
        (["-m", "gf-load-vae/1", "--steps", "5"], "vae sampler: expected options among none, got ['steps']"),
        (["-m", "/etc/passwd"], "--model: expected a registered model"),
    ],
)
def test_bad_requests_get_one_line(registry_store, monkeypatch, tmp_path, args, message):
    from pipelines import cli

    monkeypatch.setenv("MLFLOW_TRACKING_URI", registry_store)
    monkeypatch.chdir(tmp_path)
    r = CliRunner().invoke(cli.app, ["sample", *args, "-o", "x.png"])
    lines = [ln for ln in r.output.splitlines() if ln.strip()]
    assert r.exit_code == 2 and len(lines) == 1 and message in " ".join(lines), r.output


def test_model_uris():
    assert model_uri("a@champion") == "models:/a@champion" and model_uri("runs:/x/m") == "runs:/x/m"
    with pytest.raises(GenfoundryError, match="expected a registered model"):
        model_uri("file:///tmp/m")


def test_audio_samples_become_wav_files(registry_store, monkeypatch, tmp_path):
    from pipelines import cli

    monkeypatch.setenv("MLFLOW_TRACKING_URI", registry_store)
    monkeypatch.chdir(tmp_path)
    r = CliRunner().invoke(cli.app, ["sample", "-m", "gf-load-wavenet/1", "-n", "3", "-o", "clip.wav"])
    assert r.exit_code == 0, r.output
    files = sorted(p.name for p in tmp_path.glob("*.wav"))
    assert files == ["clip_0.wav", "clip_1.wav", "clip_2.wav"]
    x, rate, width = read_wav(tmp_path / "clip_1.wav")
    assert rate == 8000 and width == 16 and x.shape[-1] == 64
    r = CliRunner().invoke(cli.app, ["sample", "-m", "gf-load-wavenet/1", "-n", "2", "-o", "clips"])
    assert r.exit_code == 0 and sorted(p.name for p in (tmp_path / "clips").iterdir()) == [
        "sample_0.wav",
        "sample_1.wav",
    ]
    r = CliRunner().invoke(cli.app, ["sample", "-m", "gf-load-wavenet/1", "-n", "1", "-o", "clip.png"])
    assert r.exit_code == 2 and "-o: expected a .wav file or a folder for audio" in r.output
