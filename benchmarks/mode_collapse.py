"""Mode collapse on 2-D mixtures: GAN vs PacGAN2/3/4 vs WGAN-GP on ring8 and grid25 (PacGAN Table 1).

    python benchmarks/mode_collapse.py                       # 5 configs x 2 datasets x 5 seeds
    python benchmarks/mode_collapse.py --quick               # 2 seeds, fewer steps: a smoke run
    python benchmarks/mode_collapse.py --datasets grid25 --configs gan pacgan4 --seeds 0 1 2 --epochs 20

Protocol (PacGAN arXiv 1712.04086 §5.1 and its code, github.com/fjxmlzn/PacGAN,
synthetic_data_experiments/2DGrid_GAN&PacGAN/config.py; metrics of VEEGAN arXiv 1705.07761 §5.1):
ring8 (8 Gaussians on the unit circle, sigma 0.01) and grid25 (25 Gaussians on {-4..4}^2, sigma 0.05);
2,500 samples per trained model; a sample is high quality within 3 sigma of its nearest mean; a mode is
captured if it is the nearest mean of at least one high-quality sample; reverse KL over the high-quality
histogram. Every run trains through the pipeline's own ``components.training.loop.fit`` (the in-process
twin of the Ray worker loop) and ``components.models.gan``; one run per (dataset, config, seed), in
parallel processes of ``--threads`` torch threads each. Results: mean +- standard error over seeds, beside
the published PacGAN rows, written to ``<out>.md`` and ``<out>.json`` (with the platform block of
benchmarks/_report.py); every finished run is also appended to ``<out>.runs.jsonl``.

PacGAN's 2-D architecture (its code): G = 2-D latent, 4 hidden layers of 400 units with BatchNorm + ReLU;
D = 3 maxout layers of 200 units (5 pieces each), weights N(0, 0.02); Adam lr 1e-4, beta1 0.8; minibatches
of 100 packs; 100,000 training packs; 400 epochs (400,000 steps). ``--arch pacgan`` builds exactly those
networks; the default ``--arch cpu`` and the step budget are the deviations a 2-core CPU needs, listed in
the report.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from concurrent.futures import ProcessPoolExecutor
from multiprocessing import get_context
from typing import Any

import numpy as np
from _report import Run, out_file

from components.evaluation.stats import mean_se
from components.reporting.published import PACGAN_TABLE1

DATASETS = ("ring8", "grid25")

# Networks. "pacgan": the paper's code exactly. "cpu": what fits a 2-core budget (see the report's notes).
ARCHS: dict[str, dict[str, Any]] = {
    "pacgan": {"latent_dim": 2, "g_width": 400, "g_depth": 4, "width": 200, "d_depth": 3, "maxout": 5},
    # D: random Fourier features of each packed point (arXiv 2006.10739) + spectral norm (arXiv 1802.05957):
    # a plain ReLU/maxout D on raw coordinates did not resolve grid25's 0.05-wide modes within 10,000 steps,
    # and with packing its loss stayed at log 4 (it learned nothing) for as long as we could run it.
    "cpu": {
        "latent_dim": 2,
        "g_width": 256,
        "g_depth": 4,
        "width": 128,
        "d_depth": 3,
        "maxout": 1,
        "fourier": 64,
        "fourier_scale": 2.0,
        "spectral_norm": True,
        "init_std": None,
    },
}
# Objectives compared (PacGAN Table 1 rows, plus WGAN-GP, arXiv 1704.00028: n_critic 5, lambda 10).
CONFIGS: dict[str, dict[str, Any]] = {
    "GAN": {"loss": "ns", "pack": 1},
    "PacGAN2": {"loss": "ns", "pack": 2},
    "PacGAN3": {"loss": "ns", "pack": 3},
    "PacGAN4": {"loss": "ns", "pack": 4},
    "WGAN-GP": {"loss": "wgan-gp", "gp_weight": 10.0, "d_steps": 5, "spectral_norm": False, "betas": (0.5, 0.9)},
}
# Other families on the same data, seeds and step budget (one sample per "pack"; no GAN network args).
# Diffusion: MLP denoiser (components.models.diffusion), v-prediction (eps-prediction divides by sqrt(ᾱ_t) near
# t = T and, with no data range to clip x0 to, a few points blow up), DDIM 100 steps with eta 1; points are
# diffused as x / point_scale so both mixtures span about [-1, 1].
OTHER_FAMILIES: dict[str, dict[str, Any]] = {
    "Diffusion": {
        "family": "diffusion",
        "lr": 1e-3,
        "model": {
            "objective": "v",
            "mlp_dim": 256,
            "mlp_depth": 3,
            "sampler": "ddim",
            "sampling_steps": 100,
            "eta": 1.0,
        },
        "point_scale": {"ring8": 1.0, "grid25": 4.0},
    },
}
# PacGAN Table 1 (10 trials, mean +- s.e.): (modes, %HQ, reverse KL) per dataset; the leaderboard shows it too.
PUBLISHED = PACGAN_TABLE1
# Targets for the best config (mean over seeds): modes, min %HQ, max reverse KL.
TARGETS = {"ring8": (8, 95.0, 0.05), "grid25": (25, 90.0, 0.05)}
METRICS = ("modes_captured", "pct_high_quality", "reverse_kl")


def run_one(job: dict[str, Any]) -> dict[str, Any]:
    """Train one model through ``fit`` and score 2,500 samples. Runs in a worker process."""
    import torch

    from components.config import TrainConfig
    from components.data import get_source
    from components.data.spec import DataSpec
    from components.evaluation.modes import mode_metrics
    from components.models import build_model, parse_family_config
    from components.training.loop import fit

    torch.set_num_threads(job["threads"])
    pack = job["model"].get("pack", 1)
    raw = get_source(job["dataset"])(n_samples=job["n_packs"] * pack, seed=10_000 + job["seed"])
    spec = DataSpec(name=job["dataset"], kind="points", shape=raw.x.shape[1:], extras=raw.extras)
    family = job.get("family", "gan")
    model = build_model(family, parse_family_config(family, job["model"], where=f"{job['config']} model"), spec)
    train = TrainConfig(num_workers=0, seed=job["seed"], batch_size=job["batch_packs"] * pack, **job["train"])
    t0 = time.perf_counter()
    history = fit(model, (torch.from_numpy(raw.x), torch.from_numpy(raw.y)), train)
    seconds = time.perf_counter() - t0
    samples = model.sample(job["n_eval"], generator=torch.Generator().manual_seed(job["seed"]))
    m = mode_metrics(samples, np.asarray(spec.extras["means"]), spec.extras["sigma"])
    return {
        **{k: job[k] for k in ("dataset", "config", "seed")},
        **{k: m[k] for k in (*METRICS, "per_mode_counts")},
        "train_seconds": round(seconds, 1),
        "steps": len(history) * (job["n_packs"] // job["batch_packs"]),
        "final_epoch": history[-1] if history else {},
    }


def _key(job: dict[str, Any]) -> str:
    """What makes two runs the same experiment (not how many threads ran it)."""
    return json.dumps({k: v for k, v in job.items() if k != "threads"}, sort_keys=True, default=list)


def summarise(runs: list[dict[str, Any]]) -> dict[str, dict[str, dict[str, float]]]:
    """(config, dataset) -> metric -> {mean, se, n}; se = sample std / sqrt(n) (0 for one run)."""
    out: dict[str, dict[str, dict[str, float]]] = {}
    for r in runs:
        out.setdefault(r["config"], {}).setdefault(r["dataset"], {})
    for cfg, per_ds in out.items():
        for ds in per_ds:
            rs = [r for r in runs if r["config"] == cfg and r["dataset"] == ds]
            per_ds[ds] = {k: mean_se([r[k] for r in rs]) for k in METRICS}
    return out


def _fmt(s: dict[str, float], digits: int) -> str:
    return f"{s['mean']:.{digits}f}±{s['se']:.{digits}f}"


def markdown(summary: dict, args: argparse.Namespace, protocol: dict[str, Any], wall: float) -> str:
    digits = {"modes_captured": 1, "pct_high_quality": 1, "reverse_kl": 2}
    head = "| model | ring modes /8 | ring %HQ | ring rKL | grid modes /25 | grid %HQ | grid rKL |"
    lines = [
        "# Mode collapse on 2-D mixtures (PacGAN Table 1 setting)",
        "",
        f"Ours: mean ± s.e. over seeds {args.seeds}; PacGAN rows: arXiv 1712.04086 Table 1 (10 trials).",
        "",
        head,
        "| --- | --- | --- | --- | --- | --- | --- |",
    ]
    for name in [c for c in (*CONFIGS, *OTHER_FAMILIES) if c in summary]:
        cells = []
        for ds in DATASETS:
            s = summary[name].get(ds)
            cells += [_fmt(s[k], digits[k]) if s else "–" for k in METRICS]
        counts = {s["modes_captured"]["n"] for s in summary[name].values()}
        fewer = f", n = {'/'.join(map(str, sorted(counts)))} seeds" if counts != {len(args.seeds)} else ""
        lines.append(f"| {name} (ours{fewer}) | " + " | ".join(cells) + " |")
    for name, row in PUBLISHED.items():
        lines.append(f"| {name} (PacGAN) | " + " | ".join(v for ds in DATASETS for v in row[ds]) + " |")
    lines += ["", "## Targets (best config, mean over seeds)", ""]
    for ds, (modes, hq, rkl) in TARGETS.items():
        scored = [(name, s[ds]) for name, s in summary.items() if ds in s]
        if not scored:
            continue
        best_name, best = min(scored, key=lambda t: (-t[1]["modes_captured"]["mean"], t[1]["reverse_kl"]["mean"]))
        ok = (
            best["modes_captured"]["mean"] >= modes
            and best["pct_high_quality"]["mean"] >= hq
            and best["reverse_kl"]["mean"] <= rkl
        )
        lines.append(
            f"- {ds}: target {modes} modes, ≥{hq:g}% HQ, rKL ≤{rkl:g}; best {best_name}: "
            f"{best['modes_captured']['mean']:.1f} modes, {best['pct_high_quality']['mean']:.1f}% HQ, "
            f"rKL {best['reverse_kl']['mean']:.3f} → {'met' if ok else 'NOT met'}"
        )
    p = protocol
    lines += [
        "",
        "## Protocol and deviations from PacGAN",
        "",
        f"- Networks (`--arch {p['arch']}`): {json.dumps(ARCHS[p['arch']])}; PacGAN: G 4×400 BatchNorm+ReLU, "
        "D 3 maxout layers ×200 units (5 pieces), 2-D latent.",
        f"- Optimiser: Adam lr {p['lr']}, betas {p['betas']}, {p['lr_schedule']} decay to 0 over the run "
        "(PacGAN: lr 1e-4, beta1 0.8, constant).",
        "- Configs (override the networks): "
        + "; ".join(f"{k} {json.dumps(CONFIGS[k])}" for k in summary if k in CONFIGS)
        + ".",
        *(
            f"- {k}: {json.dumps(OTHER_FAMILIES[k])}, same data, seeds and steps (batch = packs, one sample each)."
            for k in summary
            if k in OTHER_FAMILIES
        ),
        f"- Minibatch {p['batch_packs']} packs (PacGAN: 100); {p['n_packs']} training packs per epoch, "
        f"{p['epochs']} epochs = {p['steps']} generator steps (PacGAN: 100,000 packs, 400 epochs = 400,000).",
        f"- {p['n_eval']} samples per model; runs through `components.training.loop.fit`.",
        f"- Training time summed over the {p['n_runs']} runs: {p['train_minutes_total']:.1f} min; this "
        f"invocation's wall time: {wall / 60:.1f} min ({p['reused_runs']} runs reused), {p['jobs']} processes × "
        f"{p['threads']} thread(s) (machine: Platform below).",
    ]
    return "\n".join(lines) + "\n"


def _job(args: argparse.Namespace, ds: str, name: str, seed: int) -> dict[str, Any]:
    """One run's full description (its key, minus threads, identifies it for --resume)."""
    job: dict[str, Any] = {
        "dataset": ds,
        "config": name,
        "seed": seed,
        "model": {**ARCHS[args.arch], **CONFIGS[name]} if name in CONFIGS else {},
        "train": {"epochs": args.epochs, "lr": args.lr, "betas": tuple(args.betas), "lr_schedule": args.lr_schedule},
        "n_packs": args.n_packs,
        "batch_packs": args.batch_packs,
        "n_eval": args.n_eval,
        "threads": args.threads,
    }
    if name in OTHER_FAMILIES:
        other = OTHER_FAMILIES[name]
        job["family"] = other["family"]
        job["model"] = {**other["model"], "point_scale": other["point_scale"][ds]}
        job["train"]["lr"] = other["lr"]
    return job


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--datasets", nargs="+", default=list(DATASETS), choices=DATASETS)
    ap.add_argument(
        "--configs", nargs="+", default=list(CONFIGS), choices=[*CONFIGS, *OTHER_FAMILIES], help="rows to run"
    )
    ap.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2, 3, 4])
    ap.add_argument("--arch", default="cpu", choices=list(ARCHS))
    ap.add_argument("--epochs", type=int, default=10)
    ap.add_argument("--n-packs", type=int, default=100_000, help="training packs per epoch (PacGAN: 100,000)")
    ap.add_argument("--batch-packs", type=int, default=100, help="packs per minibatch (PacGAN: 100)")
    ap.add_argument("--lr", type=float, default=3e-4)
    ap.add_argument("--betas", type=float, nargs=2, default=[0.5, 0.999])
    ap.add_argument("--lr-schedule", default="linear", choices=["constant", "linear", "cosine"])
    ap.add_argument("--n-eval", type=int, default=2500)
    ap.add_argument("--jobs", type=int, default=os.cpu_count() or 1, help="parallel training processes")
    ap.add_argument("--threads", type=int, default=1, help="torch threads per process")
    ap.add_argument(
        "--family-seeds",
        type=int,
        default=None,
        help="run the non-GAN rows (Diffusion) on only the first N of --seeds (their rows then say n = N)",
    )
    ap.add_argument("--resume", action="store_true", help="reuse finished runs from <out>.runs.jsonl")
    ap.add_argument("--quick", action="store_true", help="2 seeds, 2 epochs of 20,000 packs: a smoke run")
    ap.add_argument("--out", default="reports/benchmarks/mode_collapse", help="writes <out>.md and <out>.json")
    args = ap.parse_args(argv)
    run = Run(args.out)
    if args.quick:
        args.seeds, args.epochs, args.n_packs = args.seeds[:2], 2, 20_000

    def seeds_of(name: str) -> list[int]:
        return args.seeds[: args.family_seeds] if name in OTHER_FAMILIES and args.family_seeds else args.seeds

    jobs = [_job(args, ds, name, seed) for ds in args.datasets for name in args.configs for seed in seeds_of(name)]
    # Each finished run is appended to <out>.runs.jsonl with its job: --resume reuses identical jobs' runs.
    log = out_file(args.out, ".runs.jsonl")
    log.parent.mkdir(parents=True, exist_ok=True)
    done = {}
    if args.resume and log.exists():
        done = {_key(rec["job"]): rec["run"] for rec in map(json.loads, log.read_text().splitlines())}
    runs = [done[_key(j)] for j in jobs if _key(j) in done]
    todo = [j for j in jobs if _key(j) not in done]
    t0 = time.perf_counter()
    with ProcessPoolExecutor(max_workers=args.jobs, mp_context=get_context("spawn")) as pool, log.open("a") as f:
        for job, r in zip(todo, pool.map(run_one, todo), strict=True):
            runs.append(r)
            f.write(json.dumps({"job": job, "run": r}) + "\n")
            f.flush()
            print(
                f"[{len(runs)}/{len(jobs)}] {r['dataset']:6s} {r['config']:8s} seed {r['seed']}: "
                f"{r['modes_captured']} modes, {r['pct_high_quality']:.1f}% HQ, rKL {r['reverse_kl']:.3f} "
                f"({r['train_seconds']:.0f} s)",
                flush=True,
            )
    wall = time.perf_counter() - t0
    protocol = {
        "arch": args.arch,
        "lr": args.lr,
        "betas": list(args.betas),
        "lr_schedule": args.lr_schedule,
        "batch_packs": args.batch_packs,
        "n_packs": args.n_packs,
        "epochs": args.epochs,
        "steps": args.epochs * (args.n_packs // args.batch_packs),
        "n_eval": args.n_eval,
        "seeds": args.seeds,
        "n_runs": len(jobs),
        "reused_runs": len(jobs) - len(todo),
        "train_minutes_total": sum(r["train_seconds"] for r in runs) / 60,
        "jobs": args.jobs,
        "threads": args.threads,
    }
    summary = summarise(runs)
    report = markdown(summary, args, protocol, wall)
    print(report)
    blob = {"protocol": protocol, "wall_seconds": round(wall, 1), "summary": summary, "runs": runs}
    run.write({**blob, "published_pacgan_table1": PUBLISHED}, report)


if __name__ == "__main__":
    main()
