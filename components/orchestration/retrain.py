"""Scheduled retraining: one locked, change-detecting ``dvc repro`` with a record of what it decided.

:func:`retrain` (with the lock of :func:`exclusive_lock` held by the caller):

1. scans the watched files (``retrain.watch``; sha256 of each, a manifest in ``.genfoundry/``) and asks
   ``dvc status --json`` which stages are out of date;
2. with no stage out of date it records "nothing to do" and runs nothing (changed files that no stage
   depends on are reported, not retrained on);
3. otherwise it runs ``dvc repro`` (output streamed), and reads the decision of every experiment whose
   ``register`` stage ran (``reports/<exp>/registry.json``: the gate already promoted or kept);
4. one JSON record (time, git commit, changes, per experiment: version, champion before/after, metric old
   vs new, audit, decision and reason) is appended to ``retrain.log`` and logged as an MLflow run of the
   experiment ``<mlflow.experiment>-retrain``.

Exit codes (for a scheduler): 0 ok (promoted, kept, or nothing to do), 1 a stage failed, 2 bad
configuration, 75 (EX_TEMPFAIL) another retrain holds the lock.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import fcntl
import json
import os
import re
import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from components.config import Params
from components.errors import ConfigError, GenfoundryError
from components.io import read_json, sha256_file, write_json
from components.layout import inside

EXIT_OK, EXIT_FAILED, EXIT_CONFIG, EXIT_LOCKED = 0, 1, 2, 75
STATE_DIR = Path(".genfoundry")
LOCK_FILE = STATE_DIR / "retrain.lock"
MANIFEST_FILE = STATE_DIR / "retrain-manifest.json"
RECORD_ARTIFACT = "retrain_record.json"
_RUNNING = re.compile(r"Running stage '([^']+)'")

LineSink = Callable[[str], None]


class LockHeld(GenfoundryError):
    """Another retrain holds the lock; this one did nothing."""


# --------------------------------------------------------------------------------------------------------
# The lock


@contextlib.contextmanager
def exclusive_lock(path: str | Path) -> Iterator[None]:
    """Hold an exclusive ``flock`` on ``path`` for the block, or raise :class:`LockHeld` at once.

    The file keeps the holder's pid (for the message of a second run) and is never deleted: deleting a
    lock file lets two processes lock two different files.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 64, 0).decode(errors="replace").strip() or "unknown"
            raise LockHeld(
                f"{path}: expected a free lock, got one held by another retrain (pid {holder}); nothing done — "
                "wait for it, or remove the lock only if no retrain is running"
            ) from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        yield
    finally:
        os.close(fd)  # closing the descriptor releases the flock


# --------------------------------------------------------------------------------------------------------
# Change detection


def scan(root: Path, watch: list[str], previous: dict[str, dict[str, Any]] | None = None) -> dict[str, dict]:
    """``{relative path: {sha256, size, mtime_ns}}`` of every file under the watched paths.

    A file whose size and mtime match ``previous`` keeps its recorded hash (no re-read).
    """
    previous = previous or {}
    out: dict[str, dict[str, Any]] = {}
    for entry in watch:
        p = inside(entry, root, where="retrain.watch")
        if not p.exists():
            raise ConfigError(
                f"retrain.watch: expected existing paths, got {entry!r}, which does not exist; "
                "create it or fix retrain.watch in params.yaml"
            )
        files = [p] if p.is_file() else sorted(f for f in p.rglob("*") if f.is_file())
        for f in files:
            rel = f.relative_to(root).as_posix()
            st = f.stat()
            old = previous.get(rel)
            if old and old.get("size") == st.st_size and old.get("mtime_ns") == st.st_mtime_ns:
                out[rel] = old
            else:
                out[rel] = {"sha256": sha256_file(f), "size": st.st_size, "mtime_ns": st.st_mtime_ns}
    return out


def diff(old: dict[str, dict], new: dict[str, dict]) -> dict[str, list[str]]:
    return {
        "added": sorted(set(new) - set(old)),
        "changed": sorted(k for k in set(new) & set(old) if new[k]["sha256"] != old[k]["sha256"]),
        "removed": sorted(set(old) - set(new)),
    }


def dvc_bin() -> str:
    """The ``dvc`` beside this interpreter (a venv) if there is one, else the one on PATH."""
    here = Path(sys.executable).parent / "dvc"
    return str(here) if here.exists() else (shutil.which("dvc") or "dvc")


def dvc_status(root: Path, dvc: str | None = None) -> dict[str, Any]:
    """``dvc status --json``: out-of-date stage -> what changed (empty when everything is up to date)."""
    r = subprocess.run([dvc or dvc_bin(), "status", "--json"], cwd=root, capture_output=True, text=True, env=_env())
    if r.returncode != 0:
        raise ConfigError(
            f"`dvc status`: expected exit status 0, got {r.returncode} ({_last_error(r.stderr + r.stdout)}); "
            "fix dvc.yaml or params.yaml"
        )
    text = r.stdout.strip()
    try:
        status = json.loads(text[text.index("{") :]) if "{" in text else {}
    except json.JSONDecodeError:
        raise ConfigError(f"`dvc status --json`: expected JSON, got {text[:200]!r}") from None
    return status


@dataclass
class ReproResult:
    returncode: int
    stages_run: list[str] = field(default_factory=list)
    tail: list[str] = field(default_factory=list)

    @property
    def error(self) -> str:
        """DVC's failure line (which stage) and the stage's own one-line error (why), when both are there."""
        lines = [ln.strip() for ln in self.tail if ln.strip()]
        dvc = next((ln for ln in reversed(lines) if ln.startswith("ERROR")), None)
        stage = next((ln for ln in reversed(lines) if ln.startswith("error:")), None)
        return " — ".join(x for x in (dvc, stage) if x) or _last_error("\n".join(self.tail))


def run_repro(root: Path, on_line: LineSink, dvc: str | None = None) -> ReproResult:
    """``dvc repro``, its output passed line by line to ``on_line`` as it comes."""
    proc = subprocess.Popen(
        [dvc or dvc_bin(), "repro"],
        cwd=root,
        env=_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        bufsize=1,
    )
    result = ReproResult(returncode=-1)
    assert proc.stdout is not None
    for line in proc.stdout:
        on_line(line)
        m = _RUNNING.search(line)
        if m:
            result.stages_run.append(m.group(1))
        result.tail = (result.tail + [line.rstrip("\n")])[-40:]
    result.returncode = proc.wait()
    return result


def _env() -> dict[str, str]:
    env = dict(os.environ)
    env.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    return env


def _last_error(text: str) -> str:
    lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
    for ln in reversed(lines):
        if ln.lower().startswith("error"):
            return ln
    return lines[-1] if lines else "no output"


# --------------------------------------------------------------------------------------------------------
# The record


def dvc_outputs(root: Path) -> list[str]:
    """Path prefixes of every output declared in dvc.yaml (templated parts cut at the first ``${``)."""
    path = root / "dvc.yaml"
    if not path.exists():
        return []
    stages = (yaml.safe_load(path.read_text()) or {}).get("stages", {})
    out = []
    for stage in stages.values():
        body = stage.get("do", stage)
        for section in ("outs", "metrics", "plots"):
            for item in body.get(section, []) or []:
                p = next(iter(item)) if isinstance(item, dict) else str(item)
                out.append(p.split("${")[0])
    return out


def check_log_path(root: Path, log: str) -> Path:
    """The log file's path; an error if it lies inside a DVC output (``dvc repro`` would replace it)."""
    path = Path(log)
    inside(path, root, where="retrain.log")  # not outside the project, not through a symlink out of it
    rel = path.as_posix()
    for prefix in (p.rstrip("/") for p in dvc_outputs(root)):
        if prefix and (rel == prefix or rel.startswith(prefix + "/")):
            raise ConfigError(
                f"retrain.log: expected a path outside every DVC output (`dvc repro` replaces them), got {log!r} "
                f"inside {prefix!r}; use e.g. logs/retrain.jsonl"
            )
    return root / path


def experiment_outcome(c: Any, root: Path, experiment: str, name: str, versions_before: set[str]) -> dict[str, Any]:
    """What ``register@<experiment>`` decided, with the champion before/after and both metric values."""
    from components.tracking import registry

    decision = read_json(root / "reports" / experiment / "registry.json")
    audit_path = root / "reports" / experiment / "audit_details.json"
    audit = read_json(audit_path) if audit_path.exists() else {}
    before = decision.get("champion_before")
    metric = decision.get("metric")
    old = registry.version_metric(c, name, before, metric) if before and metric else None
    passed = bool(audit.get("passed", True))
    outcome = "promoted" if decision["promoted"] else ("blocked" if not passed else "kept")
    return {
        "model": name,
        "version": decision["version"],
        "new_version": decision["version"] not in versions_before,
        "champion_before": before,
        "champion_after": registry.alias_version(c, name, registry.CHAMPION),
        "metric": metric,
        "value_old": old,
        "value_new": decision.get("value"),
        "audit_passed": passed,
        "audit_failed": audit.get("failed", []),
        "decision": outcome,
        "reason": decision["reason"],
    }


def append_record(path: Path, record: dict[str, Any]) -> None:
    """Append one JSON line (a single write on an O_APPEND descriptor)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    line = json.dumps(record, sort_keys=True, default=str) + "\n"
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    try:
        os.write(fd, line.encode())
    finally:
        os.close(fd)


def log_to_mlflow(c: Any, experiment_name: str, record: dict[str, Any], root: Path) -> str:
    """One run in ``experiment_name``: the record as a JSON artifact, its headline as params, tags, metrics."""
    from components.tracking import runs

    exp_id = runs.ensure_experiment(c, experiment_name, root)
    files = record["changes"].get("files") or {}
    tags = {
        "outcome": record["outcome"],
        "exit_code": record["exit_code"],
        "git_commit": record["git_commit"],
        **{f"decision.{k}": f"{v['decision']}: {v['reason']}" for k, v in record["experiments"].items()},
    }
    if record.get("error"):
        tags["error"] = record["error"]
    run = c.create_run(exp_id, run_name=f"retrain {record['time']}", tags={k: str(v) for k, v in tags.items()})
    run_id = run.info.run_id
    runs.log_params(
        c,
        run_id,
        {
            "stages_out_of_date": ",".join(sorted(record["changes"]["stages"])) or "none",
            "files_added": len(files.get("added", [])),
            "files_changed": len(files.get("changed", [])),
            "files_removed": len(files.get("removed", [])),
            "warm_start": record["warm_start"],
        },
    )
    metrics: dict[str, float] = {"duration_s": record["duration_s"]}
    for k, v in record["experiments"].items():
        metrics[f"{k}.promoted"] = float(v["decision"] == "promoted")
        for which in ("value_old", "value_new"):
            if isinstance(v.get(which), int | float):
                metrics[f"{k}.{v['metric']}.{which.split('_')[1]}"] = v[which]
    runs.log_metrics(c, run_id, metrics)
    c.log_text(run_id, json.dumps(record, indent=2, sort_keys=True, default=str), RECORD_ARTIFACT)
    c.set_terminated(run_id, status="FINISHED" if record["exit_code"] == EXIT_OK else "FAILED")
    return run_id


# --------------------------------------------------------------------------------------------------------
# One retrain


def retrain(root: Path, params: Params, *, on_line: LineSink, dvc: str | None = None) -> dict[str, Any]:
    """Detect changes, maybe reproduce, and record; the caller holds the lock. Returns the record, whose
    ``exit_code`` is 0 or 1 (bad configuration raises :class:`ConfigError` before anything runs)."""
    from components.tracking import registry, runs

    t0 = time.time()
    log_path = check_log_path(root, params.retrain.log)
    manifest_path = root / MANIFEST_FILE
    previous = read_json(manifest_path) if manifest_path.exists() else None
    files = scan(root, params.retrain.watch, (previous or {}).get("files"))
    changes: dict[str, Any] = {
        "files": diff(previous["files"], files) if previous else None,
        "stages": dvc_status(root, dvc),
    }
    if previous is None:
        changes["note"] = f"first run: {len(files)} watched files recorded as the baseline"
    record: dict[str, Any] = {
        "time": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "git_commit": runs.git_commit(root),
        "watch": params.retrain.watch,
        "log": params.retrain.log,
        "warm_start": params.retrain.warm_start,
        "changes": changes,
        "stages_run": [],
        "experiments": {},
    }
    names = {k: registry.model_name(params.mlflow.model_prefix, k) for k in params.experiments}
    c = runs.client(root)
    if not changes["stages"]:
        file_changes = changes["files"] and any(changes["files"].values())
        record["outcome"] = "nothing_to_do"
        record["exit_code"] = EXIT_OK
        if file_changes:
            record["note"] = (
                "watched files changed but no stage is out of date: nothing to retrain "
                "(is the folder a dependency of a stage in dvc.yaml?)"
            )
    else:
        before = {k: _versions(c, n) for k, n in names.items()}
        stamps = {k: _mtime(root / "reports" / k / "registry.json") for k in params.experiments}
        result = run_repro(root, on_line, dvc)
        record["stages_run"] = result.stages_run
        for k in params.experiments:
            stamp = _mtime(root / "reports" / k / "registry.json")
            if stamp is not None and stamp != stamps[k]:
                try:
                    record["experiments"][k] = experiment_outcome(c, root, k, names[k], before[k])
                except Exception as e:  # the registry moved on under us, a report is malformed ...
                    record["experiments"][k] = {"decision": "unknown", "reason": f"cannot read the outcome: {e}"}
        if result.returncode == 0:
            record["outcome"], record["exit_code"] = "retrained", EXIT_OK
        else:
            record["outcome"], record["exit_code"] = "failed", EXIT_FAILED
            record["error"] = result.error
    record["duration_s"] = round(time.time() - t0, 1)
    try:
        record["mlflow_run_id"] = log_to_mlflow(c, f"{params.mlflow.experiment}-retrain", record, root)
    except Exception as e:  # an unreachable server must not lose the record: it still goes to the log file
        record["mlflow_error"] = str(e).splitlines()[0] if str(e) else type(e).__name__
    append_record(log_path, record)
    if record["exit_code"] == EXIT_OK:
        write_json(manifest_path, {"files": files, "time": record["time"]})
    return record


def _versions(c: Any, name: str) -> set[str]:
    from mlflow.exceptions import MlflowException

    try:
        return {v.version for v in c.search_model_versions(f"name = '{name}'")}
    except MlflowException:
        return set()


def _mtime(path: Path) -> int | None:
    try:
        return path.stat().st_mtime_ns
    except FileNotFoundError:
        return None
