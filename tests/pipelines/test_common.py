"""What every stage shares: one literal red line for an error (a failing MLflow store included), and plain
progress lines when stderr is not a terminal."""

from __future__ import annotations

import io

import pytest

from components.errors import GenfoundryError
from pipelines import _common
from pipelines._common import PlainProgress, stage


def test_an_error_is_one_literal_line_not_rich_markup(capsys):
    @stage
    def fails():
        raise GenfoundryError("fid_ci95 = [nan, nan]: expected a finite interval, got [bold]this[/bold]\nand more")

    with pytest.raises(SystemExit) as e:
        fails()
    assert e.value.code == 2
    err = capsys.readouterr().err
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert lines == ["error: fid_ci95 = [nan, nan]: expected a finite interval, got [bold]this[/bold] and more"]


def test_a_corrupt_mlflow_db_is_one_line(tmp_path, monkeypatch, capsys):
    from mlflow.tracking import MlflowClient

    db = tmp_path / "mlflow.db"
    db.write_bytes(b"this is not an sqlite database" * 100)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{db}")

    @stage
    def uses_mlflow():  # a client of its own: runs.client() would leave the broken store as MLflow's global URI
        MlflowClient(tracking_uri=f"sqlite:///{db}").search_experiments()

    with pytest.raises(SystemExit) as e:
        uses_mlflow()
    assert e.value.code == 2
    lines = [ln for ln in capsys.readouterr().err.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith(f"error: MLflow tracking store (sqlite:///{db}): "), lines
    assert "move a damaged mlflow.db aside" in lines[0]


def test_plain_progress_prints_a_line_per_epoch_and_at_most_one_per_interval():
    out = io.StringIO()
    now = [0.0]
    bar = PlainProgress(stream=out, every_s=30, clock=lambda: now[0])
    bar.start()
    task = bar.add_task("train vae", total=None, info="starting Ray workers")
    now[0] = 1.0
    bar.update(task, total=3, completed=0, info="")  # nothing completed: no line
    now[0] = 2.0
    bar.update(task, info="step 10/50")  # no line
    now[0] = 3.0
    bar.update(task, completed=1, info="loss 12.5")  # an epoch: a line
    now[0] = 40.0
    bar.update(task, info="step 20/50")  # 37 s after the last line: a line
    lines = out.getvalue().splitlines()
    assert lines[0].startswith("train vae: 0/? starting Ray workers")
    assert lines[1].startswith("train vae: 1/3 loss 12.5") and lines[2].startswith("train vae: 1/3 step 20/50")
    assert len(lines) == 3


def test_the_stages_print_plain_lines_off_a_terminal():
    assert isinstance(_common.progress_bar(), PlainProgress)  # pytest captures stderr: not a terminal
