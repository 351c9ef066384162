"""The leaderboard's stage commands in-process: ``summary EXP`` bundles the reports, ``genfoundry leaderboard``
prints the markdown; missing inputs stop with one line naming the stage to run. (A real ``dvc repro`` of
both stages, with the MLflow run, is in test_dvc_pipeline.py.)"""

import base64
import json
import shutil
from pathlib import Path

from typer.testing import CliRunner

from pipelines import cli, report

ROOT = Path(__file__).resolve().parents[2]


def _reports(root, *, registry=True, key="exp"):
    d = root / "reports" / key
    (d / "eval").mkdir(parents=True)
    (d / "eval_details.json").write_text(json.dumps({"fid": 12.5, "fid_ci95": [11.0, 14.0]}))
    (d / "audit_details.json").write_text(json.dumps({"passed": True, "failed": []}))
    if registry:
        (d / "registry.json").write_text(json.dumps({"version": "1", "aliases": ["champion"], "promoted": True}))
    (d / "eval" / "samples.png").write_bytes(b"\x89PNG fake")


def test_summary_bundles_one_experiments_reports(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    _reports(tmp_path)
    r = CliRunner().invoke(report.app, ["summary", "exp"])
    assert r.exit_code == 0, r.output
    s = json.loads((tmp_path / "reports" / "summaries" / "exp.json").read_text())
    assert s["eval"]["fid_ci95"] == [11.0, 14.0] and s["registry"]["aliases"] == ["champion"]
    assert base64.b64decode(s["figures"]["samples"]) == b"\x89PNG fake"


def test_a_missing_report_names_the_stage_to_run(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    _reports(tmp_path, registry=False)
    r = CliRunner().invoke(report.app, ["summary", "exp"])
    assert r.exit_code == 2
    assert "Expected reports/exp/registry.json for the leaderboard, got no such file; run `dvc repro register@exp`" in (
        " ".join(r.output.split())
    )


def test_genfoundry_leaderboard_prints_the_markdown(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    r = CliRunner().invoke(cli.app, ["leaderboard"])
    assert r.exit_code == 2 and "run `dvc repro report` first" in " ".join(r.output.split())
    (tmp_path / "reports").mkdir()
    board = "# Leaderboard\n\n| experiment | FID |\n|---|---|\n| exp | 12.5 |\n"
    (tmp_path / "reports" / "leaderboard.md").write_text(board)
    r = CliRunner().invoke(cli.app, ["leaderboard"])
    assert r.exit_code == 0 and "Leaderboard" in r.output and "12.5" in r.output and "|---|" not in r.output


def test_a_missing_report_of_a_fine_tune_names_its_ft_stage(tmp_path, monkeypatch):
    shutil.copy(ROOT / "params.yaml", tmp_path / "params.yaml")  # gpt_names_ft is under finetune:
    monkeypatch.chdir(tmp_path)
    _reports(tmp_path, registry=False, key="gpt_names_ft")
    r = CliRunner().invoke(report.app, ["summary", "gpt_names_ft"])
    assert r.exit_code == 2
    assert "run `dvc repro register_ft@gpt_names_ft`" in " ".join(r.output.split())
