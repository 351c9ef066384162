"""``experiments.<name>.tune``: the search space is typed, and a bad key or value stops with one line naming it."""

import copy

import pytest
import yaml

from components.config import parse_params
from components.errors import ConfigError
from tests.conftest import ROOT

BASE = yaml.safe_load((ROOT / "params.yaml").read_text())
EXP = next(k for k, e in BASE["experiments"].items() if e["family"] == "vae")


def _with_tune(tune):
    raw = copy.deepcopy(BASE)
    raw["experiments"][EXP]["tune"] = tune
    return raw


def test_a_search_space_parses():
    p = parse_params(
        _with_tune(
            {
                "num_samples": 4,
                "space": {"train.lr": {"loguniform": ["1e-4", 1e-2]}, "model.width": {"choice": [16, 32]}},
            }
        )
    )
    t = p.experiments[EXP].tune
    assert t.space["train.lr"].kind == "loguniform" and t.space["train.lr"].loguniform == (1e-4, 1e-2)
    assert t.metric == "val_loss" and t.mode == "min" and t.grace_period == 1


@pytest.mark.parametrize(
    ("tune", "expected"),
    [
        (
            {"space": {"train.lr": {"loguniform": [1e-2, 1e-4]}}},
            "tune.space.train.lr: expected loguniform [low, high] with low < high, got [0.01, 0.0001]",
        ),
        (
            {"space": {"train.batch_size": {"randint": [64, 32]}}},
            "tune.space.train.batch_size: expected randint [low, high] with low <= high, got [64, 32]",
        ),
        ({"space": {"train.lr": {"logunif": [1, 2]}}}, "unknown key 'experiments.EXP.tune.space.train.lr.logunif'"),
        ({"space": {"train.lr": {"choice": [1e-3], "uniform": [0, 1]}}}, "expected exactly one of"),
        (
            {"space": {"train.epochs": {"choice": [1, 2]}}},
            "experiments.EXP.tune: expected space keys among the tunable train keys",
        ),
        (
            {"space": {"optim.lr": {"choice": [1]}}},
            "experiments.EXP.tune: expected space keys 'train.<key>' or 'model.<key>', got 'optim.lr'",
        ),
        ({"space": {"model.widht": {"choice": [8]}}}, "tune.space.model.widht: vae has no hyperparameter 'widht'"),
        ({"space": {"model.width": {"choice": [0, 8]}}}, "choice value 0: 'experiments.EXP.model.width' = 0"),
        ({"space": {"train.lr": {"uniform": [-1, 1]}}}, "uniform value -1.0: 'experiments.EXP.train.lr' = -1.0"),
        ({"space": {}}, "experiments.EXP.tune: expected at least one hyperparameter in space, got none; add e.g."),
        ({"space": {"train.lr": {"choice": [0.1]}}, "num_sample": 3}, "unknown key 'experiments.EXP.tune.num_sample'"),
        ({"space": {"train.lr": {"choice": [0.1]}}, "grace_period": 1000}, "grace_period = 1000 exceeds"),
        (
            {"space": {"train.lr": {"choice": [0.1]}}, "grace_period": 3, "epochs": 2},
            "experiments.EXP.tune: expected grace_period <= epochs = 2, got 3",
        ),
        ({"space": {"train.lr": {"choice": [0.1]}}, "mode": "best"}, "'experiments.EXP.tune.mode' = 'best'"),
    ],
)
def test_a_bad_search_space_gives_one_line_naming_the_key(tune, expected):
    with pytest.raises(ConfigError) as e:
        parse_params(_with_tune(tune))
    msg = str(e.value)
    assert expected.replace("EXP", EXP) in msg
    assert "\n" not in msg
