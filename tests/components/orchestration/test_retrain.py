import os
import subprocess
import sys

import pytest

from components.errors import ConfigError
from components.orchestration.retrain import LockHeld, check_log_path, diff, dvc_outputs, exclusive_lock, scan
from tests.conftest import ROOT


def test_a_second_lock_fails_at_once_naming_the_holder(tmp_path):
    lock = tmp_path / ".genfoundry" / "retrain.lock"
    with exclusive_lock(lock):
        assert lock.read_text().strip() == str(os.getpid())
        # another process (flock locks belong to open files: a second open in this process would conflict too)
        code = (
            "import sys; from components.orchestration.retrain import exclusive_lock, LockHeld\n"
            f"try:\n    with exclusive_lock({str(lock)!r}): sys.exit(0)\n"
            "except LockHeld as e:\n    print(e); sys.exit(75)"
        )
        r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=60)
        assert r.returncode == 75 and f"held by another retrain (pid {os.getpid()})" in r.stdout
        with (
            pytest.raises(LockHeld, match="expected a free lock, got one held by another retrain"),
            exclusive_lock(lock),
        ):
            pass
        assert lock.read_text().strip() == str(os.getpid())  # the failed attempt left the holder's pid
    with exclusive_lock(lock):  # released on exit
        pass


def test_scan_and_diff_report_added_changed_and_removed_files(tmp_path):
    raw = tmp_path / "data" / "raw"
    (raw / "a").mkdir(parents=True)
    (raw / "a" / "1.png").write_bytes(b"one")
    (raw / "2.txt").write_text("two")
    first = scan(tmp_path, ["data/raw"])
    assert set(first) == {"data/raw/a/1.png", "data/raw/2.txt"}
    (raw / "a" / "1.png").write_bytes(b"uno")
    (raw / "2.txt").unlink()
    (raw / "3.txt").write_text("three")
    second = scan(tmp_path, ["data/raw"], first)
    assert diff(first, second) == {
        "added": ["data/raw/3.txt"],
        "changed": ["data/raw/a/1.png"],
        "removed": ["data/raw/2.txt"],
    }
    assert diff(second, scan(tmp_path, ["data/raw"], second)) == {"added": [], "changed": [], "removed": []}
    with pytest.raises(
        ConfigError, match="^retrain.watch: expected existing paths, got 'data/nope', which does not exist"
    ):
        scan(tmp_path, ["data/nope"])


def test_the_log_may_not_live_in_a_dvc_output():
    outs = dvc_outputs(ROOT)
    assert "data/prepared" in outs and "models/" in outs and "reports/" in outs
    assert check_log_path(ROOT, "logs/retrain.jsonl") == ROOT / "logs" / "retrain.jsonl"
    for bad in ("reports/retrain.jsonl", "models/x/retrain.jsonl", "data/prepared/log.jsonl"):
        with pytest.raises(
            ConfigError, match=rf"^retrain.log: expected a path outside every DVC output .* got '{bad}' inside"
        ):
            check_log_path(ROOT, bad)
