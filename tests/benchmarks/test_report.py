"""benchmarks/_report.py: every benchmark's <out>.json / <out>.md and their platform block."""

from __future__ import annotations

import json

import pytest
from _report import Run, out_file, platform_markdown

PLATFORM_KEYS = {
    "python", "torch", "ray", "os", "cpu", "cpus", "cpus_usable", "load_average_before", "load_average_after",
    "git_commit", "git_dirty", "date", "wall_seconds", "command",
}  # fmt: skip


def test_out_file_appends_the_suffix():
    assert out_file("reports/benchmarks/prdc", ".json").as_posix() == "reports/benchmarks/prdc.json"
    assert out_file("a/mode_collapse", ".runs.jsonl").name == "mode_collapse.runs.jsonl"
    assert out_file("a/prdc.v2", ".md").name == "prdc.v2.md"  # with_suffix would have made it prdc.md


def test_write_adds_the_platform_block_to_both_files(tmp_path):
    import numpy as np

    run = Run(tmp_path / "sub" / "bench")
    block = run.write({"ratio": np.float32(1.5), "rows": [1, 2]}, "# Bench\n\nratio 1.5\n", quiet=True)
    assert PLATFORM_KEYS <= set(block)
    assert len(block["load_average_before"]) == 3 and len(block["load_average_after"]) == 3
    assert block["command"].startswith("python ")
    blob = json.loads((tmp_path / "sub" / "bench.json").read_text())
    assert blob["ratio"] == 1.5 and blob["rows"] == [1, 2] and blob["platform"]["cpus"] == block["cpus"]
    md = (tmp_path / "sub" / "bench.md").read_text()
    assert md.startswith("# Bench\n\nratio 1.5\n\n## Platform\n") and "load average (1/5/15 min)" in md
    with pytest.raises(ValueError, match="platform"):
        run.write({"platform": "mine"}, "", quiet=True)


def test_platform_markdown_without_torch_or_git():
    p = {"python": "3.11", "torch": None, "ray": None, "os": "Linux", "cpu": "x", "cpus": 2, "cpus_usable": 1,
         "load_average_before": [1, 1, 1], "load_average_after": [2, 2, 2], "git_commit": None, "git_dirty": None,
         "date": "2025-01-01T00:00:00+00:00", "wall_seconds": 1.0, "command": "python b.py"}  # fmt: skip
    md = platform_markdown(p)
    assert "GPU: none" in md and "git unknown" in md and "`python b.py`" in md
