"""What every benchmark writes: ``<out>.json`` and ``<out>.md``, both ending with the same platform block.

    run = Run(args.out)                  # first thing in main(): the load average, the clock, the command line
    ...                                  # the benchmark, its baseline in the same process
    run.write(result, markdown)          # <out>.json = {**result, "platform": {...}}, <out>.md = markdown + platform

The platform block: python, torch and Ray versions, the CPU model and count (and the CPUs this process may use),
torch's threads and the GPUs where torch is loaded, ``os.getloadavg()`` before and after, the git commit (and
whether the tree had uncommitted changes), the date and the command line. Torch and Ray are never imported here
(their versions come from the installed metadata), so a driver-only benchmark stays light.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import platform
import shlex
import subprocess
import sys
import time
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

from components.io import write_text

ROOT = Path(__file__).resolve().parents[1]


def load_average() -> list[float]:
    """1, 5 and 15-minute load averages."""
    return [round(x, 2) for x in os.getloadavg()]


def cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def package_version(dist: str) -> str | None:
    try:
        return version(dist)
    except PackageNotFoundError:
        return None


def git_state() -> dict[str, Any]:
    """The checkout's commit and whether tracked files differ from it (None where git cannot tell)."""

    def git(*args: str) -> str | None:
        try:
            return subprocess.run(
                ["git", *args], cwd=ROOT, capture_output=True, text=True, timeout=10, check=True
            ).stdout.strip()
        except (OSError, subprocess.SubprocessError):
            return None

    status = git("status", "--porcelain", "--untracked-files=no")
    return {"git_commit": git("rev-parse", "HEAD"), "git_dirty": None if status is None else bool(status)}


def command_line() -> str:
    return "python " + shlex.join(sys.argv)


def out_file(out: str | os.PathLike[str], suffix: str) -> Path:
    """``<out><suffix>``: ``reports/benchmarks/prdc`` + ``.json``; a dot in the name is kept, not replaced."""
    out = Path(out)
    return out.parent / f"{out.name}{suffix}"


def _torch_info() -> dict[str, Any]:
    torch = sys.modules.get("torch")  # only if the benchmark loaded it
    if torch is None:
        return {}
    gpus = (
        [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())] if torch.cuda.is_available() else []
    )
    return {"torch_threads": torch.get_num_threads(), "gpus": gpus, "cuda": torch.version.cuda if gpus else None}


def _json_default(o: Any) -> Any:
    if hasattr(o, "item") and callable(o.item):  # numpy / torch scalars
        return o.item()
    if hasattr(o, "tolist"):
        return o.tolist()
    return str(o)


class Run:
    """One benchmark invocation: what it measured the machine at, and where it writes."""

    def __init__(self, out: str | os.PathLike[str]) -> None:
        self.out = Path(out)
        self.load_before = load_average()
        self.started = dt.datetime.now(dt.UTC)
        self._t0 = time.perf_counter()
        self.command = command_line()

    @property
    def json_path(self) -> Path:
        return out_file(self.out, ".json")

    @property
    def md_path(self) -> Path:
        return out_file(self.out, ".md")

    def platform(self) -> dict[str, Any]:
        """The platform block, with the load average now as ``load_average_after``."""
        return {
            "python": platform.python_version(),
            "torch": package_version("torch"),
            "ray": package_version("ray"),
            "os": platform.platform(),
            "cpu": cpu_model(),
            "cpus": os.cpu_count(),
            "cpus_usable": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count(),
            **_torch_info(),
            "load_average_before": self.load_before,
            "load_average_after": load_average(),
            **git_state(),
            "date": self.started.isoformat(timespec="seconds"),
            "wall_seconds": round(time.perf_counter() - self._t0, 1),
            "command": self.command,
        }

    def write(self, result: dict[str, Any], markdown: str, *, quiet: bool = False) -> dict[str, Any]:
        """Write ``<out>.json`` (``result`` plus ``platform``) and ``<out>.md`` (``markdown`` plus the platform
        section); return the platform block. ``result`` may not carry its own ``platform`` key."""
        if "platform" in result:
            raise ValueError("result already has a 'platform' key: _report.Run.write adds it")
        block = self.platform()
        write_text(self.json_path, json.dumps({**result, "platform": block}, indent=2, default=_json_default) + "\n")
        write_text(self.md_path, markdown.rstrip("\n") + "\n\n" + platform_markdown(block))
        if not quiet:
            print(f"wrote {self.json_path} and {self.md_path}")
        return block


def platform_markdown(p: dict[str, Any]) -> str:
    """The platform block as a markdown section."""
    threads = f" ({p['torch_threads']} threads)" if p.get("torch_threads") else ""
    gpus = ", ".join(p.get("gpus") or []) or "none"
    commit = (p.get("git_commit") or "unknown")[:12]
    dirty = " with uncommitted changes" if p.get("git_dirty") else ""
    return "\n".join(
        [
            "## Platform",
            "",
            f"- python {p['python']}, torch {p['torch']}{threads}, Ray {p['ray']}; {p['os']}",
            f"- CPU: {p['cpu']}, {p['cpus']} CPUs ({p['cpus_usable']} usable by this process); GPU: {gpus}",
            f"- load average (1/5/15 min): before {p['load_average_before']}, after {p['load_average_after']} "
            "(other jobs on the machine are not controlled)",
            f"- git {commit}{dirty}; started {p['date']}, {p['wall_seconds']:.0f} s wall",
            f"- `{p['command']}`",
            "",
        ]
    )
