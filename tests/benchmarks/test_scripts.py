"""Every benchmark script imports with the pipeline's current APIs, and its configurations parse."""

from __future__ import annotations

import pytest

from tests.benchmarks.conftest import BENCHMARKS, load_script

SCRIPTS = sorted(p.stem for p in BENCHMARKS.glob("[!_]*.py"))


@pytest.mark.parametrize("name", SCRIPTS)
def test_script_imports(name):
    assert callable(load_script(name).main)


def test_gpu_check_families_parse():
    from components.models import parse_family_config

    for family, cfg in load_script("gpu_check").FAMILIES.items():
        parse_family_config(family, cfg["model"])


def test_mode_collapse_configs_parse():
    import argparse

    from components.models import parse_family_config

    mc = load_script("mode_collapse")
    args = argparse.Namespace(arch="cpu", epochs=1, lr=3e-4, betas=[0.5, 0.999], lr_schedule="linear",
                              n_packs=100, batch_packs=10, n_eval=10, threads=1)  # fmt: skip
    for arch in mc.ARCHS:
        for name in [*mc.CONFIGS, *mc.OTHER_FAMILIES]:
            for ds in mc.DATASETS:
                job = mc._job(argparse.Namespace(**{**vars(args), "arch": arch}), ds, name, 0)
                parse_family_config(job.get("family", "gan"), job["model"])


def test_stacked_mnist_experiments_are_in_params():
    sm = load_script("stacked_mnist")
    for family, exp in sm.experiments().items():
        assert exp.family == family and exp.dataset == sm.DATASET


def test_pipeline_profile_names_stages():
    stage_of = load_script("pipeline_profile").stage_of
    assert stage_of(["python", "-m", "pipelines.train", "gan_mnist"]) == "train@gan_mnist"
    assert stage_of(["python", "-m", "pipelines.report", "summary", "vae_mnist"]) == "summary@vae_mnist"
    assert stage_of(["python", "-m", "pipelines.report", "leaderboard"]) == "report"
    assert stage_of(["python", "-m", "pipelines.prepare"]) == "prepare"
    assert stage_of(["python", "x.py"]) is None
