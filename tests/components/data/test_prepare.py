"""``components.data`` (split_indices, prepare_dataset) and the ``prepare`` params that feed it."""

import copy
import inspect

import numpy as np
import pytest
import yaml

from components.config import DatasetConfig, PrepareConfig, parse_params
from components.data import get_source, prepare_dataset, split_indices
from components.data.spec import RawData
from components.errors import ConfigError, DataError
from tests.conftest import ROOT

BASE = yaml.safe_load((ROOT / "params.yaml").read_text())


def _points(n, labels=False):
    y = np.arange(n) % 2 if labels else None
    return RawData(x=np.zeros((n, 2), np.float32), y=y, kind="points", class_names=("a", "b") if labels else ())


def test_split_leaving_no_validation_items_is_refused_with_the_counts(tmp_path):
    with pytest.raises(DataError) as e:
        prepare_dataset("user", _points(5), tmp_path, val=0.1, test=0.2, seed=0)
    msg = str(e.value)
    assert msg.startswith("user: expected at least 1 sample in val and test, got train 4, val 0, test 1")
    assert "add samples or raise prepare.split.val" in msg and "val: 0" in msg and "\n" not in msg
    assert list(tmp_path.iterdir()) == []


def test_split_leaving_no_test_items_is_refused(tmp_path):
    with pytest.raises(DataError, match=r"user: expected at least 1 sample in test, got train 2, val 0, test 0"):
        prepare_dataset("user", _points(2), tmp_path, val=0.0, test=0.2, seed=0)


def test_stratified_split_rounding_every_class_to_zero_is_refused(tmp_path):
    # 2 classes x 4 samples, val 0.1: each class rounds its val share to 0
    with pytest.raises(DataError, match=r"user: .*got train 6, val 0, test 2 .*stratified"):
        prepare_dataset("user", _points(8, labels=True), tmp_path, val=0.1, test=0.2, seed=0)


def test_val_zero_is_allowed_explicitly(tmp_path):
    m = prepare_dataset("user", _points(5), tmp_path, val=0.0, test=0.2, seed=0)
    assert m["splits"]["val"]["n"] == 0 and m["splits"]["test"]["n"] == 1


def test_split_indices_alone_still_accepts_empty_val():
    idx = split_indices(5, None, val=0.1, test=0.2, seed=0)
    assert [len(idx[s]) for s in ("train", "val", "test")] == [4, 0, 1]


@pytest.mark.parametrize("name", ["../../../x", "/abs/folder", "a/b", "..", ".hidden", "", "x" * 65, "a b"])
def test_prepare_dataset_refuses_a_name_that_is_not_a_plain_folder_name(tmp_path, name):
    out = tmp_path / "prepared"
    with pytest.raises((DataError, ConfigError), match="plain name"):
        prepare_dataset(name, _points(20), out, val=0.1, test=0.2, seed=0)
    assert sorted(p.name for p in tmp_path.rglob("*")) == []


def test_prepare_dataset_refuses_an_output_folder_that_resolves_elsewhere(tmp_path):
    out, elsewhere = tmp_path / "prepared", tmp_path / "elsewhere"
    out.mkdir()
    elsewhere.mkdir()
    (out / "user").symlink_to(elsewhere, target_is_directory=True)
    with pytest.raises(DataError, match=r"user: expected the output folder inside .*prepared, got .*elsewhere"):
        prepare_dataset("user", _points(20), out, val=0.1, test=0.2, seed=0)
    assert list(elsewhere.iterdir()) == []


# --- the prepare params: dataset names, paths and the new limits -------------------------------------------------


def _with_dataset(name, ds):
    raw = copy.deepcopy(BASE)
    raw["prepare"]["datasets"][name] = ds
    return raw


@pytest.mark.parametrize("name", ["../../../x", "/abs/folder", "a/b", "-x", "x" * 65, "a.b"])
def test_dataset_key_that_is_not_a_plain_name_is_refused(name):
    with pytest.raises(ConfigError) as e:
        parse_params(_with_dataset(name, {"source": "digits"}))
    msg = str(e.value)
    assert "prepare.datasets" in msg and repr(name) in msg and "letters, digits, '_' and '-'" in msg
    assert "\n" not in msg


def test_plain_dataset_keys_are_fine():
    p = parse_params(_with_dataset("My_data-2", {"source": "digits"}))
    assert "My_data-2" in p.prepare.datasets
    assert parse_params(_with_dataset("x" * 64, {"source": "digits"}))


@pytest.mark.parametrize("path", ["/etc/passwd", "../outside", "data/raw/../../../x"])
def test_dataset_path_outside_the_project_is_refused_at_the_config(path):
    with pytest.raises(ConfigError, match=r"prepare\.datasets\.mine\.path: expected a path relative to the project"):
        parse_params(_with_dataset("mine", {"source": "npz", "path": path}))


def test_new_limits_parse_with_defaults_and_refuse_bad_values():
    p = parse_params(_with_dataset("mine", {"source": "imagefolder", "path": "data/raw/mine"}))
    ds = p.prepare.datasets["mine"]
    assert ds.follow_symlinks is False and ds.max_pixels == 4096 * 4096 and ds.max_classes == 1000
    with pytest.raises(ConfigError, match=r"'prepare.datasets.mine.max_pixels' = 0"):
        parse_params(_with_dataset("mine", {"source": "imagefolder", "path": "data/raw/mine", "max_pixels": 0}))


@pytest.mark.parametrize(
    ("source", "key", "value"),
    [("npz", "max_pixels", 10), ("imagefolder", "min_unique", 2), ("digits", "follow_symlinks", True)],
)
def test_a_limit_set_on_a_source_it_does_not_apply_to_is_refused(source, key, value):
    ds = {"source": source, key: value} | ({"path": "data/raw/x"} if source != "digits" else {})
    with pytest.raises(ConfigError, match=rf"prepare\.datasets\.mine: '{key}' applies to .*, not to source '{source}'"):
        parse_params(_with_dataset("mine", ds))


@pytest.mark.parametrize("source", ["imagefolder", "npz", "textfile", "notes", "audiofolder"])
def test_the_config_defaults_are_the_source_defaults(source):
    fn = get_source(source)
    sig = inspect.signature(fn).parameters
    kwargs = DatasetConfig(source=source, path="data/raw/x").source_kwargs()
    for key, value in kwargs.items():
        if key in sig and sig[key].default is not inspect.Parameter.empty:
            assert sig[key].default == value, f"{source}: {key} defaults to {sig[key].default} here, {value} in params"


def test_source_kwargs_pass_every_field_but_the_source():
    ds = DatasetConfig(source="textfile", path="data/raw/t.txt", min_unique=3, max_line_chars=40)
    kw = ds.source_kwargs()
    assert kw["path"] == "data/raw/t.txt" and kw["min_unique"] == 3 and kw["max_line_chars"] == 40
    assert "source" not in kw
    assert PrepareConfig(datasets={"t": ds}).datasets["t"] is ds


def test_prepare_stage_passes_the_limits_to_the_source(tmp_path, monkeypatch):
    """pipelines/prepare.py forwards a dataset's fields: a textfile of 3 distinct lines passes with min_unique 3."""
    from typer.testing import CliRunner

    from pipelines import prepare as stage

    (tmp_path / "data" / "raw").mkdir(parents=True)
    (tmp_path / "data" / "raw" / "t.txt").write_text("ab\ncd\nef\n" * 10)
    raw = copy.deepcopy(BASE)
    raw["prepare"]["datasets"] = {"t": {"source": "textfile", "path": "data/raw/t.txt", "min_unique": 3}}
    raw["experiments"], raw["finetune"] = {}, {}
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(raw))
    result = CliRunner().invoke(stage.app, [])
    assert result.exit_code == 0, result.output
    assert (tmp_path / "data" / "prepared" / "t" / "manifest.json").exists()
