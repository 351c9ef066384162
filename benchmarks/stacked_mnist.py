"""Stacked MNIST (1,000 modes): modes covered and KL(p̂ ‖ U₁₀₀₀) of our models beside DCGAN/VEEGAN/PacGAN.

    python benchmarks/stacked_mnist.py                                   # GAN, 3 seeds, 26,000 samples each
    python benchmarks/stacked_mnist.py --families gan vae diffusion --steps 8000 --seeds 0 1 2
    python benchmarks/stacked_mnist.py --families gan vae diffusion --steps 20 --n-samples 500 --seeds 0 \\
        --n-train 2000 --clf-epochs 1 --out reports/benchmarks/stacked_mnist_smoke     # a smoke run

Protocol (docs/protocols.md §2; components.evaluation.stacked): the training set is
``--n-train`` images whose three channels are three independent uniform draws from mnist5k's *train* split
(``make_stacked``); a model is trained on it through ``components.training.loop.fit`` (the in-process twin
of the Ray worker loop, as benchmarks/mode_collapse.py) with the pipeline's own family code, configured as the
family's mnist5k experiment in params.yaml (``EXPERIMENTS``: its model and train sections; ``--steps`` and
``--batch-size`` set the epochs and the batch); ``--n-samples``
samples (26,000 in the protocol; PacGAN's code 25,600) are labelled channel by channel by the mnist5k domain
classifier; a mode counts if one sample falls in it; KL(p̂ ‖ U₁₀₀₀) = log 1000 − H(p̂). The classifier is
``--features`` (the features stage's output) if present, else trained here with the features stage's
recipe (``train_classifier``, the ``features`` section of params.yaml; ``--clf-epochs`` overrides). The digits
are the prepare stage's mnist5k splits in ``--data-root``, or, if absent, prepared into a temporary folder as
the prepare stage does (benchmarks/_pipeline.py).

A reference row scores ``--n-samples`` real stacked images drawn from the *test* split with the same
classifier: what a perfect generator would get at this N with this classifier (its errors spread samples
over wrong modes; a finite N leaves KL > 0: about 999 / (2N) for a uniform histogram).

Deviations from the published setting (listed in the report): mnist5k (3,500 training digits, not 60,000),
our networks and step budget, a domain classifier trained on the 5k subset. Our rows are mean ± s.e. over
``--seeds``. Writes ``<out>.json`` and ``<out>.md`` (default reports/benchmarks/stacked_mnist; with the platform
block of benchmarks/_report.py).
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

from components.config import ExperimentConfig, load_params
from components.data import load_spec, load_split
from components.data.spec import DataSpec
from components.evaluation.features import TrainedClassifier
from components.evaluation.harness import generate
from components.evaluation.stacked import NUM_MODES, count_stacked_modes, make_stacked, stacked_modes
from components.evaluation.stats import mean_se
from components.layout import DATA, FEATURES
from components.models import build_model
from components.reporting.published import STACKED_MNIST
from components.training.loop import fit

DATASET = "mnist5k"
# Each family as its mnist5k experiment in params.yaml (model and train sections), with 3 channels: DCGAN
# (arXiv 1511.06434, non-saturating loss); the VAE; the DDPM U-Net (v-objective, Min-SNR-5, EMA, DDIM eta 1).
EXPERIMENTS = {"gan": "gan_mnist", "vae": "vae_mnist", "diffusion": "diffusion_mnist"}
LABELS = {"gan": "DCGAN (ours)", "vae": "VAE (ours)", "diffusion": "Diffusion (ours)"}
TRAIN_KEYS = {"lr", "betas", "weight_decay", "grad_clip", "lr_schedule"}  # what the report lists of train


def experiments() -> dict[str, ExperimentConfig]:
    params = load_params()
    return {family: params.experiment(key) for family, key in EXPERIMENTS.items()}


def family_protocol(family: str, exp: ExperimentConfig) -> dict[str, Any]:
    """What the report records of a family's configuration: the experiment, its model params as written, and the
    optimiser settings of its train section."""
    return {"experiment": EXPERIMENTS[family], "model": exp.model, "train": exp.train.model_dump(include=TRAIN_KEYS)}


def load_mnist(root: Path) -> tuple[dict[str, tuple[np.ndarray, np.ndarray]], Path]:
    """mnist5k's train and test splits as the prepare stage makes them, and the data root they came from."""
    root = prepared_root([DATASET], root)
    if load_spec(root, DATASET).shape[0] != 1:
        raise SystemExit(f"{root / DATASET}: expected single-channel digits")
    return {s: load_split(root, DATASET, s) for s in ("train", "test")}, root


def run_one(
    family: str,
    exp: ExperimentConfig,
    seed: int,
    x: np.ndarray,
    modes: np.ndarray,
    clf: TrainedClassifier,
    args: argparse.Namespace,
) -> dict[str, Any]:
    """Train one model for about ``args.steps`` optimizer steps and count the modes of its samples."""
    spec = DataSpec(name="stacked_mnist5k", kind="image", shape=tuple(x.shape[1:]), levels=256)
    model = build_model(family, exp.family_config, spec)
    per_epoch = len(x) // args.batch_size
    epochs = max(1, math.ceil(args.steps / per_epoch))
    n_used = min(len(x), math.ceil(args.steps / epochs) * args.batch_size)  # epochs × steps/epoch ≈ --steps
    # the experiment's train section, in this process (fit: no Ray), for this step budget and batch
    train = exp.train.model_copy(
        update={"num_workers": 0, "seed": seed, "epochs": epochs, "batch_size": args.batch_size}
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
        "docs/protocols.md §2.5 (full MNIST, 26,000 / 25,600 samples).",
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
        + "; ".join(f"{f} {json.dumps(p['families'][f], default=list)}" for f in summary if f in p["families"])
        + ".",
        f"- Optimizer steps of batch {p['batch_size']} per run as in each row (`components.training.loop.fit`, one "
        "process); rows from earlier runs of this benchmark (`--include`): "
        + (", ".join(p["included"]) or "none")
        + ".",
        f"- Classifier: mnist5k domain classifier ({clf.get('source', 'features stage')}), single-digit test "
        f"accuracy {clf.get('test_accuracy', float('nan')):.4f}, {clf.get('epochs', '?')} epochs.",
        f"- KL(p̂ ‖ U₁₀₀₀) = log 1000 − H(p̂) over the {p['n_samples']} samples' mode histogram, no smoothing "
        f"(max {math.log(NUM_MODES):.2f}).",
        f"- This invocation's wall time {p['wall_seconds'] / 60:.1f} min, {p['threads']} torch thread(s) (machine: "
        f"Platform below); training + sampling summed over the rows' runs {p['run_minutes_total']:.1f} min "
        "(included runs as they ran).",
    ]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument(
        "--families", nargs="*", default=["gan"], choices=list(EXPERIMENTS), help="none: only tabulate --include"
    )
    ap.add_argument("--steps", type=int, default=8000, help="optimizer steps per run (about: whole epochs)")
    ap.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    ap.add_argument("--n-samples", type=int, default=26_000, help="samples counted per run (protocol: 26,000)")
    ap.add_argument("--n-train", type=int, default=50_000, help="stacked training images")
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--diffusion-steps", type=int, default=None, help="DDIM steps (default: the config's 50)")
    ap.add_argument("--data-root", type=Path, default=DATA, help="the prepare stage's output")
    ap.add_argument("--features", type=Path, default=FEATURES / DATASET, help="the features stage's output")
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
    run = Run(args.out)
    torch.set_num_threads(args.threads)

    t_start = time.perf_counter()
    exps = experiments()
    splits, root = load_mnist(args.data_root)
    clf = domain_classifier(DATASET, root, args.features, epochs=args.clf_epochs)
    x, modes = make_stacked(*splits["train"], args.n_train, seed=0)
    ref = reference(splits, clf, args.n_samples, seed=0)
    print(f"classifier: test accuracy {clf.meta.get('test_accuracy', float('nan')):.4f}; real stacked test "
          f"images: {ref['modes']} modes, KL {ref['kl']:.3f}", flush=True)  # fmt: skip
    runs = included_runs(args.include, clf, args)
    for family in args.families:
        for seed in args.seeds:
            r = run_one(family, exps[family], seed, x, modes, clf, args)
            runs.append(r)
            print(f"{family:9s} seed {seed}: {r['modes']} modes, KL {r['kl']:.3f} ({r['steps']} steps, "
                  f"train {r['train_seconds']:.0f} s, sampling {r['sample_seconds']:.0f} s)", flush=True)  # fmt: skip
    protocol = {
        "n_train": args.n_train,
        "batch_size": args.batch_size,
        "n_samples": args.n_samples,
        "seeds": args.seeds,
        "families": {f: family_protocol(f, exps[f]) for f in dict.fromkeys(r["family"] for r in runs)},
        "included": [str(i) for i in args.include],
        "classifier": clf.meta,
        "threads": args.threads,
        "wall_seconds": round(time.perf_counter() - t_start, 1),
        "run_minutes_total": sum(r["train_seconds"] + r["sample_seconds"] for r in runs) / 60,
    }
    summary = summarise(runs)
    report = markdown(summary, ref, protocol)
    print(report)
    blob = {"protocol": protocol, "summary": summary, "reference": ref, "runs": runs, "published": STACKED_MNIST}
    run.write(blob, report)


if __name__ == "__main__":
    main()
