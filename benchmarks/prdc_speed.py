"""Speed and peak memory of our chunked PRDC against the authors' ``prdc.compute_prdc``, same features.

    python benchmarks/prdc_speed.py                   # 10,000 vs 10,000 N(0, I) features in 64-D
    python benchmarks/prdc_speed.py --dim 1000        # authors' README check: P .477 R .471 D 1.056 C .974
    python benchmarks/prdc_speed.py --device cuda     # ours on the GPU (the package is CPU-only)
    python benchmarks/prdc_speed.py --n 50000 --skip-package --ks 3 5 --out benchmarks/results/prdc_50k
                                                      # the evaluate stage's call at 50k (the package: ~20 GB)

Both run in this one process on the same float32 features; the script checks that they return the same four
values, prints the speed ratio and the peak memory of each, and writes ``<out>.json`` and ``<out>.md`` (with the
platform block of benchmarks/_report.py).
Peak memory is the peak resident set size above the level just before the call, sampled every 2 ms from
/proc (tracemalloc would miss torch's allocations); on CUDA, ours also reports torch's peak GPU allocation.
It exits 1 if the values differ by more than 1e-6.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import os
import threading
import time

import numpy as np
import torch
from _report import Run, package_version

from components.evaluation.prdc import prdc, prdc_per_k

KEYS = ("precision", "recall", "density", "coverage")
# README of github.com/clovaai/generative-evaluation-prdc: 10,000 vs 10,000 N(0, I) in 1,000-D, k = 5
AUTHORS_README = {"precision": 0.4772, "recall": 0.4705, "density": 1.0555, "coverage": 0.9735}
PAGE_MIB = os.sysconf("SC_PAGE_SIZE") / 2**20


def _rss_mib() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * PAGE_MIB


class PeakRSS:
    """Peak resident memory (MiB) above the level at entry, sampled by a background thread."""

    def __enter__(self) -> PeakRSS:
        self.base = self.peak = _rss_mib()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._poll, daemon=True)
        self._thread.start()
        return self

    def _poll(self) -> None:
        while not self._stop.wait(0.002):
            self.peak = max(self.peak, _rss_mib())

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, _rss_mib())

    @property
    def mib(self) -> float:
        return self.peak - self.base


def run_package(real: np.ndarray, fake: np.ndarray, k: int) -> dict:
    import prdc as prdc_package

    with PeakRSS() as mem, contextlib.redirect_stdout(io.StringIO()):  # compute_prdc prints the counts
        t0 = time.perf_counter()
        values = prdc_package.compute_prdc(real, fake, k)
        seconds = time.perf_counter() - t0
    return {"seconds": seconds, "peak_rss_mib": mem.mib, "values": {key: float(values[key]) for key in KEYS}}


def run_ours(
    real: np.ndarray, fake: np.ndarray, k: int, *, device: str, dtype: torch.dtype, chunk: int, ks: list[int] | None
) -> dict:
    """Ours: ``prdc`` at ``k``, or with ``ks`` one ``prdc_per_k`` pass over all of them (the values kept: ``k``'s)."""
    out: dict = {}
    with PeakRSS() as mem:
        r, f = torch.from_numpy(real).to(device), torch.from_numpy(fake).to(device)
        if device == "cuda":
            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats()
        t0 = time.perf_counter()
        if ks:  # .item() inside synchronises
            per_k = prdc_per_k(r, f, ks=ks, chunk_size=chunk, dtype=dtype)
            values, out["per_k"] = per_k[k], {str(kk): v for kk, v in per_k.items()}
        else:
            values = prdc(r, f, nearest_k=k, chunk_size=chunk, dtype=dtype)
        seconds = time.perf_counter() - t0
        if device == "cuda":
            out["peak_gpu_mib"] = torch.cuda.max_memory_allocated() / 2**20
    return {"seconds": seconds, "peak_rss_mib": mem.mib, "values": values, **out}


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--n", type=int, default=10_000, help="real and fake samples each")
    p.add_argument("--dim", type=int, default=64, help="feature dimension")
    p.add_argument("--k", type=int, default=5, help="nearest_k")
    p.add_argument("--ks", type=int, nargs="+", default=None, help="ours: one prdc_per_k pass over these (with --k)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--dtype", choices=["auto", "float64", "float32"], default="auto", help="ours")
    p.add_argument("--device", default="cpu", help="our device (cpu or cuda)")
    p.add_argument("--chunk-size", type=int, default=None, help="ours; default: by device")
    p.add_argument("--repeats", type=int, default=1, help="runs of each, alternating; min kept")
    p.add_argument("--skip-package", action="store_true", help="time ours only (no speed ratio, no check)")
    p.add_argument("--out", default="reports/benchmarks/prdc", help="writes <out>.json and <out>.md")
    args = p.parse_args()
    run = Run(args.out)

    rng = np.random.default_rng(args.seed)
    real = rng.standard_normal((args.n, args.dim)).astype(np.float32)
    fake = rng.standard_normal((args.n, args.dim)).astype(np.float32)
    dtype = None if args.dtype == "auto" else getattr(torch, args.dtype)  # auto: the features' float32
    if args.ks and args.k not in args.ks:
        p.error(f"--ks {args.ks} must include --k {args.k}")
    ours = dict(device=args.device, dtype=dtype, chunk=args.chunk_size, ks=args.ks)
    run_ours(real[:256], fake[:256], args.k, **ours)  # warm-up

    runs: dict[str, list[dict]] = {"ours": [], "package": []}
    for _ in range(args.repeats):
        runs["ours"].append(run_ours(real, fake, args.k, **ours))
        if not args.skip_package:
            runs["package"].append(run_package(real, fake, args.k))
    results = {name: min(rs, key=lambda r: r["seconds"]) for name, rs in runs.items() if rs}
    for name, rs in runs.items():
        if rs:
            results[name]["all_seconds"] = [r["seconds"] for r in rs]
            # memory: the largest rise over the runs, not the fastest run's. A later run can reuse pages an
            # earlier one left resident (malloc keeps freed heap; glibc raises its mmap threshold after a
            # large free), so its rise above the entry level understates what the computation needs.
            results[name]["all_peak_rss_mib"] = [r["peak_rss_mib"] for r in rs]
            results[name]["peak_rss_mib"] = max(r["peak_rss_mib"] for r in rs)

    report: dict = {
        "config": {
            **{k: v for k, v in vars(args).items() if k != "out"},
            "input_dtype": "float32",
            "features": "N(0, I), real and fake drawn independently",
            "torch_threads": torch.get_num_threads(),
            "gpu": torch.cuda.get_device_name() if args.device == "cuda" else None,
            "prdc_package": None if args.skip_package else package_version("prdc"),
            "scikit_learn": package_version("scikit-learn"),
        },
        "results": results,
    }
    ok = True
    if "package" in results:
        diff = max(abs(results["ours"]["values"][k] - results["package"]["values"][k]) for k in KEYS)
        ok = diff <= 1e-6
        report["max_abs_diff"] = diff
        report["identical"] = ok
        report["speedup"] = results["package"]["seconds"] / results["ours"]["seconds"]
    if (args.n, args.dim, args.k) == (10_000, 1000, 5):
        report["authors_readme"] = AUTHORS_README  # a different random draw: expect agreement to ~0.01

    print(_markdown(report))
    run.write(report, _markdown(report))
    return 0 if ok else 1


def _markdown(report: dict) -> str:
    c, res = report["config"], report["results"]
    lines = [
        f"# PRDC: ours vs `prdc.compute_prdc` ({c['n']:,} vs {c['n']:,}, {c['dim']}-D, k = {c['k']})",
        "",
        f"{c['torch_threads']} torch threads, ours on "
        f"{c['device']}{' (' + c['gpu'] + ')' if c['gpu'] else ''} in {c['dtype']}, "
        f"chunk {c['chunk_size'] or 'default'}; "
        f"min of {c['repeats']} run(s)"
        + (f"; ours: one `prdc_per_k` pass over k = {c['ks']} (the table: k = {c['k']})." if c.get("ks") else "."),
        "",
        "| implementation | seconds | peak RSS rise (MiB, max over runs) | precision | recall | density | coverage |",
        "| --- | --- | --- | --- | --- | --- | --- |",
    ]
    for name, r in res.items():
        v = r["values"]
        gpu = f" (GPU {r['peak_gpu_mib']:.0f})" if "peak_gpu_mib" in r else ""
        lines.append(
            f"| {name} | {r['seconds']:.2f} | {r['peak_rss_mib']:.0f}{gpu} | {v['precision']:.4f} | "
            f"{v['recall']:.4f} | {v['density']:.4f} | {v['coverage']:.4f} |"
        )
    if "authors_readme" in report:
        a = report["authors_readme"]
        lines.append(
            f"| authors' README | | | {a['precision']:.4f} | {a['recall']:.4f} | {a['density']:.4f} | "
            f"{a['coverage']:.4f} |"
        )
    per_k = res.get("ours", {}).get("per_k")
    if per_k:
        lines += ["", "| ours, k | precision | recall | density | coverage |", "| --- | --- | --- | --- | --- |"]
        lines += [
            f"| {k} | {v['precision']:.4f} | {v['recall']:.4f} | {v['density']:.4f} | {v['coverage']:.4f} |"
            for k, v in per_k.items()
        ]
    if "package" not in res:
        n = c["n"]
        lines += [
            "",
            f"`prdc.compute_prdc` not run: its radii step holds an N x N float32 distance matrix "
            f"({n * n * 4 / 2**30:.1f} GiB) and `np.argpartition`'s int64 indices of it ({n * n * 8 / 2**30:.1f} GiB).",
        ]
    if "speedup" in report:
        lines += [
            "",
            f"Speed-up: **{report['speedup']:.1f}x**; max |difference| of the four values: "
            f"{report['max_abs_diff']:.2e} ({'identical' if report['identical'] else 'MISMATCH'}).",
        ]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    raise SystemExit(main())
