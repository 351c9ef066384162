import copy

import pytest
import yaml

from components.config import load_params, parse_params
from components.errors import ConfigError
from tests.conftest import ROOT

BASE = yaml.safe_load((ROOT / "params.yaml").read_text())


def _with(path: str, value):
    raw = copy.deepcopy(BASE)
    *parents, leaf = path.split(".")
    node = raw
    for p in parents:
        node = node[p]
    node[leaf] = value
    return raw


def test_the_shipped_params_parse():
    p = load_params(ROOT / "params.yaml")
    assert p.experiments and all(e.dataset in p.prepare.datasets for e in p.experiments.values())


@pytest.mark.parametrize(
    ("path", "value", "expected"),
    [
        ("experiments.vae_mnist.train.lr", -0.001, "'experiments.vae_mnist.train.lr' = -0.001: expected"),
        ("experiments.vae_mnist.train.epochs", "ten", "'experiments.vae_mnist.train.epochs' = 'ten'"),
        (
            "experiments.vae_mnist.train.learning_rate",
            0.1,
            "unknown key 'experiments.vae_mnist.train.learning_rate'",
        ),
        ("experiments.vae_mnist.family", "flow", "unknown family 'flow'; expected one of"),
        ("experiments.vae_mnist.dataset", "cifar", "unknown dataset 'cifar'; expected one of"),
        ("experiments.vae_mnist.model.latent", 3, "unknown key 'experiments.vae_mnist.model.latent'"),
        ("prepare.datasets.digits.source", "imagenet", "'prepare.datasets.digits.source' = 'imagenet'"),
        ("prepare.datasets.mine", {"source": "npz"}, "needs a 'path'"),
        ("features.simclr.temperature", 0, "'features.simclr.temperature' = 0: expected"),
        ("features.simclr.tau", 0.5, "unknown key 'features.simclr.tau'"),
    ],
)
def test_bad_params_give_one_line_naming_the_key(path, value, expected):
    with pytest.raises(ConfigError) as e:
        parse_params(_with(path, value))
    msg = str(e.value)
    assert expected in msg
    assert "\n" not in msg


def test_unknown_experiment_names_the_choices():
    with pytest.raises(ConfigError, match="unknown experiment 'nope'"):
        load_params(ROOT / "params.yaml").experiment("nope")


def test_non_mapping_yaml(tmp_path):
    f = tmp_path / "params.yaml"
    f.write_text("- a\n- b\n")
    with pytest.raises(ConfigError, match="expected a mapping"):
        load_params(f)
