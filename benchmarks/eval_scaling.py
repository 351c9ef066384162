"""Distributed evaluation on this machine: samples/s and FID-10k wall time for 1 vs 2 evaluation workers.

    python benchmarks/eval_scaling.py                                   # vae_mnist and diffusion_mnist (5 DDIM steps)
    python benchmarks/eval_scaling.py --experiments gan_mnist --n 2000  # a quick run
    python benchmarks/eval_scaling.py --out benchmarks/results/eval_scaling

What is timed is what the evaluate stage does with ``evaluate.num_workers``
(``components.evaluation.distributed.draw``): ``--n`` samples in seeded chunks of ``--chunk-size``, each chunk
passed through the domain classifier (features, Fréchet moments, labels), then the FID of the merged moments
against the real reference's. "FID-10k wall time" is that whole step at N = 10,000: draw + extract + FID. Four
ways, in this one process, one after the other:

- ``in-process``: ``num_workers = 0``, this process, all torch threads (the baseline, today's default);
- ``in-process, 1 thread``: the same on one torch thread (what one worker gets);
- ``ray, 1 worker`` and ``ray, 2 workers``: Ray actors of one CPU (one torch thread) each, the model and the
  classifier sent through the object store, on a fresh local Ray instance (``init_ray``; its start-up is
  reported on its own). Their wall time includes starting the actors; ``steady samples/s`` leaves that out.

The chunks do not depend on the worker count, so the three ways that compute every chunk on one torch thread
(in-process on 1 thread, 1 and 2 workers) must give the bit-identical FID, and the in-process baseline on all
threads the same FID to float32 round-off (relative 1e-6; oneDNN may pick other kernels for another thread
count): the script exits 1 otherwise. Ratios are against the in-process baseline, and 2 workers against 1.

The model is the experiment's trained ``models/<exp>`` when it exists, else its family with the params.yaml
hyperparameters, untrained (seed 0): sampling costs the same either way, the FID then means nothing. The
classifier is ``data/features/<dataset>`` when it exists, else an untrained one of the same architecture; the
real reference is the dataset's source images (mnist5k: 5,000). The load average before and after every run is
recorded: on a 2-core machine a second worker only helps when the second core is free.
"""

from __future__ import annotations

import argparse
import os
import time
from typing import Any

import torch
from _report import Run, load_average

from components.config import load_params
from components.data import get_source, spec_of
from components.evaluation.distributed import draw
from components.evaluation.features import DomainClassifier, TrainedClassifier, load_classifier
from components.evaluation.frechet import FrechetMoments, frechet_from_moments
from components.evaluation.stats import torch_threads
from components.layout import FEATURES, model_dir
from components.models import build_model

MODES = (
    ("in-process", 0, None),
    ("in-process, 1 thread", 0, 1),
    ("ray, 1 worker", 1, None),
    ("ray, 2 workers", 2, None),
)


def setup(key: str, steps: int | None) -> dict[str, Any]:
    """The experiment's model, domain classifier, real reference moments and sampler options."""
    from components.models.store import load_trained

    params = load_params()
    exp = params.experiment(key)
    raw = get_source(params.prepare.datasets[exp.dataset].source)()
    spec = spec_of(exp.dataset, raw)
    if spec.kind != "image":
        raise SystemExit(f"eval_scaling: expected an image experiment, got {key!r} ({spec.kind})")
    trained = (model_dir(key) / "model.safetensors").exists()
    torch.manual_seed(0)
    model = load_trained(model_dir(key)) if trained else build_model(exp.family, exp.model, spec).eval()
    clf_dir = FEATURES / exp.dataset
    if (clf_dir / "meta.json").exists():
        clf, clf_what = load_classifier(clf_dir), f"trained ({clf_dir})"
    else:
        torch.manual_seed(0)
        clf = TrainedClassifier(
            model=DomainClassifier(channels=spec.shape[0], num_classes=max(spec.num_classes, 1)).eval(),
            meta={"sha256": None},
        )
        clf_what = "untrained (seed 0)"
    options = dict(exp.evaluate.sampler)
    if steps is not None and exp.family == "diffusion":
        options["steps"] = steps
    real = clf.features(torch.from_numpy(raw.x).float())
    return {
        "model": model,
        "classifier": clf,
        "reference": FrechetMoments.of(real),
        "options": options,
        "card": {
            "family": exp.family,
            "dataset": exp.dataset,
            "weights": f"trained ({model_dir(key)})" if trained else "untrained (seed 0)",
            "classifier": clf_what,
            "sampler_options": options,
            "n_reference": int(len(real)),
        },
    }


def one_run(s: dict[str, Any], n: int, chunk_size: int, workers: int, threads: int | None) -> dict[str, Any]:
    before = load_average()
    t0 = time.perf_counter()
    with torch_threads(threads or torch.get_num_threads()):
        drawn = draw(
            s["model"],
            n,
            chunk_size=chunk_size,
            seed=0,
            options=s["options"],
            extractors={"classifier": s["classifier"]},
            labeller="classifier",
            num_workers=workers,
        )
        fid = frechet_from_moments(s["reference"], drawn.moments["classifier"])
    wall = time.perf_counter() - t0
    startup = drawn.info["startup_seconds"]
    return {
        "wall_seconds": round(wall, 3),
        "startup_seconds": startup,
        "samples_per_s": n / wall,
        "steady_samples_per_s": n / (wall - startup),
        "fid": fid,
        "device": drawn.info["device"],
        "sampling_seconds": drawn.info["sampling_seconds"],
        "extraction_seconds": drawn.info["extraction_seconds"],
        "load_before": before,
        "load_after": load_average(),
    }


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--experiments", nargs="+", default=["vae_mnist", "diffusion_mnist"], help="params.yaml keys")
    p.add_argument("--n", type=int, default=10_000, help="samples per run (FID-10k: 10,000)")
    p.add_argument("--chunk-size", type=int, default=250, help="samples per chunk (evaluate.batch_size)")
    p.add_argument("--diffusion-steps", type=int, default=5, help="diffusion: sampler steps (0: the config's)")
    p.add_argument("--repeats", type=int, default=1, help="runs of each way; the fastest counts")
    p.add_argument("--out", default="reports/benchmarks/eval_scaling", help="writes <out>.json and <out>.md")
    args = p.parse_args()
    run = Run(args.out)

    from components.training.driver import init_ray

    t0 = time.perf_counter()
    init_ray(num_cpus=os.cpu_count())
    ray_init = time.perf_counter() - t0
    print(f"ray.init (fresh local instance, {os.cpu_count()} CPUs): {ray_init:.2f}s   load average {run.load_before}")

    report: dict[str, Any] = {
        "config": {**{k: v for k, v in vars(args).items() if k != "out"}, "torch_threads": torch.get_num_threads()},
        "ray_init_seconds": round(ray_init, 2),
        "experiments": {},
    }
    ok = True
    for key in args.experiments:
        s = setup(key, args.diffusion_steps or None)
        draw(s["model"], args.chunk_size, chunk_size=args.chunk_size, seed=0, options=s["options"])  # warm-up
        runs: dict[str, Any] = {}
        for name, workers, threads in MODES:
            tries = [one_run(s, args.n, args.chunk_size, workers, threads) for _ in range(args.repeats)]
            best = min(tries, key=lambda r: r["wall_seconds"])
            runs[name] = {**best, "all_wall_seconds": [r["wall_seconds"] for r in tries]}
            print(
                f"{key:16s} {name:22s} {best['wall_seconds']:8.2f} s  {best['samples_per_s']:8.1f} samples/s  "
                f"(steady {best['steady_samples_per_s']:.1f})  FID {best['fid']:.6f}  load {best['load_before']} -> "
                f"{best['load_after']}"
            )
        one_thread = {runs[name]["fid"] for name in ("in-process, 1 thread", "ray, 1 worker", "ray, 2 workers")}
        identical = len(one_thread) == 1
        rel = abs(runs["in-process"]["fid"] - runs["ray, 1 worker"]["fid"]) / max(
            abs(runs["ray, 1 worker"]["fid"]), 1e-300
        )
        ok &= identical and rel <= 1e-6
        base, one, two = runs["in-process"], runs["ray, 1 worker"], runs["ray, 2 workers"]
        report["experiments"][key] = {
            **s["card"],
            "runs": runs,
            "fid_identical_one_thread": identical,  # in-process on 1 thread, 1 and 2 workers: bit for bit
            "fid_rel_diff_all_threads_vs_one": rel,  # the in-process baseline on every torch thread
            "ratios": {
                "ray_1_vs_in_process": one["samples_per_s"] / base["samples_per_s"],
                "ray_2_vs_in_process": two["samples_per_s"] / base["samples_per_s"],
                "ray_2_vs_1": two["samples_per_s"] / one["samples_per_s"],
                "ray_2_vs_1_steady": two["steady_samples_per_s"] / one["steady_samples_per_s"],
                "in_process_1_thread_vs_in_process": runs["in-process, 1 thread"]["samples_per_s"]
                / base["samples_per_s"],
            },
        }
        r = report["experiments"][key]["ratios"]
        print(
            f"{key}: 2 workers / 1 = {r['ray_2_vs_1']:.2f}x (steady {r['ray_2_vs_1_steady']:.2f}x), 2 workers / "
            f"in-process = {r['ray_2_vs_in_process']:.2f}x; FID bit-identical on 1 thread / 1 / 2 workers: "
            f"{identical}, "
            f"in-process on {torch.get_num_threads()} threads relative difference {rel:.1e}"
        )
    md = _markdown(report)
    print(md)
    run.write(report, md)
    return 0 if ok else 1


def _markdown(report: dict) -> str:
    c = report["config"]
    lines = [
        f"# Distributed evaluation: {c['n']:,} samples (FID-{c['n'] // 1000}k), 1 vs 2 evaluation workers",
        "",
        f"Chunks of {c['chunk_size']}; draw + domain-classifier features + FID from the merged moments, wall clock; "
        f"fastest of {c['repeats']} run(s). Ray actors: 1 CPU, 1 torch thread each; `ray.init` "
        f"{report['ray_init_seconds']} s (not included).",
        "",
    ]
    for key, e in report["experiments"].items():
        lines += [
            f"## {key} ({e['family']}, {e['weights']}; classifier {e['classifier']}; sampler {e['sampler_options']})",
            "",
            "| way | wall s | actor start-up s | samples/s | steady samples/s | x in-process | FID | load |",
            "| --- | --- | --- | --- | --- | --- | --- | --- |",
        ]
        base = e["runs"]["in-process"]["samples_per_s"]
        for name, r in e["runs"].items():
            lines.append(
                f"| {name} ({r['device']}) | {r['wall_seconds']:.2f} | {r['startup_seconds']:.2f} | "
                f"{r['samples_per_s']:.1f} | {r['steady_samples_per_s']:.1f} | {r['samples_per_s'] / base:.2f} | "
                f"{r['fid']:.6f} | {r['load_before'][0]} -> {r['load_after'][0]} |"
            )
        r = e["ratios"]
        lines += [
            "",
            f"2 workers / 1 worker: **{r['ray_2_vs_1']:.2f}x** "
            f"(steady, start-up excluded: {r['ray_2_vs_1_steady']:.2f}x); "
            f"2 workers / in-process: {r['ray_2_vs_in_process']:.2f}x. FID bit-identical in-process on 1 thread, "
            f"with 1 and with 2 workers: {'yes' if e['fid_identical_one_thread'] else 'NO'}; the in-process "
            f"baseline on {c['torch_threads']} threads differs from them by "
            f"{e['fid_rel_diff_all_threads_vs_one']:.1e} (relative).",
            "",
        ]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    raise SystemExit(main())
