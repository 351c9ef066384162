"""Summarise benchmarks/data_path_seeds.sh: pixelcnn_digits on the old and the new data path, 3 training seeds each.

    python benchmarks/data_path_seeds.py benchmarks/results/data_path/seeds --commit-before 3fbc95f --commit-after X

Per metric: mean +- standard error over the seeds of each path, the difference after - before, and Welch's t
statistic with its two-sided p-value (scipy), so a change larger than the seed-to-seed spread shows as such. Writes
``<folder>/../seeds.md`` and ``seeds.json``.
"""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path

import numpy as np
from scipy import stats

METRICS = ("test_nll_bits_per_dim", "fid", "kid", "precision", "recall", "density", "coverage", "class_kl_to_data",
           "simclr_fid")  # fmt: skip


def summarise(runs: dict[str, list[dict]]) -> dict[str, dict]:
    """metric -> {before: (mean, se, values), after: ..., diff, welch_t, p}."""
    out = {}
    for m in METRICS:
        row: dict = {}
        for path in ("before", "after"):
            v = np.array([r[m] for r in runs[path]], dtype=float)
            row[path] = {"mean": float(v.mean()), "se": float(v.std(ddof=1) / math.sqrt(len(v))), "values": v.tolist()}
        t = stats.ttest_ind(row["after"]["values"], row["before"]["values"], equal_var=False)
        row["diff"] = row["after"]["mean"] - row["before"]["mean"]
        row["welch_t"], row["p"] = float(t.statistic), float(t.pvalue)
        out[m] = row
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("folder", type=Path)
    ap.add_argument("--commit-before", required=True)
    ap.add_argument("--commit-after", required=True)
    a = ap.parse_args()
    runs: dict[str, list[dict]] = {"before": [], "after": []}
    for f in sorted(a.folder.glob("*_seed*.eval.json")):
        ev = json.loads(f.read_text())
        runs[ev["_run"]["path"]].append(ev)
    n = {p: len(v) for p, v in runs.items()}
    if min(n.values()) < 2:
        raise SystemExit(f"expected at least 2 seeds per path, got {n}")
    table = summarise(runs)
    load = {p: (a.folder / f"load_{p}.txt").read_text().strip() for p in ("before", "after")}
    lines = [
        "# pixelcnn_digits: old vs new data path, over training seeds",
        "",
        f"`bash benchmarks/data_path_seeds.sh`: {n['before']} + {n['after']} fresh clones, `train.seed` 0..2; before ="
        f" commit {a.commit_before} (DistributedSampler over the whole split), after = commit {a.commit_after[:7]} "
        "(Ray Data shards); every model evaluated by the after commit's evaluation code (N = 1,000 samples).",
        "",
        "| metric | before: mean ± s.e. | after: mean ± s.e. | after - before | Welch t | p | per seed, before | "
        "per seed, after |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for m, r in table.items():
        b, f = r["before"], r["after"]
        vals = [", ".join(f"{x:.4g}" for x in side["values"]) for side in (b, f)]
        lines.append(
            f"| {m} | {b['mean']:.4g} ± {b['se']:.2g} | {f['mean']:.4g} ± {f['se']:.2g} | {r['diff']:+.3g} | "
            f"{r['welch_t']:.2f} | {r['p']:.2f} | {vals[0]} | {vals[1]} |"
        )
    walls = {p: [r["_run"]["train_wall_s"] for r in runs[p]] for p in runs}
    lines += [
        "",
        "Train wall seconds per run (dvc repro of prepare, features and train; load not controlled): "
        f"before {walls['before']}, after {walls['after']}.",
        f"Load average before the first run: `{load['before']}`; after the last: `{load['after']}`.",
    ]
    (a.folder.parent / "seeds.md").write_text("\n".join(lines) + "\n")
    (a.folder.parent / "seeds.json").write_text(json.dumps({"n": n, "metrics": table, "train_wall_s": walls}, indent=2))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
