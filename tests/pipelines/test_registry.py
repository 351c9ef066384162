"""Register samplers in a real MLflow server; aliases champion / challenger / previous; sample from a fresh shell."""

import os
import subprocess
import sys
from pathlib import Path

import mlflow
import numpy as np
import pytest
import torch
from PIL import Image

from components.config import TrainConfig
from components.data import load_spec, load_split
from components.models import build_model
from components.models.store import save_trained
from components.tracking import publish, registry, runs
from components.training.loop import data_tensors, fit

BIN = Path(sys.executable).parent


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory, digits_root):
    spec = load_spec(digits_root, "digits")
    model = build_model("vae", {"latent_dim": 4, "width": 8}, spec)
    fit(model, data_tensors(spec, *load_split(digits_root, "digits", "train")), TrainConfig(epochs=1, lr=2e-3))
    d = tmp_path_factory.mktemp("models") / "vae_digits"
    save_trained(d, model, {"family": "vae", "model": {"latent_dim": 4, "width": 8}})
    return d


def _register(c, exp_id, model_dir, name, fid, tag):
    run_id = runs.find_or_create_run(c, exp_id, f"key-{tag}", run_name=tag, tags={})
    return publish.log_sampler(
        run_id=run_id,
        model_dir=model_dir,
        name=name,
        sample_params={},
        example_output=np.zeros((4, 1, 8, 8), np.float32),
        tags={"fingerprint": tag, "metric.fid": fid},
        description="test",
    )


def test_aliases_follow_the_gate_and_the_metric(mlflow_server, model_dir, monkeypatch):
    monkeypatch.setenv("MLFLOW_TRACKING_URI", mlflow_server)
    c = runs.client()
    exp_id = runs.ensure_experiment(c, "registry-test")
    name = "gf-test-vae"

    def decide(version, fid, passed=True):
        return registry.decide(
            c,
            name,
            version,
            audit_passed=passed,
            audit_reason="fd_l2 = 0.5 > 0.1",
            metric="fid",
            mode="min",
            value=fid,
        )

    v1 = _register(c, exp_id, model_dir, name, 10.0, "a")
    d1 = decide(v1, 10.0)
    assert d1.promoted and d1.reason == "first champion"
    v2 = _register(c, exp_id, model_dir, name, 12.0, "b")
    d2 = decide(v2, 12.0)
    assert not d2.promoted and "does not beat" in d2.reason
    assert registry.alias_version(c, name, "champion") == v1
    assert registry.alias_version(c, name, "challenger") == v2
    v3 = _register(c, exp_id, model_dir, name, 5.0, "c")
    d3 = decide(v3, 5.0, passed=False)  # better FID, but a failed audit blocks promotion
    assert not d3.promoted and "audit failed" in d3.reason
    assert c.get_model_version(name, v3).tags["promotion"].startswith("blocked")
    v4 = _register(c, exp_id, model_dir, name, 4.0, "d")
    assert decide(v4, 4.0).promoted
    assert registry.alias_version(c, name, "champion") == v4
    assert registry.alias_version(c, name, "previous") == v1
    assert registry.find_version(c, name, "b") == v2  # re-registering the same fingerprint finds it

    demoted, restored = registry.rollback(c, name)
    assert (demoted, restored) == (v4, v1)
    assert registry.alias_version(c, name, "champion") == v1


def test_promote_is_all_or_nothing_and_a_failed_audit_needs_force(mlflow_server, monkeypatch, tmp_path):
    """A failed promote used to move ``previous`` first (the next rollback read "champion 1 -> 1")."""
    from typer.testing import CliRunner

    from pipelines import cli

    monkeypatch.setenv("MLFLOW_TRACKING_URI", mlflow_server)
    monkeypatch.chdir(tmp_path)
    c = runs.client()
    name = "gf-promote-vae"
    c.create_registered_model(name)  # aliases need versions, not models: no pyfunc is logged here
    v1, v2 = (c.create_model_version(name, source="s3://genfoundry-test/bare").version for _ in range(2))
    c.set_model_version_tag(name, v2, "audit.passed", "False")
    c.set_model_version_tag(name, v2, "audit.failed", "fd_l2 = 0.3 > 0.1")
    registry.promote(c, name, v1)

    def run(*args):
        r = CliRunner().invoke(cli.app, ["promote", name, *args])
        return r.exit_code, [ln for ln in r.output.splitlines() if ln.strip()]

    code, lines = run("99")
    assert code == 2 and len(lines) == 1 and f"{name}: expected one of versions ['1', '2'], got '99'" in lines[0]
    assert registry.alias_version(c, name, "champion") == v1 and registry.alias_version(c, name, "previous") is None
    code, lines = run(v2)
    assert code == 2 and "expected a version whose audit passed" in lines[0] and "--force" in lines[0]
    assert registry.alias_version(c, name, "champion") == v1
    code, lines = run(v2, "--force")
    assert code == 2 and "--force: expected --reason" in lines[0]
    code, lines = run(v2, "--force", "--reason", "the gate threshold is under review")
    assert code == 0, lines
    assert registry.alias_version(c, name, "champion") == v2 and registry.alias_version(c, name, "previous") == v1
    forced = c.get_model_version(name, v2).tags["promotion.forced"]
    assert forced.startswith("by ") and forced.endswith(": the gate threshold is under review")
    assert "forced over a failed audit" in c.get_model_version(name, v2).tags["promotion"]


def test_champion_samples_from_the_registry_alone(mlflow_server, model_dir, monkeypatch, tmp_path):
    monkeypatch.setenv("MLFLOW_TRACKING_URI", mlflow_server)
    c = runs.client()
    exp_id = runs.ensure_experiment(c, "registry-test-2")
    name = "gf-test-sampler"
    v = _register(c, exp_id, model_dir, name, 1.0, "s")
    registry.promote(c, name, v)

    model = mlflow.pyfunc.load_model(f"models:/{name}@champion")
    a = model.predict({"n": 4, "seed": 0})
    b = model.predict({"n": 4, "seed": 0})
    assert np.asarray(a).shape == (4, 1, 8, 8) and np.array_equal(a, b)
    with pytest.raises(Exception, match="expected 1 <= n <= 10000"):
        model.predict({"n": 0, "seed": 0})

    # a fresh shell in an unrelated folder, with nothing but the registry's address
    out = tmp_path / "grid.png"
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTEST")}
    env["MLFLOW_TRACKING_URI"] = mlflow_server
    r = subprocess.run(
        [str(BIN / "genfoundry"), "sample", "--model", f"{name}@champion", "-n", "9", "-o", str(out)],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert r.returncode == 0, r.stderr
    assert Image.open(out).size[0] > 0
    r = subprocess.run(
        [str(BIN / "genfoundry"), "sample", "--model", f"{name}@nope", "-o", str(out)],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert r.returncode == 2 and r.stderr.strip().startswith("error: cannot load models:/gf-test-sampler@nope")
    assert torch.equal(torch.as_tensor(a), torch.as_tensor(b))


def test_complete_fills_the_bottom_rows_from_the_registry(mlflow_server, digits_root, monkeypatch, tmp_path):
    monkeypatch.setenv("MLFLOW_TRACKING_URI", mlflow_server)
    spec = load_spec(digits_root, "digits")
    cfg = {"dim": 8, "n_layers": 2, "kernel_size": 3, "head_dim": 16}
    model = build_model("pixelcnn", cfg, spec)
    fit(model, data_tensors(spec, *load_split(digits_root, "digits", "train")), TrainConfig(epochs=1, lr=2e-3))
    save_trained(tmp_path / "pcnn", model, {"family": "pixelcnn", "model": cfg})
    c = runs.client()
    name = "gf-test-pixelcnn"
    v = _register(c, runs.ensure_experiment(c, "registry-test-3"), tmp_path / "pcnn", name, 1.0, "p")
    registry.promote(c, name, v)

    work = tmp_path / "work"
    (work / "data").mkdir(parents=True)
    (work / "data" / "prepared").symlink_to(digits_root)
    out = work / "completion.png"
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTEST")}
    r = subprocess.run(
        [
            str(BIN / "genfoundry"),
            "complete",
            "--model",
            f"{name}@champion",
            "--dataset",
            "digits",
            "-n",
            "4",
            "--rows",
            "4",
            "-o",
            str(out),
        ],
        cwd=work,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert r.returncode == 0, r.stderr
    assert Image.open(out).size[0] > 0


def test_diffusion_samples_with_ddim_or_ddpm_and_inpaints_from_the_registry(
    mlflow_server, digits_root, monkeypatch, tmp_path
):
    monkeypatch.setenv("MLFLOW_TRACKING_URI", mlflow_server)
    spec = load_spec(digits_root, "digits")
    cfg = {"dim": 8, "dim_mults": [1], "attn": False, "timesteps": 50, "sampling_steps": 5, "inpaint_resample": 1}
    model = build_model("diffusion", cfg, spec)
    fit(model, data_tensors(spec, *load_split(digits_root, "digits", "train")), TrainConfig(epochs=1, lr=2e-3))
    save_trained(tmp_path / "ddpm", model, {"family": "diffusion", "model": cfg})
    c = runs.client()
    name = "gf-test-diffusion"
    run_id = runs.find_or_create_run(c, runs.ensure_experiment(c, "registry-test-4"), "key-d", run_name="d", tags={})
    v = publish.log_sampler(
        run_id=run_id,
        model_dir=tmp_path / "ddpm",
        name=name,
        sample_params=model.sampler_defaults(),
        example_output=np.zeros((4, 1, 8, 8), np.float32),
        tags={"fingerprint": "d"},
        description="test",
    )
    registry.promote(c, name, v)

    pyfunc = mlflow.pyfunc.load_model(f"models:/{name}@champion")
    ddim = pyfunc.predict({"n": 3, "seed": 0}, params={"sampler": "ddim", "steps": 2, "eta": 0.0})
    again = pyfunc.predict({"n": 3, "seed": 0}, params={"sampler": "ddim", "steps": 2, "eta": 0.0})
    ddpm = pyfunc.predict({"n": 3, "seed": 0}, params={"sampler": "ddpm"})
    assert np.asarray(ddim).shape == np.asarray(ddpm).shape == (3, 1, 8, 8)
    assert np.array_equal(ddim, again) and not np.array_equal(ddim, ddpm)  # the option reaches the sampler

    work = tmp_path / "work"
    (work / "data").mkdir(parents=True)
    (work / "data" / "prepared").symlink_to(digits_root)
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTEST")}
    for args in (["sample", "-n", "4", "--sampler", "ddim", "--steps", "3", "--eta", "1.0"],
                 ["inpaint", "--dataset", "digits", "--mask", "center", "-n", "2", "--steps", "3"]):  # fmt: skip
        out = work / f"{args[0]}.png"
        r = subprocess.run([str(BIN / "genfoundry"), *args, "--model", f"{name}@champion", "-o", str(out)],
                           cwd=work, env=env, capture_output=True, text=True, timeout=300)  # fmt: skip
        assert r.returncode == 0, r.stderr
        assert Image.open(out).size[0] > 0
