"""Wall time and peak memory of every stage of ``dvc repro`` (issue 8: the default pipeline in <= 20 min, <= 4 GB).

    python benchmarks/pipeline_profile.py            # runs `dvc repro` here, polling its process tree
    python benchmarks/pipeline_profile.py -- -f      # arguments after -- go to dvc repro

Every second it walks the process tree under ``dvc repro``; a stage is a process whose command line runs
``-m pipelines.<stage> [args]``, together with everything it started (its local Ray instance - GCS, raylet,
the training workers - is its descendant). Per stage: wall seconds from first to last sight, and the peak of
the summed resident set size (RSS) of that tree, and of its summed proportional set size (PSS: each shared
page divided among the processes that map it, from /proc/<pid>/smaps_rollup). Summed RSS counts a shared page
once per process (torch's libraries in every Ray worker), so it is an upper bound on the memory the stage
needs; summed PSS is what the tree really occupies. Writes ``reports/benchmarks/pipeline_profile.{json,md}``
(``--out``; with the platform block of benchmarks/_report.py, the load average before and after included).
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from pathlib import Path

import psutil
from _report import Run

from components.config import read_yaml

POLL_S = 1.0  # s; reading every process's smaps_rollup at 0.5 s cost about 0.3 of a core


def stage_of(cmdline: list[str], finetune: frozenset[str] = frozenset()) -> str | None:
    """``python -m pipelines.train gan_mnist`` -> ``train@gan_mnist``; ``... report leaderboard`` -> ``report``;
    an experiment in ``finetune`` (params.yaml's finetune section) -> dvc.yaml's ``train_ft@...`` and so on."""
    if "-m" not in cmdline:
        return None
    i = cmdline.index("-m")
    if i + 1 >= len(cmdline) or not cmdline[i + 1].startswith("pipelines."):
        return None
    module, args = cmdline[i + 1].removeprefix("pipelines."), cmdline[i + 2 :]
    if module == "report":
        if args[:1] != ["summary"] or len(args) < 2:
            return "report"
        module, args = "summary", args[1:]
    if not args:
        return module
    return f"{module}_ft@{args[0]}" if args[0] in finetune else f"{module}@{args[0]}"


def finetune_keys(params: str = "params.yaml") -> frozenset[str]:
    """The experiment keys under params.yaml's ``finetune:`` section (none without the file or section)."""
    path = Path(params)
    raw = read_yaml(path) if path.exists() else None
    return frozenset((raw or {}).get("finetune") or {})


def tree_memory(proc: psutil.Process) -> tuple[int, int]:
    """Summed RSS and summed PSS (bytes) of ``proc`` and its descendants."""
    rss = pss = 0
    for p in [proc, *proc.children(recursive=True)]:
        try:
            m = p.memory_full_info()
        except psutil.Error:
            continue
        rss, pss = rss + m.rss, pss + getattr(m, "pss", m.rss)  # no PSS off Linux: fall back to RSS
    return rss, pss


def profile(dvc_args: list[str]) -> dict:
    t0 = time.perf_counter()
    dvc = subprocess.Popen(["dvc", "repro", *dvc_args])
    root = psutil.Process(dvc.pid)
    finetune = finetune_keys()
    stages: dict[str, dict[str, float]] = {}
    peak_total = peak_total_pss = 0
    while dvc.poll() is None:
        now = time.perf_counter() - t0
        try:
            procs = root.children(recursive=True)
            rss, pss = tree_memory(root)
            peak_total, peak_total_pss = max(peak_total, rss), max(peak_total_pss, pss)
        except psutil.Error:
            procs = []
        for p in procs:
            try:
                name = stage_of(p.cmdline(), finetune)
                if name is None:
                    continue
                rss, pss = tree_memory(p)
            except psutil.Error:
                continue
            s = stages.setdefault(name, {"start_s": now, "end_s": now, "peak_rss_mb": 0.0, "peak_pss_mb": 0.0})
            s["end_s"] = now
            s["peak_rss_mb"] = max(s["peak_rss_mb"], rss / 2**20)
            s["peak_pss_mb"] = max(s["peak_pss_mb"], pss / 2**20)
        time.sleep(POLL_S)
    wall = time.perf_counter() - t0
    for s in stages.values():
        s["wall_s"] = round(s["end_s"] - s["start_s"] + POLL_S, 1)
        s["peak_rss_mb"], s["peak_pss_mb"] = round(s["peak_rss_mb"], 1), round(s["peak_pss_mb"], 1)
    return {
        "command": "dvc repro " + " ".join(dvc_args),
        "returncode": dvc.returncode,
        "wall_s": round(wall, 1),
        "peak_rss_mb_whole_tree": round(peak_total / 2**20, 1),
        "peak_pss_mb_whole_tree": round(peak_total_pss / 2**20, 1),
        "stages": stages,
    }


def to_markdown(r: dict, cpus: int | None = None) -> str:
    rows = sorted(r["stages"].items(), key=lambda kv: kv[1]["start_s"])
    lines = [
        "# dvc repro: wall time and peak memory per stage",
        "",
        f"`{r['command'].strip()}` exited {r['returncode']} after {r['wall_s'] / 60:.1f} min on {cpus} CPUs; "
        f"peak of the whole process tree: summed PSS {r.get('peak_pss_mb_whole_tree', float('nan')) / 1024:.2f} GiB, "
        f"summed RSS {r['peak_rss_mb_whole_tree'] / 1024:.2f} GiB (load averages: Platform below).",
        "",
        "| stage | start (min) | wall (s) | peak PSS (MiB, summed over its process tree) | peak RSS (MiB, summed) |",
        "|---|---|---|---|---|",
        *(
            f"| {k} | {v['start_s'] / 60:.1f} | {v['wall_s']} | {v.get('peak_pss_mb', float('nan')):.0f} | "
            f"{v['peak_rss_mb']:.0f} |"
            for k, v in rows
        ),
    ]
    by_kind: dict[str, float] = {}
    for k, v in rows:
        by_kind[k.split("@")[0]] = by_kind.get(k.split("@")[0], 0.0) + v["wall_s"]
    lines += ["", "Wall time by stage kind: " + ", ".join(f"{k} {v / 60:.1f} min" for k, v in by_kind.items())]
    return "\n".join(lines) + "\n"


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", default="reports/benchmarks/pipeline_profile", help="writes <out>.json and <out>.md")
    args, rest = p.parse_known_args()
    run = Run(args.out)
    result = profile([a for a in rest if a != "--"])
    md = to_markdown(result, os.cpu_count())
    print(md)
    run.write(result, md)
    return result["returncode"]


if __name__ == "__main__":
    sys.exit(main())
