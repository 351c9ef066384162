"""DDIM vs DDPM: samples/s and FID of DDPM-1000 and DDIM-{10,25,50,100} from one trained diffusion model.

    python benchmarks/ddim_vs_ddpm.py --model-dir models/<experiment>      # a trained model (save_trained)
    python benchmarks/ddim_vs_ddpm.py --train-epochs 40 --model '{"dim": 32, "dim_mults": [1, 2], "patch": 2}'

The second form trains first, in-process, through ``components.training.loop.fit`` (the Ray worker's epoch
loop without Ray); ``--save-model DIR`` keeps the result for later runs.

Protocol (benchmarks.md §3): FID = ``components.evaluation.harness.fid_kid`` (torchmetrics
``FrechetInceptionDistance(feature=<domain classifier>)``) of ``--n`` samples per sampler against the test
split, all samplers from the same seed; the real-vs-real floor (a train subset vs test) is reported beside
it, and a 95% centred bootstrap interval (resampling generated and real features; the spread of the
resampled FIDs around the estimate, as the evaluate stage reports it: resampling with replacement inflates
FID, so a percentile interval can miss the estimate) next to every FID. Samples/s is wall-clock sampling
throughput on ``--device`` after one warm-up batch; the process CPU time is recorded too, and on a shared
CPU (other jobs running) the speed-up by CPU time with ``--threads 1`` is the trustworthy one. The domain classifier is
``--features DIR`` (the features stage's output, default ``data/features/<dataset>``); if that does not
exist, one is trained here with the features stage's recipe (``train_classifier``) and its test accuracy
recorded. The data are the prepared splits in ``data/prepared/<dataset>`` if present, else the source is
loaded and split as the prepare stage does (seed 0, val 0.1, test 0.2).

Targets (the task's): DDIM-50 at least 15x the samples/s of DDPM-1000 with FID within 10% of it.
Writes ``--out``.json and ``--out``.md (default reports/benchmarks/ddim_vs_ddpm), plus sample grids.
"""

from __future__ import annotations

import argparse
import json
import math
import platform
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from scipy import linalg

from components.config import TrainConfig
from components.data import get_source, load_spec, load_split, split_indices
from components.data.spec import DataSpec
from components.evaluation.features import TrainedClassifier, load_classifier, train_classifier
from components.evaluation.grids import image_grid, save_png
from components.evaluation.harness import fid_kid, generate
from components.evaluation.stats import bootstrap_ci
from components.models import build_model
from components.models.store import load_trained, save_trained
from components.training.loop import fit


def frechet_distance(f1: torch.Tensor, f2: torch.Tensor) -> float:
    """‖μ₁ − μ₂‖² + Tr(Σ₁ + Σ₂ − 2(Σ₁Σ₂)^½) of two feature sets (arXiv 1706.08500), float64."""
    a, b = f1.double().numpy(), f2.double().numpy()
    mu1, mu2 = a.mean(0), b.mean(0)
    s1, s2 = np.cov(a, rowvar=False), np.cov(b, rowvar=False)
    covmean = linalg.sqrtm(s1 @ s2).real
    return max(float(((mu1 - mu2) ** 2).sum() + np.trace(s1 + s2 - 2 * covmean)), 0.0)


def load_data(root: Path, name: str, *, seed: int, val: float, test: float) -> tuple[DataSpec, dict[str, tuple]]:
    if (root / name / "manifest.json").exists():
        return load_spec(root, name), {s: load_split(root, name, s) for s in ("train", "test")}
    raw = get_source(name)()
    idx = split_indices(len(raw.x), raw.y if raw.class_names else None, val=val, test=test, seed=seed)
    spec = DataSpec(
        name=name, kind=raw.kind, shape=tuple(raw.x.shape[1:]), class_names=raw.class_names, levels=raw.levels
    )
    return spec, {s: (raw.x[idx[s]], raw.y[idx[s]]) for s in ("train", "test")}


def domain_classifier(path: Path, spec: DataSpec, splits: dict[str, tuple]) -> TrainedClassifier:
    if (path / "meta.json").exists():
        return load_classifier(path)
    model, acc = train_classifier(
        splits["train"],
        splits["test"],
        num_classes=spec.num_classes,
        epochs=8,
        batch_size=128,
        lr=2e-3,
        seed=0,
    )
    return TrainedClassifier(model=model.eval(), meta={**acc, "source": "trained by this benchmark"})


def train_model(args: argparse.Namespace, spec: DataSpec, splits: dict[str, tuple]) -> tuple[Any, dict]:
    model = build_model("diffusion", json.loads(args.model), spec)
    x, y = splits["train"]
    cfg = TrainConfig(epochs=args.train_epochs, batch_size=args.batch_size, lr=args.lr, num_workers=0, seed=args.seed)
    t0 = time.perf_counter()
    history = fit(model, (torch.from_numpy(x).float(), torch.from_numpy(y)), cfg, device=args.device)
    info = {
        "epochs": args.train_epochs,
        "batch_size": args.batch_size,
        "lr": args.lr,
        "optimizer_steps": int(model.step),
        "train_seconds": round(time.perf_counter() - t0, 1),
        "final_loss": history[-1]["loss"],
    }
    if args.save_model:
        save_trained(args.save_model, model, {"family": "diffusion", "model": json.loads(args.model), "train": info})
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
    ap.add_argument("--data-root", type=Path, default=Path("data/prepared"))
    ap.add_argument("--features", type=Path, help="domain classifier directory (default data/features/<dataset>)")
    ap.add_argument("--n", type=int, default=2000, help="samples per sampler")
    ap.add_argument("--sample-batch", type=int, default=500)
    ap.add_argument("--ddim-steps", type=int, nargs="+", default=[10, 25, 50, 100])
    ap.add_argument(
        "--eta", type=float, nargs="+", default=[0.0, 1.0], help="DDIM η values (each with every step count)"
    )
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: torch's default)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--n-boot", type=int, default=200)
    ap.add_argument("--out", type=Path, default=Path("reports/benchmarks/ddim_vs_ddpm"))
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)

    spec, splits = load_data(args.data_root, args.dataset, seed=0, val=0.1, test=0.2)
    classifier = domain_classifier(args.features or Path("data/features") / args.dataset, spec, splits)
    extractor = classifier.model.eval()
    if args.model_dir:
        model, train_info = (
            load_trained(args.model_dir, device=args.device),
            {"model_dir": str(args.model_dir)},
        )
    else:
        model, train_info = train_model(args, spec, splits)
    model.to(args.device).eval()
    print(f"model: {model.config.model_dump()} train: {train_info}", flush=True)

    real = torch.from_numpy(splits["test"][0]).float()
    f_real = classifier.features(real)
    rng = np.random.default_rng(args.seed)
    train_x = splits["train"][0]
    floor_x = torch.from_numpy(train_x[rng.choice(len(train_x), min(args.n, len(train_x)), replace=False)]).float()
    floor = fid_kid(extractor, real, floor_x, seed=args.seed)["fid"]
    print(f"FID floor (train {len(floor_x)} vs test {len(real)}): {floor:.3f}", flush=True)

    runs = [{"sampler": "ddpm", "steps": model.T, "eta": 1.0}]
    runs += [{"sampler": "ddim", "steps": s, "eta": eta} for eta in args.eta for s in args.ddim_steps]
    args.out.parent.mkdir(parents=True, exist_ok=True)
    rows = []
    for r in runs:
        fake, seconds, cpu_seconds = timed_samples(model, args.n, batch=args.sample_batch, seed=args.seed, options=r)
        fid = fid_kid(extractor, real, fake, seed=args.seed)
        f_fake = classifier.features(fake)
        ci = bootstrap_ci(frechet_distance, f_real, f_fake, n_boot=args.n_boot, seed=args.seed, method="centred")
        row = {
            **r,
            "n": args.n,
            "seconds": round(seconds, 2),
            "samples_per_s": args.n / seconds,
            "cpu_seconds": round(cpu_seconds, 2),  # robust to other load on a CPU with --threads 1
            "fid": fid["fid"],
            "fid_ci95": [ci.lo, ci.hi],
            "fid_features_check": ci.estimate,  # the same FID from our own formula: must match "fid"
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
    if "cuda" in str(args.device):
        device = f"{args.device} ({torch.cuda.get_device_name()})"
    else:
        device = f"{args.device} ({platform.processor() or platform.machine()}, {torch.get_num_threads()} threads)"
    result = {
        "dataset": spec.name,
        "device": device,
        "model": model.config.model_dump(mode="json"),
        "train": train_info,
        "features": {k: v for k, v in classifier.meta.items() if k in ("test_accuracy", "sha256", "source")},
        "n_real": len(real),
        "reference_split": "test",
        "fid_floor_train_vs_test": floor,
        "ema": model.config.use_ema,
        "seed": args.seed,
        "rows": rows,
        "targets": targets,
    }
    args.out.with_suffix(".json").write_text(json.dumps(result, indent=2) + "\n")
    args.out.with_suffix(".md").write_text(markdown(result))
    print(markdown(result))


def markdown(r: dict[str, Any]) -> str:
    lines = [
        f"# DDIM vs DDPM on {r['dataset']}",
        "",
        f"Device: {r['device']}. N = {r['rows'][0]['n']} generated per sampler vs {r['n_real']} real "
        f"({r['reference_split']} split); FID in the domain classifier's features "
        f"(test accuracy {r['features'].get('test_accuracy')}); EMA weights: {r['ema']}; seed {r['seed']}. "
        f"Real-vs-real floor (train vs test): FID {r['fid_floor_train_vs_test']:.3f}.",
        "",
        "| sampler | steps | eta | samples/s (wall) | speed-up (wall) | speed-up (CPU time) | FID [95% CI] "
        "| FID / DDPM's | KID |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for x in r["rows"]:
        lines.append(
            f"| {x['sampler']} | {x['steps']} | {x['eta']:g} | {x['samples_per_s']:.1f} | "
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
