"""Every benchmark script imports with the pipeline's current APIs, and its configurations parse."""

from __future__ import annotations

import numpy as np
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
    ft = frozenset({"gpt_names_ft"})  # an experiment under params.yaml's finetune: dvc.yaml's *_ft stages
    assert stage_of(["python", "-m", "pipelines.train", "gpt_names_ft"], ft) == "train_ft@gpt_names_ft"
    assert stage_of(["python", "-m", "pipelines.report", "summary", "gpt_names_ft"], ft) == "summary_ft@gpt_names_ft"
    assert stage_of(["python", "-m", "pipelines.train", "gpt_names"], ft) == "train@gpt_names"


def test_pipeline_profile_reads_the_finetune_keys(tmp_path):
    finetune_keys = load_script("pipeline_profile").finetune_keys
    (tmp_path / "params.yaml").write_text("experiments: {a: {}}\nfinetune: {b: {}, c: {}}\n")
    assert finetune_keys(str(tmp_path / "params.yaml")) == {"b", "c"}
    (tmp_path / "params.yaml").write_text("experiments: {a: {}}\n")
    assert finetune_keys(str(tmp_path / "params.yaml")) == frozenset()
    assert finetune_keys(str(tmp_path / "missing.yaml")) == frozenset()


def test_collect_pipeline_copies_every_experiments_reports(tmp_path, monkeypatch):
    import json
    import shutil

    from components.config import load_params
    from tests.conftest import ROOT

    shutil.copyfile(ROOT / "params.yaml", tmp_path / "params.yaml")
    monkeypatch.chdir(tmp_path)
    experiments = load_params().experiments
    for key, exp in experiments.items():
        (tmp_path / "reports" / key / "eval").mkdir(parents=True)
        for name in ("train.json", "eval_details.json", "audit_details.json", "registry.json"):
            (tmp_path / "reports" / key / name).write_text(json.dumps({"file": name, "exp": key}))
        (tmp_path / "reports" / key / "eval" / "samples.png").write_bytes(b"png " + key.encode())
        if exp.family == "wavenet":
            for i in range(12):  # sample_10 sorts after sample_9: numeric order
                (tmp_path / "reports" / key / "eval" / f"sample_{i}.wav").write_bytes(f"wav{i}".encode())
    (tmp_path / "reports" / "leaderboard.md").write_text("# board\n")
    board = load_script("collect_pipeline").collect(tmp_path / "out", wavs=3)
    assert list(board) == list(experiments)
    saved = json.loads((tmp_path / "out" / "pipeline_leaderboard.json").read_text())
    key = next(iter(experiments))
    assert saved[key]["eval"] == {"file": "eval_details.json", "exp": key} and saved[key]["family"]
    assert (tmp_path / "out" / "pipeline" / f"{key}_samples.png").read_bytes() == b"png " + key.encode()
    audio = [k for k, e in experiments.items() if e.family == "wavenet"]
    for k in audio:
        assert [(tmp_path / "out" / "audio" / f"{k}_{i}.wav").read_bytes() for i in range(3)] == [
            b"wav0",
            b"wav1",
            b"wav2",
        ]
        assert not (tmp_path / "out" / "audio" / f"{k}_3.wav").exists()
    assert (tmp_path / "out" / "pipeline_leaderboard.md").read_text() == "# board\n"


def test_wavenet_timbre_spectral_shape_of_a_known_tone():
    spectral_shape = load_script("wavenet_timbre").spectral_shape
    t = np.arange(4000) / 8000
    tone = np.sin(2 * np.pi * 220 * t) + 0.5 * np.sin(2 * np.pi * 440 * t)  # h2 at −6.02 dB
    s = spectral_shape(np.stack([tone, np.zeros_like(tone)])[:, None], 8000)  # silence has no f0: left out
    assert s["clips_with_f0"] == 1 and s["harmonics_2_5_db"][0] == pytest.approx(-6.0, abs=0.1)
    assert s["noise_floor_db"] < -40
