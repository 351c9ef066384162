"""Stages ``train_ft@EXP`` and ``train@EXP`` with ``train.init_from``: a fine-tuned experiment (params.yaml's
finetune) starts from another experiment's model, or one of experiments from a registered version; its MLflow run
and config.json record the lineage, and a bad parent, a strict shape mismatch or a freeze prefix that matches
nothing is one line with nothing trained (no run, no model). (In-process training, ``num_workers: 0``; a real
sqlite MLflow store.)"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml
from mlflow.tracking import MlflowClient

from components.data import prepare_dataset
from components.data.text import load_names, load_surnames
from tests.conftest import ROOT

pytestmark = pytest.mark.slow  # end to end: `make test-slow` (CI runs it after `make test`)

GPT = {"n_layer": 1, "n_head": 2, "n_embd": 16, "dropout": 0.0}


def experiment(dataset: str, **train) -> dict:
    return {
        "family": "gpt",
        "dataset": dataset,
        "model": GPT,
        "train": {"epochs": 1, "batch_size": 64, "lr": 0.003, "num_workers": 0, **train},
        "evaluate": {"n_samples": 200, "batch_size": 100},
        "selection": {"metric": "test_nll_nats_per_char", "mode": "min"},
    }


def write_params(d: Path, experiments: dict) -> None:
    """params.yaml with ``experiments``; those whose parent is an experiment go under ``finetune``, where
    params.yaml keeps them (their train_ft stage depends on the parent's model)."""

    def from_experiment(exp: dict) -> bool:
        init = exp["train"].get("init_from")
        source = init.get("source") if isinstance(init, dict) else init
        return isinstance(source, str) and "@" not in source and "/" not in source

    params = {
        "prepare": {"datasets": {"names": {"source": "names"}, "surnames": {"source": "surnames", "n_samples": 2000}}},
        "mlflow": {"experiment": "transfer-test", "model_prefix": "gf"},
        "experiments": {k: v for k, v in experiments.items() if not from_experiment(v)},
        "finetune": {k: v for k, v in experiments.items() if from_experiment(v)},
    }
    (d / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))


@pytest.fixture(scope="module")
def project(tmp_path_factory, mlflow_db):
    d = tmp_path_factory.mktemp("transfer")
    for name, raw in (("names", load_names()), ("surnames", load_surnames(n_samples=2000))):
        prepare_dataset(name, raw, d / "data" / "prepared", val=0.1, test=0.2, seed=0)
    env = {**os.environ, "PYTHONPATH": str(ROOT), "MLFLOW_TRACKING_URI": mlflow_db(d / "mlflow.db"),
           "OMP_NUM_THREADS": "1", "MLFLOW_DISABLE_TELEMETRY": "true"}  # fmt: skip
    write_params(d, {"gpt_p": experiment("surnames")})
    r = train(d, env, "gpt_p")
    assert r.returncode == 0, r.stderr
    return d, env


def train(d: Path, env: dict, key: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "pipelines.train", key], cwd=d, env=env, capture_output=True, text=True, timeout=600
    )


def runs_of(env: dict, key: str) -> list:
    c = MlflowClient(env["MLFLOW_TRACKING_URI"], registry_uri=env["MLFLOW_TRACKING_URI"])
    exp = c.get_experiment_by_name("transfer-test")
    return c.search_runs([exp.experiment_id], f"tags.`genfoundry.experiment` = '{key}'")


def test_a_child_starts_from_its_parent_experiment_and_records_the_lineage(project):
    d, env = project
    write_params(
        d,
        {
            "gpt_p": experiment("surnames"),
            "gpt_c": experiment("names", init_from={"source": "gpt_p", "freeze": ["net.blocks.0.attn"]}),
        },
    )
    r = train(d, env, "gpt_c")
    assert r.returncode == 0, r.stderr
    assert "init gpt_c from experiment gpt_p" in r.stderr and "not loaded: net.wpe.weight" in r.stderr
    parent = json.loads((d / "models" / "gpt_p" / "config.json").read_text())
    info = json.loads((d / "models" / "gpt_c" / "config.json").read_text())
    lineage = info["init_from"]
    assert lineage["kind"] == "experiment" and lineage["model"] == "gpt_p"
    assert lineage["weights_sha256"] == parent["weights_sha256"] and lineage["run_id"] == parent["run_id"]
    assert lineage["skipped"] == {"net.wpe.weight": "shape [14, 16] in the parent, [12, 16] here"}
    assert lineage["frozen"] == [f"net.blocks.0.attn.{m}.{t}" for m in ("c_attn", "c_proj") for t in ("bias", "weight")]
    (run,) = runs_of(env, "gpt_c")
    assert run.data.tags["parent.model"] == "gpt_p" and run.data.tags["parent.kind"] == "experiment"
    assert run.data.tags["parent.weights_sha256"] == parent["weights_sha256"]
    assert json.loads((d / "reports" / "gpt_c" / "train.json").read_text())["init_from"]["model"] == "gpt_p"
    from safetensors.numpy import load_file

    pw, cw = (
        load_file(d / "models" / "gpt_p" / "model.safetensors"),
        load_file(d / "models" / "gpt_c" / "model.safetensors"),
    )
    assert np.array_equal(pw["net.blocks.0.attn.c_attn.weight"], cw["net.blocks.0.attn.c_attn.weight"])  # frozen
    assert not np.array_equal(pw["net.blocks.0.mlp.c_fc.weight"], cw["net.blocks.0.mlp.c_fc.weight"])  # trained


def test_the_registered_child_carries_its_lineage_to_tags_card_and_leaderboard(project):
    d, env = project
    for args in (["evaluate", "gpt_c"], ["audit", "gpt_c"], ["register", "gpt_c"], ["report", "summary", "gpt_c"]):
        r = subprocess.run([sys.executable, "-m", f"pipelines.{args[0]}", *args[1:]], cwd=d, env=env,
                           capture_output=True, text=True, timeout=600)  # fmt: skip
        assert r.returncode == 0, (args, r.stderr)
    parent = json.loads((d / "models" / "gpt_p" / "config.json").read_text())
    record = json.loads((d / "reports" / "gpt_c" / "registry.json").read_text())
    assert record["parent"]["model"] == "gpt_p" and record["parent"]["weights_sha256"] == parent["weights_sha256"]
    c = MlflowClient(env["MLFLOW_TRACKING_URI"], registry_uri=env["MLFLOW_TRACKING_URI"])
    version = c.get_model_version("gf-gpt_c", record["version"])
    assert version.tags["parent.model"] == "gpt_p" and version.tags["parent.kind"] == "experiment"
    assert version.tags["parent.weights_sha256"] == parent["weights_sha256"]
    assert "Initialised from `gpt_p`" in version.description
    card = Path(c.download_artifacts(version.run_id, f"model_card/v{record['version']}/model_card.md", str(d)))
    assert "## Lineage" in card.read_text() and parent["weights_sha256"] in card.read_text()


def test_a_child_starts_from_a_registered_version(project):
    from components.tracking import publish, registry, runs

    d, env = project
    os.environ["MLFLOW_TRACKING_URI"] = env["MLFLOW_TRACKING_URI"]
    try:
        c = runs.client(d)
        info = json.loads((d / "models" / "gpt_p" / "config.json").read_text())
        version = publish.log_sampler(
            run_id=info["run_id"],
            model_dir=d / "models" / "gpt_p",
            name="gf-gpt_p",
            sample_params={"temperature": 1.0},
            example_output=["ab", "cd", "ef", "a"],
            tags={},
            description="parent",
        )
        registry.promote(c, "gf-gpt_p", version)
    finally:
        del os.environ["MLFLOW_TRACKING_URI"]
    write_params(d, {"gpt_r": experiment("names", init_from="gf-gpt_p@champion")})
    r = train(d, env, "gpt_r")
    assert r.returncode == 0, r.stderr
    (run,) = runs_of(env, "gpt_r")
    tags = run.data.tags
    assert (tags["parent.kind"], tags["parent.model"], tags["parent.version"]) == ("registered", "gf-gpt_p", version)
    assert tags["parent.weights_sha256"] == info["weights_sha256"]


@pytest.mark.parametrize(
    ("key", "init_from", "message"),
    [
        (
            "gpt_x1",
            "gf-nowhere@champion",
            "error: train.init_from: expected a registered model, got 'gf-nowhere@champion'",
        ),
        (
            "gpt_x2",
            {"source": "gpt_p", "strict": True},
            "error: finetune.gpt_x2.train.init_from.strict: expected every tensor to load, got 1 that do not: "
            "net.wpe.weight (shape [14, 16] in the parent, [12, 16] here) (parent experiment gpt_p); nothing trained",
        ),
        (
            "gpt_x3",
            {"source": "gpt_p", "freeze": ["embeddings"]},
            "error: finetune.gpt_x3.train.init_from.freeze: expected a name prefix of loaded parameters, got "
            "'embeddings', which matches none",
        ),
        (
            "gpt_x4",
            "gpt_untrained",
            "error: finetune.gpt_x4.train.init_from: expected the trained model of 'gpt_untrained' in",
        ),
    ],
)
def test_a_bad_parent_is_one_line_and_nothing_trains(project, key, init_from, message):
    d, env = project
    write_params(
        d,
        {
            "gpt_p": experiment("surnames"),
            "gpt_untrained": experiment("surnames", epochs=2),
            key: experiment("names", init_from=init_from),
        },
    )
    r = train(d, env, key)
    lines = [ln for ln in r.stderr.splitlines() if ln.strip()]
    assert r.returncode == 2 and len(lines) == 1 and message in lines[0], r.stderr
    assert not (d / "models" / key).exists() and runs_of(env, key) == []


def test_a_family_mismatch_and_a_cycle_stop_at_the_params(project):
    d, env = project
    vae = {**experiment("names", init_from="gpt_p"), "family": "vae", "model": {}}
    write_params(d, {"gpt_p": experiment("surnames"), "vae_c": vae})
    r = train(d, env, "vae_c")
    assert r.returncode == 2 and "expected an experiment of family 'vae', got 'gpt_p' of family 'gpt'" in r.stderr
    write_params(d, {"gpt_a": experiment("names", init_from="gpt_b"), "gpt_b": experiment("names", init_from="gpt_a")})
    r = train(d, env, "gpt_a")
    assert r.returncode == 2 and "expected experiments without a cycle, got gpt_a -> gpt_b -> gpt_a" in r.stderr
