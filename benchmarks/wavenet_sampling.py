"""WaveNet sampling: the naive sampler (the receptive field recomputed every sample) vs the cached one (Fast
WaveNet queues, arXiv 1611.09482), on one model, in one process.

    python benchmarks/wavenet_sampling.py                                  # default WaveNetConfig, 20 Adam steps
    python benchmarks/wavenet_sampling.py --train-steps 0 --length 1000    # random weights, shorter clips
    python benchmarks/wavenet_sampling.py --model '{"dilation_cycles": 3}' --n 16 --threads 2

The model is the WaveNet family's ``build`` on the notes dataset's spec (``components.data.audio.load_notes``,
8 kHz); ``--train-steps`` Adam steps on random crops of the notes (0: the random initialisation) make the
predicted distributions peaked, as a trained model's are (sampling speed does not depend on the weights; the
equality check is more telling when the draws are not near-uniform). Both samplers draw ``--n`` clips of
``--length`` samples from the same seed; reported: wall-clock and process-CPU seconds, audio samples/s (n ×
length / seconds) and the real-time factor (samples/s ÷ sample rate) of each, the speed-up of cached over naive
(the baseline), whether the two outputs are identical, and the largest |logit| difference between the cached
step and the full forward on a teacher-forced clip (float round-off; identical draws need it tiny). Every
sampler run records ``os.getloadavg()`` beside it: on a shared CPU, the CPU-time speed-up is the trustworthy one.
Exits 1 if the outputs differ. Writes ``--out``.json and ``--out``.md (platform block of benchmarks/_report.py).
"""

from __future__ import annotations

import argparse
import json
import os
import time
from typing import Any

import torch
from _report import Run

from components.data.audio import PITCH_CLASSES, load_notes
from components.data.spec import DataSpec
from components.models.base import OptimConfig
from components.models.configs import WaveNetConfig
from components.models.wavenet import WaveNet, build, mu_law_encode


def train_briefly(model: WaveNet, steps: int, *, crop: int, batch: int, seed: int) -> dict[str, Any]:
    """``steps`` Adam steps (lr 3e-3) on random ``crop``-sample windows of the notes dataset (n_per_class 12)."""
    if steps == 0:
        return {"steps": 0, "weights": "random initialisation"}
    data = load_notes(n_per_class=12, seed=seed)
    x, y = torch.from_numpy(data.x), torch.from_numpy(data.y)
    g = torch.Generator().manual_seed(seed)
    step = model.make_train_step(wrap=lambda m: m, optim=OptimConfig(lr=3e-3, grad_clip=1.0))
    losses, t0 = [], time.perf_counter()
    model.train()
    for _ in range(steps):
        rows = torch.randint(len(x), (batch,), generator=g)
        start = int(torch.randint(x.shape[-1] - crop + 1, (1,), generator=g))
        losses.append(float(step((x[rows, :, start : start + crop], y[rows]))["bits_per_sample"]))
    model.eval()
    return {
        "steps": steps,
        "weights": f"{steps} Adam steps on {batch} random {crop}-sample crops of the notes dataset",
        "bits_per_sample_first": round(losses[0], 3),
        "bits_per_sample_last": round(losses[-1], 3),
        "train_seconds": round(time.perf_counter() - t0, 1),
    }


def time_sampler(model: WaveNet, sampler: str, n: int, seed: int) -> tuple[torch.Tensor, dict[str, Any]]:
    gen = torch.Generator().manual_seed(seed)
    load = [round(v, 2) for v in os.getloadavg()]
    wall, cpu = time.perf_counter(), time.process_time()
    out = model.sample(n, generator=gen, sampler=sampler)
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    audio = n * model.length
    return out, {
        "seconds": round(wall, 3),
        "cpu_seconds": round(cpu, 3),
        "samples_per_s": round(audio / wall, 1),
        "samples_per_cpu_s": round(audio / cpu, 1),
        "realtime_factor": round(audio / wall / model.spec.extras["sample_rate"], 4),
        "load_average_at_start": load,
    }


@torch.no_grad()
def max_logit_gap(model: WaveNet, clip: torch.Tensor, label: torch.Tensor | None) -> float:
    """max |cached step logits − full forward logits| over a teacher-forced clip (1, 1, T)."""
    idx = mu_law_encode(clip[:, 0], model.mu)  # (1, T)
    y = label if model.num_classes else None
    full = model.net(idx, y)  # (1, Q, T)
    cache = model.net.start_cache(1, y)
    gap = 0.0
    for t in range(idx.shape[1]):
        step = model.net.step(idx[:, t - 1] if t else None, t, cache)
        gap = max(gap, float((step - full[..., t]).abs().max()))
    return gap


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default="{}", help="WaveNetConfig overrides as JSON (default: the config's defaults)")
    p.add_argument("--n", type=int, default=8, help="clips per sampling call")
    p.add_argument("--length", type=int, default=2000, help="samples per clip (8 kHz: 2000 = 0.25 s)")
    p.add_argument("--train-steps", type=int, default=20, help="Adam steps before sampling; 0: random weights")
    p.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    p.add_argument("--repeats", type=int, default=1, help="runs of each sampler, alternating; fastest kept")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", default="reports/benchmarks/wavenet_sampling", help="writes <out>.json and <out>.md")
    args = p.parse_args()
    run = Run(args.out)
    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)

    config = WaveNetConfig(**json.loads(args.model))
    spec = DataSpec(
        name="notes",
        kind="audio",
        shape=(1, args.length),
        class_names=PITCH_CLASSES,
        extras={"sample_rate": 8000},
    )
    model = build(config, spec)
    training = train_briefly(model, args.train_steps, crop=1024, batch=8, seed=args.seed)
    runs: dict[str, list[dict[str, Any]]] = {"naive": [], "cached": []}
    outputs: dict[str, torch.Tensor] = {}
    for _ in range(args.repeats):
        for sampler in ("naive", "cached"):  # the baseline first, then the candidate, in this one process
            outputs[sampler], r = time_sampler(model, sampler, args.n, args.seed)
            runs[sampler].append(r)
            print(f"{sampler}: {r}")
    results = {name: min(rs, key=lambda r: r["seconds"]) for name, rs in runs.items()}
    for name, rs in runs.items():
        results[name]["all_seconds"] = [r["seconds"] for r in rs]
    identical = torch.equal(outputs["naive"], outputs["cached"])
    clip = torch.from_numpy(load_notes(n_per_class=1, seed=args.seed + 1).x[:1, :, : args.length])
    report = {
        "config": {
            "model": config.model_dump(),
            "receptive_field_samples": model.net.receptive_field,
            "layers": len(model.net.layers),
            "parameters": sum(p.numel() for p in model.parameters()),
            "n": args.n,
            "length": args.length,
            "seed": args.seed,
            "threads": torch.get_num_threads(),
            "repeats": args.repeats,
            "device": "cpu",
        },
        "training": training,
        "results": results,
        "speedup_wall": round(results["naive"]["seconds"] / results["cached"]["seconds"], 2),
        "speedup_cpu": round(results["naive"]["cpu_seconds"] / results["cached"]["cpu_seconds"], 2),
        "identical": identical,
        "differing_samples": int((outputs["naive"] != outputs["cached"]).sum()),
        "max_abs_logit_gap_teacher_forced": max_logit_gap(model, clip, torch.zeros(1, dtype=torch.long)),
    }
    md = markdown(report)
    print(md)
    run.write(report, md)
    return 0 if identical else 1


def markdown(r: dict[str, Any]) -> str:
    c, res = r["config"], r["results"]
    rows = [
        "| sampler | seconds | CPU s | samples/s | × naive (wall) | × naive (CPU) | real-time | load at start |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for name in ("naive", "cached"):
        x = res[name]
        rows.append(
            f"| {name} | {x['seconds']:.2f} | {x['cpu_seconds']:.2f} | {x['samples_per_s']:,.0f} | "
            f"{res['naive']['seconds'] / x['seconds']:.2f}× | {res['naive']['cpu_seconds'] / x['cpu_seconds']:.2f}× | "
            f"{x['realtime_factor']:.3f} | {x['load_average_at_start']} |"
        )
    t = r["training"]
    trained = t["weights"] + (
        f" (bits/sample {t['bits_per_sample_first']} → {t['bits_per_sample_last']})" if t["steps"] else ""
    )
    return "\n".join(
        [
            "# WaveNet sampling: naive vs cached (Fast WaveNet)",
            "",
            f"- model: {c['layers']} layers, receptive field {c['receptive_field_samples']} samples, "
            f"{c['parameters']:,} parameters; `{json.dumps(c['model'])}`",
            f"- weights: {trained}",
            f"- {c['n']} clips × {c['length']} samples per sampler, seed {c['seed']}, {c['threads']} torch thread(s)",
            "",
            *rows,
            "",
            f"- speed-up of cached over naive: {r['speedup_wall']}× wall-clock, {r['speedup_cpu']}× CPU time",
            f"- outputs identical: {r['identical']} ({r['differing_samples']} differing samples); max |logit| gap "
            f"cached step vs full forward, teacher-forced: {r['max_abs_logit_gap_teacher_forced']:.2e}",
            "",
        ]
    )


if __name__ == "__main__":
    raise SystemExit(main())
