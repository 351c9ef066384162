"""A registered version serves samples over HTTP (``mlflow models serve``), carries a model card, a signature
and an input example, and loads its weights without unpickling anything."""

from __future__ import annotations

import json
import os
import pickle
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import mlflow
import numpy as np
import pytest

from components.data import load_spec
from components.models import build_model
from components.models.store import save_trained
from components.tracking import publish, registry, runs
from components.tracking.card import model_card
from tests.pipelines.conftest import wait_http

BIN = Path(sys.executable).parent
NAME = "gf-serve-vae"


@pytest.fixture(scope="module")
def champion(tmp_path_factory, digits_root, mlflow_server):
    """An (untrained) VAE registered with a model card and promoted; its name@alias and run id."""
    spec = load_spec(digits_root, "digits")
    cfg = {"latent_dim": 4, "width": 8}
    d = tmp_path_factory.mktemp("serve") / "vae"
    info = save_trained(d, build_model("vae", cfg, spec), {"family": "vae", "model": cfg, "dataset": "digits"})
    os.environ["MLFLOW_TRACKING_URI"] = mlflow_server  # log_sampler uses the fluent API
    try:
        c = runs.client()
        run_id = runs.find_or_create_run(c, runs.ensure_experiment(c, "serve-test"), "serve", run_name="s", tags={})
        grid = d.parent / "samples.png"
        grid.write_bytes(b"\x89PNG\r\n\x1a\n")  # the card only links it
        audit = {"passed": True, "failed": [], "gates": {"fd_l2": {"value": 0.01, "threshold": 0.1, "passed": True}}}
        version = publish.log_sampler(
            run_id=run_id,
            model_dir=d,
            name=NAME,
            sample_params={},
            example_output=np.zeros((4, 1, 8, 8), np.float32),
            tags={"fingerprint": "serve"},
            description="serve test",
            card=lambda v: model_card(
                name=NAME,
                version=v,
                experiment="serve",
                info={**info, "run_id": run_id, "data_sha256": "abc"},
                params={"train.lr": "0.001"},
                metrics={"fid": 1.5, "protocol": {"seed": 0}},
                audit=audit,
                git_commit="deadbeef",
                sample_image=grid.name,
            ),
            card_files=[grid],
        )
        registry.promote(c, NAME, version)
    finally:
        del os.environ["MLFLOW_TRACKING_URI"]
    return version, run_id


def test_version_carries_a_model_card_signature_and_input_example(champion, mlflow_server, monkeypatch, tmp_path):
    version, run_id = champion
    monkeypatch.setenv("MLFLOW_TRACKING_URI", mlflow_server)
    monkeypatch.setenv("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    c = runs.client()
    mv = c.get_model_version(NAME, version)
    uri = f"runs:/{run_id}/model_card/v{version}/model_card.md"
    assert mv.tags["model_card"] == uri and f"Model card: [model_card.md]({uri})" in mv.description
    card = Path(mlflow.artifacts.download_artifacts(uri, dst_path=str(tmp_path))).read_text()
    for section in (
        "## Data",
        "data sha256: `abc`",
        "## Params",
        "| train.lr | 0.001 |",
        "| fid | 1.5 |",
        "## Audit",
        "| fd_l2 |",
        "## Protocol",
        "![samples](samples.png)",
    ):
        assert section in card
    assert {a.path for a in c.list_artifacts(run_id, f"model_card/v{version}")} == {
        f"model_card/v{version}/model_card.md",
        f"model_card/v{version}/samples.png",
    }

    info = mlflow.models.get_model_info(f"models:/{NAME}@champion")
    assert [col["name"] for col in info.signature.inputs.to_dict()] == ["n", "seed"]
    assert tuple(info.signature.outputs.to_dict()[0]["tensor-spec"]["shape"]) == (-1, 1, 8, 8)
    assert info.saved_input_example_info is not None


def test_weights_load_without_unpickling(champion, mlflow_server, monkeypatch, tmp_path):
    monkeypatch.setenv("MLFLOW_TRACKING_URI", mlflow_server)
    monkeypatch.setenv("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    runs.client()
    local = Path(mlflow.artifacts.download_artifacts(f"models:/{NAME}@champion", dst_path=str(tmp_path)))
    files = {p.relative_to(local).as_posix() for p in local.rglob("*") if p.is_file()}
    assert "artifacts/vae/model.safetensors" in files and "artifacts/vae/config.json" in files
    assert not [f for f in files if f.endswith((".pkl", ".pickle", ".pt", ".pth", ".bin"))], files

    def refuse(*_a, **_k):
        raise AssertionError("the registered model was unpickled")

    for mod in (pickle,) + tuple(m for m in (sys.modules.get("cloudpickle"),) if m):
        monkeypatch.setattr(mod, "load", refuse)
        monkeypatch.setattr(mod, "loads", refuse)
    monkeypatch.setattr("torch.load", refuse)
    model = mlflow.pyfunc.load_model(str(local))
    assert np.asarray(model.predict({"n": 2, "seed": 0})).shape == (2, 1, 8, 8)


def test_mlflow_models_serve_answers_invocations(champion, mlflow_server, free_port, tmp_path):
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTEST")}
    env.update(MLFLOW_TRACKING_URI=mlflow_server, MLFLOW_DISABLE_TELEMETRY="true")
    env["PATH"] = f"{BIN}{os.pathsep}{env.get('PATH', '')}"  # the server runs `uvicorn` from PATH
    t0 = time.time()
    proc = subprocess.Popen(
        [
            str(BIN / "mlflow"),
            "models",
            "serve",
            "-m",
            f"models:/{NAME}@champion",
            "--env-manager",
            "local",
            "-h",
            "127.0.0.1",
            "-p",
            str(free_port),
            "-w",
            "1",
        ],
        cwd=tmp_path,
        env=env,
        stdout=open(tmp_path / "serve.log", "w"),
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    try:
        url = f"http://127.0.0.1:{free_port}"
        deadline = time.time() + 60
        while True:
            try:
                wait_http(f"{url}/ping", timeout=1)
                break
            except TimeoutError:
                if proc.poll() is not None or time.time() > deadline:
                    raise AssertionError((tmp_path / "serve.log").read_text()[-3000:]) from None
        body = json.dumps({"dataframe_records": [{"n": 3, "seed": 7}]}).encode()
        req = urllib.request.Request(f"{url}/invocations", data=body, headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(req, timeout=30) as r:
            preds = np.asarray(json.loads(r.read())["predictions"], dtype=np.float32)
        assert preds.shape == (3, 1, 8, 8) and 0 <= preds.min() and preds.max() <= 1
        with urllib.request.urlopen(req, timeout=30) as r:  # seeded: the same request, the same samples
            assert np.array_equal(np.asarray(json.loads(r.read())["predictions"], dtype=np.float32), preds)
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=30)
    print(f"mlflow models serve: up and answered in {time.time() - t0:.1f}s")
