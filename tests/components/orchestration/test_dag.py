"""Every params key dvc.yaml tracks must exist: the validate stage says which is missing before DVC deletes
any output (DVC checks a stage's params only when it runs it, after removing its outputs). A fine-tuned
experiment (params.yaml's finetune) trains after its parent because dvc.yaml says so: DVC's own graph."""

from __future__ import annotations

import copy

import yaml

from components.orchestration.dag import finetune_problems, missing_params, tracked_params
from tests.conftest import ROOT

DVC = yaml.safe_load((ROOT / "dvc.yaml").read_text())
PARAMS = yaml.safe_load((ROOT / "params.yaml").read_text())


def test_the_shipped_params_have_every_tracked_key():
    assert missing_params(DVC, PARAMS) == []
    tracked = tracked_params(DVC, PARAMS)
    assert ("train@vae_mnist", "experiments.vae_mnist.train") in tracked and ("prepare", "prepare") in tracked
    assert ("train_ft@gpt_names_ft", "finetune.gpt_names_ft.train") in tracked


def test_a_missing_section_is_named_with_the_stage_that_tracks_it():
    raw = copy.deepcopy(PARAMS)
    del raw["experiments"]["vae_mnist"]["evaluate"]
    lines = missing_params(DVC, raw)
    assert len(lines) == 2  # evaluate@ and audit@ (the share bootstrap's seed) both track it
    assert lines[0].startswith("params.yaml: expected 'experiments.vae_mnist.evaluate' (dvc.yaml's evaluate@vae_mnist")


def _dvc_graph(tmp_path, params: dict, monkeypatch):
    """DVC's graph of the real dvc.yaml over ``params`` (DVC reads params.yaml relative to the working
    directory): stage name -> the names of the stages it depends on, directly or not."""
    import subprocess

    import networkx as nx
    from dvc.repo import Repo

    (tmp_path / "dvc.yaml").write_text((ROOT / "dvc.yaml").read_text())
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    monkeypatch.chdir(tmp_path)
    subprocess.run(["git", "init", "-q"], cwd=tmp_path, check=True)
    Repo.init(str(tmp_path))
    with Repo(str(tmp_path)) as repo:
        graph = repo.index.graph  # edges point from a stage to the stages it depends on
        return {s.addressing: {d.addressing for d in nx.descendants(graph, s)} for s in graph.nodes}


def test_the_fine_tuned_child_depends_on_its_parents_model(tmp_path, monkeypatch):
    upstream = _dvc_graph(tmp_path, PARAMS, monkeypatch)
    assert "train@gpt_surnames" in upstream["train_ft@gpt_names_ft"]
    assert "train_ft@gpt_names_ft" in upstream["summary_ft@gpt_names_ft"]
    assert {"train@gpt_surnames", "train@gpt_names"} & upstream["train@gpt_names"] == set()  # nothing else gained
    assert {"summary_ft@gpt_names_ft", "summary@gpt_names"} <= upstream["report"]  # the leaderboard has both


def test_a_chain_of_fine_tunes_is_ordered_and_the_parent_must_be_spelled_out(tmp_path, monkeypatch):
    raw = copy.deepcopy(PARAMS)
    grandchild = copy.deepcopy(raw["finetune"]["gpt_names_ft"])
    grandchild["train"]["init_from"] = {"source": "gpt_names_ft"}
    raw["finetune"]["gpt_names_ft2"] = grandchild
    upstream = _dvc_graph(tmp_path, raw, monkeypatch)
    assert {"train_ft@gpt_names_ft", "train@gpt_surnames"} <= upstream["train_ft@gpt_names_ft2"]
    assert finetune_problems(PARAMS) == [] and finetune_problems(raw) == []
    raw["finetune"]["gpt_names_ft2"]["train"]["init_from"] = "gpt_names_ft"  # the shorthand: DVC cannot read it
    assert finetune_problems(raw) == [
        "finetune.gpt_names_ft2.train.init_from: expected {source: NAME} (dvc.yaml's train_ft reads "
        "init_from.source), got 'gpt_names_ft'; write init_from: {source: gpt_names_ft}"
    ]


def test_a_params_file_without_finetune_has_no_fine_tuned_stages(tmp_path, monkeypatch):
    raw = copy.deepcopy(PARAMS)
    del raw["finetune"]  # dvc.yaml's vars give the empty default
    upstream = _dvc_graph(tmp_path, raw, monkeypatch)
    assert "train@gpt_surnames" in upstream["report"] or "summary@gpt_surnames" in upstream["report"]
    assert not any(name.endswith("_ft@gpt_names_ft") for name in upstream)
