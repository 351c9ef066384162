"""The parent of a transfer-learning run (``components.tracking.lineage``): a registered version (alias resolved,
weights checked like ``genfoundry sample`` checks them) or an experiment's models/ folder; bad parents are one
line. The lineage lands in tags and in the model card. (Real MLflow store: sqlite.)"""

from __future__ import annotations

import hashlib

import mlflow
import pytest

from components.data.spec import DataSpec
from components.errors import GenfoundryError
from components.models import build_model
from components.models.store import WEIGHTS, save_trained
from components.tracking import publish, registry, runs
from components.tracking.card import card_summary, model_card
from components.tracking.lineage import check_family, from_experiment, from_registry, lineage_tags

SPEC = DataSpec(name="surnames", kind="text", shape=(13,), vocab=tuple("abcdef"))
GPT = {"n_layer": 1, "n_head": 2, "n_embd": 8, "dropout": 0.0}


class Evil(mlflow.pyfunc.PythonModel):
    def predict(self, context, model_input, params=None):
        return model_input


@pytest.fixture(scope="module")
def parent_store(tmp_path_factory, mlflow_db):
    """A sqlite store with genfoundry sampler ``gf-parent`` v1 (alias champion) and cloudpickled ``gf-evil``."""
    d = tmp_path_factory.mktemp("lineage")
    mp = pytest.MonkeyPatch()
    mp.setenv("MLFLOW_TRACKING_URI", mlflow_db(d / "mlflow.db"))
    c = runs.client(d)
    exp = runs.ensure_experiment(c, "lineage", d)
    run_id = runs.find_or_create_run(c, exp, "parent", run_name="parent", tags={})
    info = {"family": "gpt", "model": GPT, "dataset": "surnames", "run_id": run_id}
    save_trained(d / "models" / "gpt_surnames", build_model("gpt", GPT, SPEC), info)
    version = publish.log_sampler(
        run_id=run_id,
        model_dir=d / "models" / "gpt_surnames",
        name="gf-parent",
        sample_params={"temperature": 1.0},
        example_output=["ab", "cd", "ef", "a"],
        tags={},
        description="a genfoundry sampler",
    )
    registry.promote(c, "gf-parent", version)
    with mlflow.start_run(experiment_id=exp):
        mlflow.pyfunc.log_model(name="m", python_model=Evil(), registered_model_name="gf-evil")
    yield d
    mp.undo()


def test_a_registered_alias_resolves_to_its_version_and_weights(parent_store):
    parent = from_registry("gf-parent@champion")
    data = (parent_store / "models" / "gpt_surnames" / WEIGHTS).read_bytes()
    assert (parent.kind, parent.model, parent.version) == ("registered", "gf-parent", "1")
    assert parent.weights == data and parent.weights_sha256 == hashlib.sha256(data).hexdigest()
    assert parent.family == "gpt" and parent.dataset == "surnames" and parent.run_id
    assert from_registry("gf-parent/1").weights_sha256 == parent.weights_sha256
    tags = parent.tags()
    assert tags["parent.model"] == "gf-parent" and tags["parent.version"] == "1"
    assert tags["parent.weights_sha256"] == parent.weights_sha256


@pytest.mark.parametrize(
    ("source", "message"),
    [
        ("gf-nowhere@champion", "train.init_from: expected a registered model, got 'gf-nowhere@champion': there is no"),
        ("gf-parent@staging", "got 'gf-parent@staging': gf-parent has no alias 'staging'"),
        ("gf-parent/7", "train.init_from 'gf-parent/7': gf-parent: expected one of versions [1], got '7'"),
        ("gf-nowhere/1", "train.init_from 'gf-nowhere/1': gf-nowhere: expected a registered model, got none"),
        ("gf-evil/1", "expected genfoundry's sampler (pyfunc logged from sampler_model.py)"),
    ],
)
def test_a_parent_that_does_not_exist_or_is_not_ours_is_one_line(parent_store, source, message):
    with pytest.raises(GenfoundryError) as e:
        from_registry(source)
    assert "\n" not in str(e.value) and message in str(e.value), str(e.value)


def test_an_experiment_parent_reads_its_models_folder_and_must_be_trained(parent_store):
    parent = from_experiment(parent_store / "models", "gpt_surnames", where="finetune.gpt_names_ft")
    assert parent.kind == "experiment" and parent.version is None and parent.label() == "experiment gpt_surnames"
    missing = r"^finetune\.gpt_names_ft\.train\.init_from: expected the trained model of 'gpt_other' .*first"
    with pytest.raises(GenfoundryError, match=missing):
        from_experiment(parent_store / "models", "gpt_other", where="finetune.gpt_names_ft")


def test_a_parent_of_another_family_is_one_line(parent_store):
    parent = from_experiment(parent_store / "models", "gpt_surnames", where="finetune.vae_x")
    with pytest.raises(GenfoundryError) as e:
        check_family(parent, "vae", where="finetune.vae_x")
    assert str(e.value) == (
        "finetune.vae_x.train.init_from: expected a vae model, got experiment gpt_surnames of family 'gpt'; "
        "nothing trained"
    )


def test_the_lineage_reaches_version_tags_and_the_model_card(parent_store):
    parent = from_registry("gf-parent@champion")
    lineage = {**parent.record(), "loaded": 12, "skipped": {"net.wpe.weight": "shape"}, "frozen": ["net.wte.weight"]}
    info = {
        "family": "gpt",
        "dataset": "names",
        "data_sha256": "d" * 64,
        "params_hash": "h",
        "run_id": "r",
        "init_from": lineage,
    }
    tags = lineage_tags(info)
    assert tags == {
        "parent.kind": "registered",
        "parent.model": "gf-parent",
        "parent.version": "1",
        "parent.weights_sha256": parent.weights_sha256,
        "parent.run_id": parent.run_id,
    }
    assert lineage_tags({"family": "gpt"}) == {}
    card = model_card(
        name="gf-child", version="1", experiment="child", info=info, params={}, metrics={}, audit={"passed": True},
        git_commit="c",
    )  # fmt: skip
    assert "## Lineage" in card and "registered model `gf-parent` v1" in card
    assert (
        parent.weights_sha256 in card and "not loaded: `net.wpe.weight`" in card and "frozen: `net.wte.weight`" in card
    )
    summary = card_summary("child", info, {"x": 1.0}, {"passed": True, "failed": []})
    assert f"Initialised from `gf-parent` v1 (weights sha256 `{parent.weights_sha256[:16]}`)" in summary
    assert "Lineage" not in model_card(
        name="n", version="1", experiment="e", info={"family": "gpt"}, params={}, metrics={}, audit={}, git_commit="c"
    )
