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


@pytest.mark.parametrize(
    ("path", "value", "expected"),
    [
        # a YAML boolean is never a number (pydantic's lax mode read `epochs: true` as 1)
        ("experiments.vae_mnist.train.epochs", True, "'experiments.vae_mnist.train.epochs' = True: expected a whole"),
        ("experiments.vae_mnist.train.lr", False, "'experiments.vae_mnist.train.lr' = False: expected a number"),
        ("experiments.vae_mnist.model.latent_dim", True, "'experiments.vae_mnist.model.latent_dim' = True"),
        # selection.metric is checked before anything trains
        ("experiments.vae_mnist.selection.metric", "fdi", "experiments.vae_mnist.selection.metric: expected one of"),
        ("experiments.gpt_names.selection.metric", "fid", "got 'fid'"),
        # names become folders, user paths stay inside the project
        ("retrain.log", "../x.jsonl", "retrain.log: expected a path relative to the project root, without '..'"),
        ("retrain.log", "/tmp/x.jsonl", "retrain.log: expected a path relative to the project root"),
        ("retrain.watch", ["data/raw", "../../etc"], "retrain.watch[1]: expected a path relative"),
        ("experiments.vae_mnist.evaluate.n_samples", 2, "'experiments.vae_mnist.evaluate.n_samples' = 2: expected"),
    ],
)
def test_more_bad_params_give_one_line(path, value, expected):
    with pytest.raises(ConfigError) as e:
        parse_params(_with(path, value))
    assert expected in str(e.value) and "\n" not in str(e.value)


def test_gan_selection_may_name_a_points_metric_and_pixelcnn_its_likelihood():
    p = parse_params(BASE)
    assert p.experiments["gan_grid25"].selection.metric == "reverse_kl"
    assert p.experiments["pixelcnn_mnist"].selection.metric == "test_nll_bits_per_dim"


@pytest.mark.parametrize("key", ["../../../x", "/abs/folder", "a/b", "..", "with space", "x" * 65])
def test_an_experiment_key_must_be_a_plain_name(key):
    raw = copy.deepcopy(BASE)
    raw["experiments"][key] = raw["experiments"].pop("vae_mnist")
    with pytest.raises(ConfigError, match=r"experiments: a key: expected a plain name \(letters, digits"):
        parse_params(raw)


def test_a_duplicate_key_names_its_line_and_column(tmp_path):
    f = tmp_path / "params.yaml"
    f.write_text("prepare:\n  seed: 0\n  seed: 1\n")
    with pytest.raises(ConfigError, match=r"params.yaml:3:3: not valid YAML: duplicate key 'seed' \(first at line 2\)"):
        load_params(f)


def test_a_yaml_syntax_error_names_its_line_and_column(tmp_path):
    f = tmp_path / "params.yaml"
    f.write_text("prepare:\n  datasets: [a, b\n  seed: 0\n")
    with pytest.raises(ConfigError, match=r"params.yaml:3:\d+: not valid YAML: "):
        load_params(f)


def test_a_missing_file_names_the_fix_not_an_option_that_does_not_exist(tmp_path):
    with pytest.raises(ConfigError) as e:
        load_params(tmp_path / "params.yaml")
    assert "run genfoundry from the project root" in str(e.value) and "--params" not in str(e.value)


def _init_from(key: str, value, **changes):
    """BASE with ``init_from: value`` on ``key`` and ``changes`` applied; an experiment whose parent is then an
    experiment moves under ``finetune`` (where params.yaml keeps those)."""
    raw = copy.deepcopy(BASE)
    raw["experiments"].update(raw.pop("finetune", {}))
    raw["experiments"][key]["train"]["init_from"] = value
    for path, v in changes.items():
        *parents, leaf = path.split(".")
        node = raw
        for part in parents:
            node = node[part]
        node[leaf] = v
    raw["finetune"] = {}
    for k in list(raw["experiments"]):
        init = raw["experiments"][k].get("train", {}).get("init_from")
        source = init.get("source") if isinstance(init, dict) else init
        if isinstance(source, str) and "@" not in source and "/" not in source:
            raw["finetune"][k] = raw["experiments"].pop(k)
    return raw


def test_init_from_reads_a_bare_source_and_tells_registered_models_from_experiments():
    p = parse_params(_init_from("gpt_names", "genfoundry-gpt_surnames@champion"))
    init = p.experiments["gpt_names"].train.init_from
    assert init.source == "genfoundry-gpt_surnames@champion" and init.registered and not init.strict
    p = parse_params(_init_from("gpt_names", {"source": "gpt_surnames", "freeze": ["net.wte"], "lr_mult": 0.3}))
    init = p.experiments["gpt_names"].train.init_from
    assert not init.registered and init.freeze == ["net.wte"] and init.lr_mult == 0.3
    assert parse_params(_init_from("gpt_names", "genfoundry-gpt_surnames/3")).experiments["gpt_names"].train.init_from


def test_the_shipped_transfer_experiment_starts_from_its_parent():
    p = load_params(ROOT / "params.yaml")
    assert p.experiments["gpt_names_ft"].train.init_from.source == "gpt_surnames"
    assert p.where("gpt_names_ft") == "finetune.gpt_names_ft" and p.where("gpt_names") == "experiments.gpt_names"
    assert p.stage("train", "gpt_names_ft") == "train_ft@gpt_names_ft"
    assert p.stage("audit", "gpt_names") == "audit@gpt_names"
    assert list(p.finetune) == ["gpt_names_ft"] and list(p.experiments)[-1] == "gpt_names_ft"  # one table
    assert p.prepare.datasets["surnames"].source == "surnames"


def test_an_experiment_parent_belongs_under_finetune_and_only_there():
    raw = copy.deepcopy(BASE)
    raw["experiments"]["gpt_names_ft"] = raw["finetune"].pop("gpt_names_ft")
    with pytest.raises(ConfigError, match=r"experiments\.gpt_names_ft\.train\.init_from: expected a registered model "
                       r"\(NAME@ALIAS, NAME/VERSION\) in experiments, got the experiment 'gpt_surnames'; move "
                       r"'gpt_names_ft' under finetune:"):  # fmt: skip
        parse_params(raw)
    raw = copy.deepcopy(BASE)
    raw["finetune"]["gpt_names_ft"]["train"]["init_from"] = "genfoundry-gpt_surnames@champion"
    with pytest.raises(ConfigError, match=r"finetune\.gpt_names_ft\.train\.init_from: expected an experiment of "
                       r"params\.yaml to start from, got the registered model"):  # fmt: skip
        parse_params(raw)
    raw = copy.deepcopy(BASE)
    raw["finetune"]["gpt_names"] = raw["experiments"]["gpt_names"]
    with pytest.raises(ConfigError, match=r"finetune: expected keys not also in experiments, got \['gpt_names'\]"):
        parse_params(raw)


def test_run_hashes_of_experiments_without_init_from_do_not_change():
    from components.config import TrainConfig

    assert "init_from" not in TrainConfig().shaping_dump()
    assert TrainConfig(init_from="gpt_a").shaping_dump()["init_from"]["source"] == "gpt_a"


@pytest.mark.parametrize(
    ("key", "value", "changes", "expected"),
    [
        (
            "gpt_names",
            "gpt_nowhere",
            {},
            "finetune.gpt_names.train.init_from.source: expected an experiment of params.yaml [",
        ),
        (
            "gpt_names",
            "vae_mnist",
            {},
            "finetune.gpt_names.train.init_from.source: expected an experiment of family 'gpt', got 'vae_mnist' "
            "of family 'vae'",
        ),
        ("gpt_names", "gpt_names", {}, "expected experiments without a cycle, got gpt_names -> gpt_names"),
        (
            "gpt_names",
            "gpt_names_ft",
            {
                "experiments.gpt_names_ft.train.init_from": "gpt_surnames",
                "experiments.gpt_surnames.train.init_from": "gpt_names",
            },
            "expected experiments without a cycle, got ",
        ),
        ("gpt_names", "a/b/c", {}, "init_from' = 'a/b/c': expected a source NAME@ALIAS"),
        (
            "gpt_names",
            "gpt names",
            {},
            "init_from' = 'gpt names': expected a source NAME@ALIAS or NAME/VERSION (a registered model) or an",
        ),
        ("gpt_names", "../models", {}, "init_from' = '../models': expected a source NAME@ALIAS"),
        ("gpt_names", {"source": "gpt_surnames", "lr_mult": 0}, {}, "'finetune.gpt_names.train.init_from.lr_mult'"),
        ("gpt_names", {"source": "gpt_surnames", "frozen": ["x"]}, {}, "unknown key 'finetune.gpt_names.train"),
    ],
)
def test_bad_init_from_is_one_line(key, value, changes, expected):
    with pytest.raises(ConfigError) as e:
        parse_params(_init_from(key, value, **changes))
    assert "\n" not in str(e.value) and expected in str(e.value), str(e.value)
