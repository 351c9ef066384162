"""Every params key dvc.yaml tracks must exist: the validate stage says which is missing before DVC deletes
any output (DVC checks a stage's params only when it runs it, after removing its outputs)."""

from __future__ import annotations

import copy

import yaml

from components.orchestration.dag import lineage_problems, missing_params, tracked_params
from tests.conftest import ROOT

DVC = yaml.safe_load((ROOT / "dvc.yaml").read_text())
PARAMS = yaml.safe_load((ROOT / "params.yaml").read_text())


def test_the_shipped_params_have_every_tracked_key():
    assert missing_params(DVC, PARAMS) == []
    tracked = tracked_params(DVC, PARAMS)
    assert ("train@vae_mnist", "experiments.vae_mnist.train") in tracked and ("prepare", "prepare") in tracked


def test_a_missing_section_is_named_with_the_stage_that_tracks_it():
    raw = copy.deepcopy(PARAMS)
    del raw["experiments"]["vae_mnist"]["evaluate"]
    lines = missing_params(DVC, raw)
    assert len(lines) == 2  # evaluate@ and audit@ (the share bootstrap's seed) both track it
    assert lines[0].startswith("params.yaml: expected 'experiments.vae_mnist.evaluate' (dvc.yaml's evaluate@vae_mnist")


def _dvc_train_order(tmp_path, params: dict, monkeypatch) -> list[str]:
    """The order ``dvc repro`` would train the experiments in: DVC's own plan of the real dvc.yaml (DVC reads
    params.yaml relative to the working directory)."""
    import subprocess

    from dvc.repo import Repo
    from dvc.repo.reproduce import plan_repro

    (tmp_path / "dvc.yaml").write_text((ROOT / "dvc.yaml").read_text())
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    monkeypatch.chdir(tmp_path)
    subprocess.run(["git", "init", "-q"], cwd=tmp_path, check=True)
    Repo.init(str(tmp_path))
    with Repo(str(tmp_path)) as repo:
        return [s.addressing for s in plan_repro(repo.index.graph) if s.addressing.startswith("train@")]


def test_dvc_trains_the_shipped_parent_before_its_fine_tuned_child(tmp_path, monkeypatch):
    assert lineage_problems(PARAMS) == []
    order = _dvc_train_order(tmp_path, PARAMS, monkeypatch)
    assert order.index("train@gpt_surnames") < order.index("train@gpt_names_ft")


def test_a_parent_listed_after_its_child_is_refused_in_one_line(tmp_path, monkeypatch):
    raw = copy.deepcopy(PARAMS)
    parent = raw["experiments"].pop("gpt_surnames")
    raw["experiments"]["gpt_surnames"] = parent  # now last
    order = _dvc_train_order(tmp_path, raw, monkeypatch)
    assert order.index("train@gpt_names_ft") < order.index("train@gpt_surnames")  # what DVC would do
    assert lineage_problems(raw) == [
        "experiments.gpt_names_ft.train.init_from: expected its parent 'gpt_surnames' listed before it in params.yaml "
        "(dvc repro trains experiments in that order), got it after; move 'gpt_surnames' up"
    ]
    raw["experiments"]["gpt_names_ft"]["train"]["init_from"] = "genfoundry-gpt_surnames@champion"  # the registry
    assert lineage_problems(raw) == []
