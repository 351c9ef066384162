"""Worker memory against dataset size: a synthetic image dataset at 1x, 4x and 16x, streamed to 2 Ray workers.

    python benchmarks/ingest_memory.py                                  # 1x = 12,288 32x32 images (48 MiB) .. 16x
    python benchmarks/ingest_memory.py --base-rows 1024 --scales 1 2    # a quick smoke run
    python benchmarks/ingest_memory.py --window-mib 0                   # Ray Data's own object-store budget
    python benchmarks/ingest_memory.py --max-worker-mib 700             # with the cap on (train.max_worker_mib)

Each scale is prepared by ``components.data.prepare_streamed`` (the ``synthetic`` source, chunk by chunk, Parquet
shards only; the prepare's own peak RSS rise in this process is reported too) and trained for one epoch by the
pipeline's driver (``components.training.driver.train``: ``TorchTrainer``, 2 workers of 1 CPU on this machine's
2 cores, the real ``train_worker``, a tiny VAE) on the streamed Ray Data path: ``train.materialize_mib`` is 0 so
every scale streams from its shards, the path a dataset larger than memory takes (with the default 512 MiB only the
16x train split would stream; the smaller ones would be read into the object store once). Every epoch visits every
train row, so each worker sees its whole share of the data.

A thread samples, every 0.25 s, each Ray Train worker process (``components.training.memory.ProcessPeaks``: the
processes titled ``ray::RayTrainWorker`` under this one) and this driver: RSS, PSS (shared pages divided among
the processes that map them), USS and private memory (RSS minus shared pages, what ``train.max_worker_mib``
checks), and every 1 s the pages of Ray's object store a worker maps (part of its RSS, not its own). A worker's RSS
is its private memory plus libraries plus the object-store pages of the blocks it has read, and those stop growing
at the window of blocks in flight (``train.ingest_object_store_mib``, ``--window-mib``: 32 MiB here, 4 shards of
``--shard-mib`` 8). So 1x is chosen larger than the window (its train split holds 34 MiB): below it, RSS still
grows with the data until the window is full. The table gives the largest peak of the 2 workers per scale and its
ratio to 1x; the goal is a flat line, RSS and PSS at every scale within 20 % of 1x (``--tolerance``). Wall time is
``fit`` from start to end (worker start-up included); rows/s counts the rows trained between the worker's start and
its epoch's end, over both workers.

Results: ``<out>.json`` and ``<out>.md`` with the platform block of benchmarks/_report.py (load average before
and after: the 2 cores are shared with whatever else runs). Exit status 1 if RSS or PSS misses the goal
(``--no-fail`` to always exit 0).
"""

from __future__ import annotations

import argparse
import os
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

from _report import Run, load_average

from components.config import TrainConfig
from components.data import get_source, prepare_streamed
from components.models.configs import VAEConfig
from components.training.job import TrainJob
from components.training.memory import ProcessPeaks

GOAL = ("rss", "pss")  # the goal: flat within --tolerance of 1x
METRICS = (*GOAL, "private", "rss_own")  # all compared against 1x (uss and object_store are reported too)


def prepare(root: Path, name: str, rows: int, args: argparse.Namespace) -> dict[str, Any]:
    """One scale of the synthetic dataset under ``root/name``; its size and this process's peak RSS rise."""
    raw = get_source("synthetic")(n_samples=rows, image_size=args.image_size, n_classes=4, seed=0)
    with ProcessPeaks(every_s=0.05) as before:
        pass
    t0 = time.perf_counter()
    with ProcessPeaks(every_s=0.05) as peaks:
        m = prepare_streamed(name, raw, root, val=0.1, test=0.2, seed=0, shard_mib=args.shard_mib)
    seconds = time.perf_counter() - t0
    row_bytes = 4 * args.image_size**2
    disk = sum(f.stat().st_size for f in (root / name).rglob("*.parquet"))
    return {
        "rows": rows,
        "train_rows": m["splits"]["train"]["n"],
        "dataset_mib": rows * row_bytes / 2**20,
        "train_mib": m["splits"]["train"]["n"] * row_bytes / 2**20,
        "disk_mib": disk / 2**20,
        "shards": {s: len(v["files"]) for s, v in m["shards"].items()},
        "prepare_seconds": seconds,
        "prepare_rss_rise_mib": max(0.0, peaks.driver["rss"] - before.driver["rss"]),
    }


def train_once(root: Path, name: str, args: argparse.Namespace, storage: Path) -> dict[str, Any]:
    """One epoch of 2 Ray workers on dataset ``name``, with the workers' and the driver's memory sampled."""
    from components.training.driver import train

    cfg = TrainConfig(epochs=1, batch_size=args.batch_size, lr=2e-3, num_workers=2, amp=False, max_failures=0,
                      materialize_mib=args.materialize_mib, shuffle_buffer=args.shuffle_buffer,
                      max_worker_mib=args.max_worker_mib,
                      ingest_object_store_mib=args.window_mib or None)  # fmt: skip
    job = TrainJob(key="ingest", family="vae", model=VAEConfig(latent_dim=4, width=args.width), dataset=name,
                   data_root=str(root), train=cfg, run_name=name, storage_path=str(storage))  # fmt: skip
    marks: dict[str, float] = {}
    steps: list[int] = []

    def on_event(ev: dict[str, Any]) -> None:
        if ev["event"] in ("start", "epoch"):
            marks[ev["event"]] = time.perf_counter()
        elif ev["event"] == "steps":
            steps.append(ev["steps"])

    t0 = time.perf_counter()
    with ProcessPeaks() as peaks:
        _, state = train(job, on_event=on_event)
    wall = time.perf_counter() - t0
    trained = steps[0] * args.batch_size * cfg.num_workers
    return {
        "workers_seen": len(peaks.workers),
        "max_processes": peaks.max_processes,
        "samples": peaks.samples,
        "worker_peak_mib": {k: peaks.worker_peak(k) for k in ProcessPeaks.WORKER_KEYS},
        "per_worker_peak_mib": {str(pid): p for pid, p in peaks.workers.items()},
        "driver_peak_mib": dict(peaks.driver),
        "wall_seconds": wall,
        "epoch_seconds": marks["epoch"] - marks["start"],
        "rows_trained": trained,
        "rows_per_s": trained / (marks["epoch"] - marks["start"]),
        "loss": state.history[-1]["loss"],
    }


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--base-rows", type=int, default=12288, help="rows at 1x (32x32 float32: 4 KiB each)")
    p.add_argument("--scales", type=int, nargs="+", default=[1, 4, 16])
    p.add_argument("--image-size", type=int, default=32)
    p.add_argument("--width", type=int, default=4, help="VAE width (channels of the first conv layer)")
    p.add_argument("--batch-size", type=int, default=128, help="per worker")
    p.add_argument("--shuffle-buffer", type=int, default=4096, help="train.shuffle_buffer (rows per worker)")
    p.add_argument("--materialize-mib", type=float, default=0.0, help="train.materialize_mib (0: always stream)")
    p.add_argument("--max-worker-mib", type=float, default=None, help="train.max_worker_mib (default: off)")
    p.add_argument("--window-mib", type=float, default=32.0, help="train.ingest_object_store_mib (0: Ray's budget)")
    p.add_argument("--shard-mib", type=float, default=8.0, help="prepare.shard_mib")
    p.add_argument("--tolerance", type=float, default=0.2, help="goal: every ratio vs 1x within this")
    p.add_argument("--work", type=Path, default=None, help="where the datasets go (default: a temporary folder)")
    p.add_argument("--out", default="benchmarks/results/ingest_memory", help="writes <out>.json and <out>.md")
    p.add_argument("--no-fail", action="store_true", help="exit 0 even when the goal is missed")
    args = p.parse_args()
    if args.scales[0] != 1:
        p.error("--scales must start with 1 (the baseline)")

    run = Run(args.out)
    from components.training.driver import init_ray

    init_ray(num_cpus=os.cpu_count())  # 2 workers of 1 CPU on 2 cores: every CPU held by the workers
    work = Path(tempfile.mkdtemp(prefix="ingest_memory-", dir=args.work))
    rows_out = []
    try:
        prepare(work / "data", "warm_up", 1024, args)  # first-call costs (pyarrow, Ray's tensor type) not in 1x
        for scale in args.scales:
            name = f"synthetic_{scale}x"
            data = prepare(work / "data", name, args.base_rows * scale, args)
            print(f"{scale:>3}x prepared {data['rows']:,} rows, {data['dataset_mib']:.0f} MiB "
                  f"({data['disk_mib']:.0f} MiB Parquet) in {data['prepare_seconds']:.1f} s, prepare RSS rise "
                  f"{data['prepare_rss_rise_mib']:.0f} MiB", flush=True)  # fmt: skip
            result = train_once(work / "data", name, args, work / "ray")
            w = result["worker_peak_mib"]
            print(
                f"{scale:>3}x trained: worker peak RSS {w['rss']:.0f} PSS {w['pss']:.0f} private {w['private']:.0f}"
                f" MiB, {result['wall_seconds']:.0f} s, {result['rows_per_s']:.0f} rows/s",
                flush=True,
            )
            rows_out.append({"scale": scale, **data, **result})
            shutil.rmtree(work / "data" / name, ignore_errors=True)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    base = rows_out[0]["worker_peak_mib"]
    for r in rows_out:
        r["ratio_vs_1x"] = {k: r["worker_peak_mib"][k] / base[k] for k in METRICS}
    worst = {k: max(abs(r["ratio_vs_1x"][k] - 1) for r in rows_out) for k in METRICS}
    flat = {k: worst[k] <= args.tolerance for k in METRICS}
    report = {
        "setup": {
            "dataset": "synthetic (components.data.synthetic): 4 shape classes, 1 channel",
            "image_size": args.image_size,
            "base_rows": args.base_rows,
            "scales": args.scales,
            "split": {"val": 0.1, "test": 0.2},
            "shard_mib": args.shard_mib,
            "family": "vae",
            "model": {"latent_dim": 4, "width": args.width},
            "epochs": 1,
            "num_workers": 2,
            "cpus_per_worker": 1,
            "batch_size_per_worker": args.batch_size,
            "shuffle_buffer": args.shuffle_buffer,
            "materialize_mib": args.materialize_mib,
            "max_worker_mib": args.max_worker_mib,
            "ingest_object_store_mib": args.window_mib or None,
            "tolerance": args.tolerance,
        },
        "scales": rows_out,
        "worst_deviation_vs_1x": worst,
        "flat": flat,
    }
    print(f"load average before {run.load_before}, after {load_average()}")
    print(_table(rows_out))
    print("flat within {:.0%}: {}".format(args.tolerance, ", ".join(f"{k} {'yes' if v else 'NO'}"
                                                                     for k, v in flat.items())))  # fmt: skip
    run.write(report, _markdown(report))
    return 0 if all(flat[k] for k in GOAL) or args.no_fail else 1


def _table(rows: list[dict[str, Any]]) -> str:
    lines = [
        "| scale | dataset MiB (Parquet) | rows (train) | worker peak RSS / PSS / private MiB | ratio vs 1x (RSS / PSS"
        " / private) | object store pages in RSS MiB | RSS without them MiB (ratio) | driver peak RSS MiB | "
        "processes under the driver | prepare RSS rise MiB | wall s | rows/s |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        w, q = r["worker_peak_mib"], r["ratio_vs_1x"]
        lines.append(
            f"| {r['scale']}x | {r['dataset_mib']:.0f} ({r['disk_mib']:.0f}) | {r['rows']:,} ({r['train_rows']:,}) | "
            f"{w['rss']:.0f} / {w['pss']:.0f} / {w['private']:.0f} | {q['rss']:.3f} / {q['pss']:.3f} / "
            f"{q['private']:.3f} | {w['object_store']:.0f} | {w['rss_own']:.0f} ({q['rss_own']:.3f}) | "
            f"{r['driver_peak_mib']['rss']:.0f} | {r['max_processes']} | {r['prepare_rss_rise_mib']:.0f} | "
            f"{r['wall_seconds']:.0f} | {r['rows_per_s']:.0f} |"
        )
    return "\n".join(lines)


def _markdown(r: dict[str, Any]) -> str:
    s = r["setup"]
    flat = "; ".join(f"{k} {'yes' if v else 'no'} (worst {r['worst_deviation_vs_1x'][k]:+.1%})"
                     for k, v in r["flat"].items())  # fmt: skip
    return "\n".join(
        [
            "# Worker memory against dataset size (streamed Ray Data ingest)",
            "",
            f"Synthetic {s['image_size']}x{s['image_size']} shape images, {s['base_rows']:,} rows at 1x, prepared "
            f"chunk by chunk into {s['shard_mib']:g} MiB Parquet shards; one epoch of a VAE {s['model']} on "
            f"{s['num_workers']} Ray Train workers ({s['cpus_per_worker']} CPU each), batch "
            f"{s['batch_size_per_worker']} per worker, shuffle buffer {s['shuffle_buffer']} rows, "
            f"materialize_mib {s['materialize_mib']:g} (every scale streams), ingest_object_store_mib "
            f"{s['ingest_object_store_mib'] or 'none (Ray Data budget)'}, max_worker_mib "
            f"{s['max_worker_mib'] or 'off'}. Worker peaks: the larger of the 2 workers, sampled every 0.25 s (the "
            "object store's pages every 1 s, from /proc/<pid>/smaps). Dataset MiB: float32 in memory (its "
            "Parquet shards on disk).",
            "",
            _table(r["scales"]),
            "",
            f"Goal: RSS and PSS flat within {s['tolerance']:.0%} of 1x. Flat: {flat}.",
            "",
        ]
    )


if __name__ == "__main__":
    raise SystemExit(main())
