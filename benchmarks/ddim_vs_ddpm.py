"""Diffusion samplers: samples/s and FID of DDPM-1000, DDIM-{10,25,50,100} and DPM-Solver++(2M)-{10,20} from one
trained diffusion model.

    python benchmarks/ddim_vs_ddpm.py --model-dir models/<experiment>      # a trained model (save_trained)
    python benchmarks/ddim_vs_ddpm.py --train-epochs 40 --model '{"dim": 32, "dim_mults": [1, 2], "patch": 2}'

The second form trains first, in-process, through ``components.training.loop.fit`` (the Ray worker's epoch
loop without Ray); ``--save-model DIR`` keeps the result for later runs.

Protocol (docs/protocols.md §6.2; FID as in §3.3): FID = ``components.evaluation.harness.fid_kid`` (torchmetrics
``FrechetInceptionDistance(feature=<domain classifier>)``) of ``--n`` samples per sampler against the test
split, all samplers from the same seed; the real-vs-real floor (a train subset vs test) is reported beside
it, and a 95% centred bootstrap interval (resampling generated and real features; the spread of the
resampled FIDs around the estimate, as the evaluate stage reports it: resampling with replacement inflates
FID, so a percentile interval can miss the estimate) next to every FID. Samples/s is wall-clock sampling
throughput on ``--device`` after one warm-up batch; the process CPU time is recorded too, and on a shared
CPU (other jobs running) the speed-up by CPU time with ``--threads 1`` is the trustworthy one.

The pipeline's pieces throughout: the FID is the evaluate stage's (``harness.fid_kid`` for the value,
``frechet.fid_ci`` on the domain classifier's features for the interval, the floor drawn as the stage draws
it); the classifier is the features stage's (``--features DIR``, default ``data/features/<dataset>``; if that
does not exist, one is trained here with params.yaml's ``features`` recipe and its test accuracy recorded); the
data are the prepare stage's splits in ``--data-root`` (default ``data/prepared``), or, if absent, prepared
into a temporary folder as the prepare stage does (params.yaml's ``prepare`` section).

Targets: DDIM-50 at least 15x the samples/s of DDPM-1000 with FID within 10% of it (issue 5); the fast solver
(DPM-Solver++(2M), arXiv 2211.01095) at <= 20 steps within 10% of DDPM-1000's FID at >= 50x its samples/s (issue 16).
Writes ``--out``.json and ``--out``.md (default reports/benchmarks/ddim_vs_ddpm, with the platform block of
benchmarks/_report.py), plus sample grids.
"""

from __future__ import annotations

import argparse
import json
import math
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from _pipeline import domain_classifier, prepared_root
from _report import Run

from components.config import TrainConfig
from components.data import load_spec, load_split
from components.data.spec import DataSpec
from components.errors import ConfigError
from components.evaluation.frechet import fid_ci
from components.evaluation.grids import image_grid, save_png
from components.evaluation.harness import fid_kid, generate
from components.layout import DATA, FEATURES
from components.models import build_model, parse_family_config
from components.models.configs import DiffusionConfig
from components.models.store import load_trained, save_trained
from components.training.loop import data_tensors, fit


def model_config(raw: str) -> DiffusionConfig:
    """``--model`` parsed by the diffusion family's config; a bad key or value stops here, in one line."""
    try:
        return parse_family_config("diffusion", json.loads(raw), where="--model")
    except json.JSONDecodeError as e:
        raise SystemExit(f"--model: not JSON ({e})") from None
    except ConfigError as e:
        raise SystemExit(str(e)) from None


def train_model(args: argparse.Namespace, spec: DataSpec, train_split: tuple) -> tuple[Any, dict]:
    raw = json.loads(args.model)
    model = build_model("diffusion", model_config(args.model), spec)
    cfg = TrainConfig(epochs=args.train_epochs, batch_size=args.batch_size, lr=args.lr, num_workers=0, seed=args.seed)
    t0 = time.perf_counter()
    history = fit(model, data_tensors(spec, *train_split), cfg, device=args.device)
    info = {
        "epochs": args.train_epochs,
        "batch_size": args.batch_size,
        "lr": args.lr,
        "optimizer_steps": int(model.step),
        "train_seconds": round(time.perf_counter() - t0, 1),
        "final_loss": history[-1]["loss"],
    }
    if args.save_model:  # as the train stage saves it: the model params as written
        save_trained(args.save_model, model, {"family": "diffusion", "model": raw, "train": info})
        model.to(args.device)
    return model, info


def timed_samples(model: Any, n: int, *, batch: int, seed: int, options: dict) -> tuple[torch.Tensor, float, float]:
    """``n`` samples (seeded as the evaluate stage draws them), and the wall-clock and process CPU seconds."""
    cuda = model.betas.device.type == "cuda"
    model.sample(min(batch, n), generator=torch.Generator().manual_seed(seed), steps=2)  # warm-up
    if cuda:
        torch.cuda.synchronize()
    t0, c0 = time.perf_counter(), time.process_time()
    fake = generate(model, n, batch_size=batch, seed=seed, options=options)  # ends with .cpu(): synchronises
    return fake, time.perf_counter() - t0, time.process_time() - c0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model-dir", type=Path, help="trained model directory (model.safetensors + config.json)")
    ap.add_argument("--model", default='{"dim": 32, "dim_mults": [1, 2], "patch": 2}', help="config JSON to train")
    ap.add_argument("--train-epochs", type=int, default=40)
    ap.add_argument("--batch-size", type=int, default=128)
    ap.add_argument("--lr", type=float, default=2e-3)
    ap.add_argument("--save-model", type=Path)
    ap.add_argument("--dataset", default="mnist5k")
    ap.add_argument("--data-root", type=Path, default=DATA, help="the prepare stage's output")
    ap.add_argument("--features", type=Path, help=f"domain classifier directory (default {FEATURES}/<dataset>)")
    ap.add_argument("--n", type=int, default=2000, help="samples per sampler")
    ap.add_argument("--sample-batch", type=int, default=500)
    ap.add_argument("--ddim-steps", type=int, nargs="+", default=[10, 25, 50, 100])
    ap.add_argument("--dpm-steps", type=int, nargs="*", default=[10, 20], help="DPM-Solver++(2M) step counts")
    ap.add_argument(
        "--eta", type=float, nargs="+", default=[0.0, 1.0], help="DDIM η values (each with every step count)"
    )
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: torch's default)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--n-boot", type=int, default=200)
    ap.add_argument("--out", type=Path, default=Path("reports/benchmarks/ddim_vs_ddpm"))
    args = ap.parse_args()
    run = Run(args.out)
    if args.threads:
        torch.set_num_threads(args.threads)
    if not args.model_dir:
        model_config(args.model)  # before any data or classifier work

    root = prepared_root([args.dataset], args.data_root)
    spec = load_spec(root, args.dataset)
    splits = {s: load_split(root, args.dataset, s) for s in ("train", "test")}
    classifier = domain_classifier(args.dataset, root, args.features)
    extractor = classifier.model.eval()
    if args.model_dir:
        model, train_info = (
            load_trained(args.model_dir, device=args.device),
            {"model_dir": str(args.model_dir)},
        )
    else:
        model, train_info = train_model(args, spec, splits["train"])
    model.to(args.device).eval()
    print(f"model: {model.config.model_dump()} train: {train_info}", flush=True)

    # the evaluate stage's reference and floor (harness.evaluate_images): the test split, and a seeded train subset
    # of the generated sample size
    real = torch.from_numpy(splits["test"][0]).float()
    f_real = classifier.features(real)
    rng = np.random.default_rng(args.seed)
    train_x = splits["train"][0]
    floor_x = torch.from_numpy(train_x[rng.choice(len(train_x), min(args.n, len(train_x)), replace=False)]).float()
    floor = fid_kid(extractor, real, floor_x, seed=args.seed)["fid"]
    floor_ci = fid_ci(f_real, classifier.features(floor_x), n_boot=args.n_boot, seed=args.seed)
    print(f"FID floor (train {len(floor_x)} vs test {len(real)}): {floor:.3f} [{floor_ci.lo:.3f}, {floor_ci.hi:.3f}]",
          flush=True)  # fmt: skip

    runs = [{"sampler": "ddpm", "steps": model.T, "eta": 1.0}]
    runs += [{"sampler": "ddim", "steps": s, "eta": eta} for eta in args.eta for s in args.ddim_steps]
    runs += [{"sampler": "dpmpp2m", "steps": s} for s in args.dpm_steps]  # deterministic: no η
    args.out.parent.mkdir(parents=True, exist_ok=True)  # the sample grids
    rows = []
    for r in runs:
        fake, seconds, cpu_seconds = timed_samples(model, args.n, batch=args.sample_batch, seed=args.seed, options=r)
        fid = fid_kid(extractor, real, fake, seed=args.seed)
        ci = fid_ci(f_real, classifier.features(fake), n_boot=args.n_boot, seed=args.seed)  # as the evaluate stage
        row = {
            **r,
            "n": args.n,
            "seconds": round(seconds, 2),
            "samples_per_s": args.n / seconds,
            "cpu_seconds": round(cpu_seconds, 2),  # robust to other load on a CPU with --threads 1
            "fid": fid["fid"],
            "fid_ci95": [ci.lo, ci.hi],
            "fid_features_check": ci.estimate,  # frechet.frechet_distance on the features: must match "fid"
            "kid": fid["kid"],
        }
        rows.append(row)
        name = f"{r['sampler']}{r['steps']}"
        save_png(image_grid(fake[:64], nrow=8), args.out.parent / f"{args.out.name}_{name}.png")
        print(f"{name:>8}: {row['samples_per_s']:9.1f} samples/s  FID {row['fid']:.3f} "
              f"[{ci.lo:.3f}, {ci.hi:.3f}]  KID {row['kid']:.4f}", flush=True)  # fmt: skip
    base = rows[0]
    for row in rows:
        row["speedup_vs_ddpm"] = row["samples_per_s"] / base["samples_per_s"]
        row["cpu_speedup_vs_ddpm"] = base["cpu_seconds"] / row["cpu_seconds"]
        row["fid_ratio_vs_ddpm"] = row["fid"] / base["fid"] if base["fid"] > 0 else math.nan
    on_cpu = "cuda" not in str(args.device)  # on a CPU, CPU time is the measure that other load leaves alone
    targets = {
        f"ddim50_eta{row['eta']:g}": {
            "speedup_ge_15x": row["cpu_speedup_vs_ddpm" if on_cpu else "speedup_vs_ddpm"] >= 15,
            "fid_within_10pct": row["fid_ratio_vs_ddpm"] <= 1.10,
        }
        for row in rows
        if row["sampler"] == "ddim" and row["steps"] == 50
    }
    targets |= {
        f"dpmpp2m{row['steps']}": {
            "speedup_ge_50x": row["cpu_speedup_vs_ddpm" if on_cpu else "speedup_vs_ddpm"] >= 50,
            "fid_within_10pct": row["fid_ratio_vs_ddpm"] <= 1.10,
        }
        for row in rows
        if row["sampler"] == "dpmpp2m" and row["steps"] <= 20
    }
    if "cuda" in str(args.device):
        device = f"{args.device} ({torch.cuda.get_device_name()})"
    else:  # the CPU model is in the platform block
        device = f"{args.device} ({torch.get_num_threads()} threads)"
    result = {
        "dataset": spec.name,
        "device": device,
        "model": model.config.model_dump(mode="json"),
        "train": train_info,
        "features": {k: v for k, v in classifier.meta.items() if k in ("test_accuracy", "sha256", "source")},
        "n_real": len(real),
        "reference_split": "test",
        "fid_floor_train_vs_test": floor,
        "fid_floor_ci95": [floor_ci.lo, floor_ci.hi],
        "ema": model.config.use_ema,
        "seed": args.seed,
        "rows": rows,
        "targets": targets,
    }
    print(markdown(result))
    run.write(result, markdown(result))


def markdown(r: dict[str, Any]) -> str:
    lines = [
        f"# Diffusion samplers (DDPM, DDIM, DPM-Solver++) on {r['dataset']}",
        "",
        f"Device: {r['device']}. N = {r['rows'][0]['n']} generated per sampler vs {r['n_real']} real "
        f"({r['reference_split']} split); FID in the domain classifier's features "
        f"(test accuracy {r['features'].get('test_accuracy')}); EMA weights: {r['ema']}; seed {r['seed']}. "
        f"Real-vs-real floor (train vs test): FID {r['fid_floor_train_vs_test']:.3f}"
        + (" [{:.3f}, {:.3f}].".format(*r["fid_floor_ci95"]) if "fid_floor_ci95" in r else "."),
        "",
        "| sampler | steps | eta | samples/s (wall) | speed-up (wall) | speed-up (CPU time) | FID [95% CI] "
        "| FID / DDPM's | KID |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for x in r["rows"]:
        lines.append(
            f"| {x['sampler']} | {x['steps']} | {x.get('eta', 0.0):g} | {x['samples_per_s']:.1f} | "
            f"{x['speedup_vs_ddpm']:.1f}x | {x['cpu_speedup_vs_ddpm']:.1f}x | "
            f"{x['fid']:.3f} [{x['fid_ci95'][0]:.3f}, {x['fid_ci95'][1]:.3f}] | "
            f"{x['fid_ratio_vs_ddpm']:.2f} | {x['kid']:.4f} |"
        )
    for name, checks in r["targets"].items():
        lines += ["", f"Targets, {name}: " + ", ".join(f"{k} {'PASS' if v else 'FAIL'}" for k, v in checks.items())]
    lines += ["", f"Model: `{json.dumps(r['model'])}`", f"Training: `{json.dumps(r['train'])}`", ""]
    return "\n".join(lines)


if __name__ == "__main__":
    main()
