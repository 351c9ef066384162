"""Stacked MNIST (1,000 modes): modes covered and KL(p̂ ‖ U₁₀₀₀) of our models beside DCGAN/VEEGAN/PacGAN.

    python benchmarks/stacked_mnist.py                                   # GAN, 3 seeds, 26,000 samples each
    python benchmarks/stacked_mnist.py --families gan vae diffusion --steps 8000 --seeds 0 1 2
    python benchmarks/stacked_mnist.py --families gan vae diffusion --steps 20 --n-samples 500 --seeds 0 \\
        --n-train 2000 --clf-epochs 1 --out reports/benchmarks/stacked_mnist_smoke     # a smoke run

Protocol (../shared/reference/benchmarks.md §2; components.evaluation.stacked): the training set is
``--n-train`` images whose three channels are three independent uniform draws from mnist5k's *train* split
(``make_stacked``); a model is trained on it through ``components.training.loop.fit`` (the in-process twin
of the Ray worker loop, as benchmarks/mode_collapse.py) with the pipeline's own family code; ``--n-samples``
samples (26,000 in the protocol; PacGAN's code 25,600) are labelled channel by channel by the mnist5k domain
classifier; a mode counts if one sample falls in it; KL(p̂ ‖ U₁₀₀₀) = log 1000 − H(p̂). The classifier is
``--features`` (the features stage's output) if present, else trained here with the features stage's
recipe (``train_classifier``, the ``features`` section of params.yaml; ``--clf-epochs`` overrides).

A reference row scores ``--n-samples`` real stacked images drawn from the *test* split with the same
classifier: what a perfect generator would get at this N with this classifier (its errors spread samples
over wrong modes; a finite N leaves KL > 0: about 999 / (2N) for a uniform histogram).

Deviations from the published setting (listed in the report): mnist5k (3,500 training digits, not 60,000),
our networks and step budget, a domain classifier trained on the 5k subset. Our rows are mean ± s.e. over
``--seeds``. Writes ``<out>.json`` and ``<out>.md`` (default reports/benchmarks/stacked_mnist).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import os
import platform
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
import yaml

from components.config import FeaturesConfig, TrainConfig
from components.data import get_source, load_spec, load_split, split_indices
from components.data.spec import DataSpec
from components.evaluation.features import TrainedClassifier, load_classifier, train_classifier
from components.evaluation.harness import generate
from components.evaluation.stacked import NUM_MODES, count_stacked_modes, make_stacked, stacked_modes
from components.evaluation.stats import mean_se
from components.models import build_model
from components.reporting.published import STACKED_MNIST
from components.training.loop import fit

DATASET = "mnist5k"
# Each family as its mnist5k experiment in params.yaml (gan_mnist, vae_mnist, diffusion_mnist), with 3 channels.
FAMILIES: dict[str, dict[str, Any]] = {
    "gan": {  # DCGAN (arXiv 1511.06434), non-saturating loss
        "model": {"latent_dim": 64, "width": 32},
        "train": {"lr": 2e-4, "betas": (0.5, 0.999)},
    },
    "vae": {"model": {"latent_dim": 16, "width": 32, "beta": 1.0}, "train": {"lr": 2e-3}},
    "diffusion": {  # DDPM U-Net, v-objective, Min-SNR-5, EMA; DDIM sampling (eta 1)
        "model": {
            "dim": 32,
            "dim_mults": [1, 2],
            "patch": 2,
            "objective": "v",
            "min_snr_gamma": 5.0,
            "ema_decay": 0.995,
            "eta": 1.0,
        },
        "train": {"lr": 2e-3},
    },
}
LABELS = {"gan": "DCGAN (ours)", "vae": "VAE (ours)", "diffusion": "Diffusion (ours)"}


def load_mnist(root: Path) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """mnist5k's train and test splits: the prepared ones if present, else split here as the prepare stage does."""
    if (root / DATASET / "manifest.json").exists():
        if load_spec(root, DATASET).shape[0] != 1:
            raise SystemExit(f"{root / DATASET}: expected single-channel digits")
        return {s: load_split(root, DATASET, s) for s in ("train", "test")}
    raw = get_source(DATASET)()
    idx = split_indices(len(raw.x), raw.y, val=0.1, test=0.2, seed=0)
    return {s: (raw.x[idx[s]], raw.y[idx[s]]) for s in ("train", "test")}


def domain_classifier(path: Path, splits: dict[str, tuple], epochs: int | None) -> TrainedClassifier:
    """The features stage's mnist5k classifier if it exists, else one trained here with the stage's recipe."""
    if (path / "meta.json").exists() and epochs is None:
        return load_classifier(path)
    params = Path("params.yaml")
    section = yaml.safe_load(params.read_text()).get("features", {}) if params.exists() else {}
    cfg = FeaturesConfig(**section)
    t0 = time.perf_counter()
    model, acc = train_classifier(
        splits["train"],
        splits["test"],
        num_classes=10,
        epochs=epochs or cfg.epochs,
        batch_size=cfg.batch_size,
        lr=cfg.lr,
        seed=cfg.seed,
    )
    digest = hashlib.sha256(b"".join(t.numpy().tobytes() for t in model.state_dict().values())).hexdigest()
    meta = {**acc, "epochs": epochs or cfg.epochs, "source": "trained by this benchmark", "sha256": digest,
            "train_seconds": round(time.perf_counter() - t0, 1)}  # fmt: skip
    return TrainedClassifier(model=model.eval(), meta=meta)


def run_one(
    family: str, seed: int, x: np.ndarray, modes: np.ndarray, clf: TrainedClassifier, args: argparse.Namespace
) -> dict[str, Any]:
    """Train one model for about ``args.steps`` optimizer steps and count the modes of its samples."""
    spec = DataSpec(name="stacked_mnist5k", kind="image", shape=tuple(x.shape[1:]), levels=256)
    model = build_model(family, FAMILIES[family]["model"], spec)
    per_epoch = len(x) // args.batch_size
    epochs = max(1, math.ceil(args.steps / per_epoch))
    n_used = min(len(x), math.ceil(args.steps / epochs) * args.batch_size)  # epochs × steps/epoch ≈ --steps
    train = TrainConfig(
        num_workers=0, seed=seed, epochs=epochs, batch_size=args.batch_size, **FAMILIES[family]["train"]
    )
    t0 = time.perf_counter()
    history = fit(model, (torch.from_numpy(x[:n_used]), torch.from_numpy(modes[:n_used])), train)
    train_seconds = time.perf_counter() - t0
    options = {"steps": args.diffusion_steps} if family == "diffusion" and args.diffusion_steps else {}
    t0 = time.perf_counter()
    samples = generate(model, args.n_samples, batch_size=500, seed=seed, options=options)
    sample_seconds = time.perf_counter() - t0
    r = count_stacked_modes(samples, clf)
    return {
        "family": family,
        "seed": seed,
        "modes": r["modes"],
        "kl": r["kl"],
        "n_samples": r["n_samples"],
        "steps": epochs * (n_used // args.batch_size),
        "epochs": epochs,
        "n_train_used": n_used,
        "final_epoch": history[-1] if history else {},
        "train_seconds": round(train_seconds, 1),
        "sample_seconds": round(sample_seconds, 1),
        "sampler_options": options,
        "histogram": r["histogram"],
    }


def included_runs(paths: list[Path], clf: TrainedClassifier, args: argparse.Namespace) -> list[dict[str, Any]]:
    """The runs of earlier outputs of this benchmark, checked to share this run's protocol."""
    runs: list[dict[str, Any]] = []
    for path in paths:
        if not path.exists():
            raise SystemExit(f"--include {path}: no such file; pass an earlier <out>.json of this benchmark")
        blob = json.loads(path.read_text())
        p = blob["protocol"]
        ours = {"n_train": args.n_train, "n_samples": args.n_samples, "batch_size": args.batch_size,
                "classifier sha256": clf.meta.get("sha256")}  # fmt: skip
        theirs = {**{k: p.get(k) for k in ("n_train", "n_samples", "batch_size")},
                  "classifier sha256": p.get("classifier", {}).get("sha256")}  # fmt: skip
        if ours != theirs:
            raise SystemExit(f"--include {path}: expected the protocol {ours}, got {theirs}; rerun it with these")
        runs += blob["runs"]
    return runs


def reference(splits: dict[str, tuple], clf: TrainedClassifier, n: int, seed: int) -> dict[str, Any]:
    """Real stacked test images through the same classifier: the ceiling at this N, and the triple accuracy."""
    x, modes = make_stacked(*splits["test"], n, seed=seed + 1)
    r = count_stacked_modes(x, clf)
    true_modes = int(len(np.unique(modes)))
    acc = float((stacked_modes(x, clf) == modes).mean())
    return {"modes": r["modes"], "kl": r["kl"], "true_modes": true_modes, "triple_accuracy": acc, "n_samples": n}


def summarise(runs: list[dict[str, Any]]) -> dict[str, dict[str, dict[str, float]]]:
    """family -> metric -> {mean, se, n}; se = sample std / sqrt(n) (0 for one run)."""
    out: dict[str, dict[str, dict[str, float]]] = {}
    for fam in dict.fromkeys(r["family"] for r in runs):
        rs = [r for r in runs if r["family"] == fam]
        out[fam] = {k: mean_se([r[k] for r in rs]) for k in ("modes", "kl")}
        steps = sorted({r["steps"] for r in rs})
        opts = rs[0].get("sampler_options") or {}
        sampler = f", DDIM-{opts['steps']}" if "steps" in opts else ""
        seeds = ", ".join(str(r["seed"]) for r in rs)
        out[fam]["how"] = f"{'/'.join(map(str, steps))} steps, seed{'s' if len(rs) > 1 else ''} {seeds}{sampler}"
    return out


def markdown(summary: dict, ref: dict, protocol: dict[str, Any]) -> str:
    p = protocol
    lines = [
        "# Stacked MNIST (1,000 modes)",
        "",
        f"Ours: mean ± s.e. over seeds, {p['n_samples']} samples each, mnist5k; published rows: "
        "benchmarks.md §2 (full MNIST, 26,000 / 25,600 samples).",
        "",
        "| model | modes (of 1000) | KL(p̂ ‖ U) | source |",
        "| --- | --- | --- | --- |",
    ]
    for fam, s in summary.items():
        m, k = s["modes"], s["kl"]
        lines.append(
            f"| {LABELS[fam]} | {m['mean']:.1f}±{m['se']:.1f} | {k['mean']:.3f}±{k['se']:.3f} | this repo, {s['how']} |"
        )
    lines.append(
        f"| real stacked test images (reference) | {ref['modes']} | {ref['kl']:.3f} | this classifier at N = "
        f"{ref['n_samples']}; true modes in the draw {ref['true_modes']}, triples labelled right "
        f"{ref['triple_accuracy']:.3f} |"
    )
    lines += [f"| {name} | {modes} | {kl} | {src} |" for name, (modes, kl, src) in STACKED_MNIST.items()]
    clf = p["classifier"]
    lines += [
        "",
        "## Protocol and deviations",
        "",
        f"- Training set: {p['n_train']} stacked images from mnist5k's train split (3,500 digits; the published "
        "numbers use the 60,000-digit MNIST), seed 0; uniform over the 1,000 triples.",
        "- Networks and optimiser per family (params.yaml's mnist5k experiments, 3 channels): "
        + "; ".join(f"{f} {json.dumps(FAMILIES[f])}" for f in summary)
        + ".",
        f"- Optimizer steps of batch {p['batch_size']} per run as in each row (`components.training.loop.fit`, one "
        "process); rows from earlier runs of this benchmark (`--include`): "
        + (", ".join(p["included"]) or "none")
        + ".",
        f"- Classifier: mnist5k domain classifier ({clf.get('source', 'features stage')}), single-digit test "
        f"accuracy {clf.get('test_accuracy', float('nan')):.4f}, {clf.get('epochs', '?')} epochs.",
        f"- KL(p̂ ‖ U₁₀₀₀) = log 1000 − H(p̂) over the {p['n_samples']} samples' mode histogram, no smoothing "
        f"(max {math.log(NUM_MODES):.2f}).",
        f"- This invocation's wall time {p['wall_seconds'] / 60:.1f} min on {p['cpus']} CPUs ({p['machine']}), "
        f"{p['threads']} torch thread(s); training + sampling summed over the rows' runs "
        f"{p['run_minutes_total']:.1f} min (included runs as they ran); other load on the machine not controlled.",
    ]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument(
        "--families", nargs="*", default=["gan"], choices=list(FAMILIES), help="none: only tabulate --include"
    )
    ap.add_argument("--steps", type=int, default=8000, help="optimizer steps per run (about: whole epochs)")
    ap.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    ap.add_argument("--n-samples", type=int, default=26_000, help="samples counted per run (protocol: 26,000)")
    ap.add_argument("--n-train", type=int, default=50_000, help="stacked training images")
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--diffusion-steps", type=int, default=None, help="DDIM steps (default: the config's 50)")
    ap.add_argument("--data-root", type=Path, default=Path("data/prepared"))
    ap.add_argument("--features", type=Path, default=Path("data/features") / DATASET)
    ap.add_argument("--clf-epochs", type=int, default=None, help="train the classifier here for this many epochs")
    ap.add_argument("--threads", type=int, default=torch.get_num_threads())
    ap.add_argument("--out", default="reports/benchmarks/stacked_mnist", help="writes <out>.md and <out>.json")
    ap.add_argument(
        "--include",
        nargs="+",
        type=Path,
        default=[],
        help="earlier outputs (<out>.json) of this benchmark whose runs join the table (same classifier, "
        "--n-train, --n-samples, --batch-size), e.g. families run in parallel processes",
    )
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)

    t_start = time.perf_counter()
    splits = load_mnist(args.data_root)
    clf = domain_classifier(args.features, splits, args.clf_epochs)
    x, modes = make_stacked(*splits["train"], args.n_train, seed=0)
    ref = reference(splits, clf, args.n_samples, seed=0)
    print(f"classifier: test accuracy {clf.meta.get('test_accuracy', float('nan')):.4f}; real stacked test "
          f"images: {ref['modes']} modes, KL {ref['kl']:.3f}", flush=True)  # fmt: skip
    runs = included_runs(args.include, clf, args)
    for family in args.families:
        for seed in args.seeds:
            r = run_one(family, seed, x, modes, clf, args)
            runs.append(r)
            print(f"{family:9s} seed {seed}: {r['modes']} modes, KL {r['kl']:.3f} ({r['steps']} steps, "
                  f"train {r['train_seconds']:.0f} s, sampling {r['sample_seconds']:.0f} s)", flush=True)  # fmt: skip
    protocol = {
        "n_train": args.n_train,
        "batch_size": args.batch_size,
        "n_samples": args.n_samples,
        "seeds": args.seeds,
        "families": {f: FAMILIES[f] for f in dict.fromkeys(r["family"] for r in runs)},
        "included": [str(i) for i in args.include],
        "classifier": clf.meta,
        "threads": args.threads,
        "cpus": os.cpu_count(),
        "machine": platform.processor() or platform.machine(),
        "wall_seconds": round(time.perf_counter() - t_start, 1),
        "run_minutes_total": sum(r["train_seconds"] + r["sample_seconds"] for r in runs) / 60,
    }
    summary = summarise(runs)
    report = markdown(summary, ref, protocol)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.with_suffix(".md").write_text(report)
    blob = {"protocol": protocol, "summary": summary, "reference": ref, "runs": runs, "published": STACKED_MNIST}
    out.with_suffix(".json").write_text(json.dumps(blob, indent=2, default=str))
    print(report)


if __name__ == "__main__":
    main()
