"""The measured inputs of docs/scaling.md: per-sample costs of the image families at 64x64x3, and the data path.

    python benchmarks/scaling_inputs.py                                  # ~5-9 min on 2 heavily loaded cores
    python benchmarks/scaling_inputs.py --train-steps 1 --rows 300       # a quicker, noisier run
    python benchmarks/scaling_inputs.py --out benchmarks/results/scaling_inputs

For each image experiment (``vae_mnist``, ``gan_mnist``, ``diffusion_mnist``: their params.yaml ``model`` and
``train`` hyperparameters) the family is built, untrained, for a 64x64 RGB dataset (``DataSpec(kind="image",
shape=(3, 64, 64), levels=256)``, 10 classes) and measured:

- parameters: trainable ones (what DDP all-reduces every step: float32 gradients) and all (EMA copies included);
- checkpoint bytes: ``torch.save`` of the model's state dict and every optimizer's (after one step, so AdamW's
  moments exist), what ``components.training.checkpoint.save_checkpoint`` writes, less the tiny loop state;
- training FLOPs per sample: ``torch.utils.flop_counter.FlopCounterMode`` around one whole ``TrainStep`` (forward,
  backward; the GAN's D step and G step) on a batch of ``--batch``, divided by the batch. Convolutions and matmuls
  only (what FlopCounterMode counts): elementwise work, the optimizer and the EMA are left out;
- CPU seconds per training sample: the median of ``--train-steps`` timed steps after one warm-up step;
- sampling FLOPs and CPU seconds per sample: the family's default sampler (``model.sampler_defaults()``; diffusion:
  its DDIM steps), on ``--sample-n`` samples;
- the domain classifier's feature extraction (``components.evaluation.features.DomainClassifier``, 3 channels,
  10 classes) per 64x64 image: FLOPs and CPU seconds.

The data path: ``--rows`` synthetic 64x64x3 rows written with ``components.data.shards.write_split_shards``
(``shard_mib`` 16, prepare's default) in two contents: uniform noise on 256 levels (incompressible: the upper
bound, close to natural photos) and the ``synthetic`` source's shapes repeated on 3 channels (very compressible:
the lower bound). Bytes per row on disk and decoded (Ray's tensor column holds float32), and, for comparison, the
same pixels as uint8 (a plain pyarrow binary column: what a uint8 shard format would cost). Then the Ray Data
read throughput of the noise shards on a local ``ray.init(num_cpus=2)``, read the way
``components.training.ingest.ray_datasets`` reads them (V1 reader, ``num_cpus=0`` read tasks, a file shuffle),
through ``iter_torch_batches`` (batch 64, a local shuffle buffer) as one training worker iterates its shard, for
``--epochs`` passes; rows/s and MB/s per pass.

Everything runs on this machine's CPUs with the load average recorded: on a shared 2-core machine the seconds are
upper bounds; the FLOPs and the bytes do not depend on the load.
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from _report import Run, load_average
from torch.utils.flop_counter import FlopCounterMode

from components.config import load_params
from components.data.shards import write_split_shards
from components.data.spec import DataSpec
from components.evaluation.features import DomainClassifier
from components.models import build_model
from components.models.base import OptimConfig

EXPERIMENTS = ("vae_mnist", "gan_mnist", "diffusion_mnist")
SHAPE = (3, 64, 64)
CLASSES = tuple(str(i) for i in range(10))


def spec_64() -> DataSpec:
    return DataSpec(name="scaling64", kind="image", shape=SHAPE, levels=256, class_names=CLASSES)


def flops_of(fn: Any) -> tuple[int, Any]:
    with FlopCounterMode(display=False) as fc:
        out = fn()
    return int(fc.get_total_flops()), out


def fake_batch(n: int, gen: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    x = torch.randint(0, 256, (n, *SHAPE), generator=gen).float() / 255  # (n, 3, 64, 64) on 256 levels
    y = torch.randint(0, len(CLASSES), (n,), generator=gen)
    return x, y


def measure_family(key: str, *, batch: int, train_steps: int, sample_n: int) -> dict[str, Any]:
    exp = load_params().experiment(key)
    torch.manual_seed(0)
    gen = torch.Generator().manual_seed(0)
    model = build_model(exp.family, exp.model, spec_64())
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    total = sum(p.numel() for p in model.parameters())
    optim = OptimConfig(lr=exp.train.lr, betas=tuple(exp.train.betas) if exp.train.betas else (0.9, 0.999))
    step = model.make_train_step(wrap=lambda m: m, optim=optim)
    model.train()

    step(fake_batch(batch, gen))  # warm-up; creates the optimizers' state
    train_flops, _ = flops_of(lambda: step(fake_batch(batch, gen)))
    times = []
    for _ in range(train_steps):
        b = fake_batch(batch, gen)
        t0 = time.perf_counter()
        step(b)
        times.append(time.perf_counter() - t0)
    step_s = statistics.median(times)

    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "state.pt"
        torch.save(
            {"model": model.state_dict(), "optimizers": {k: o.state_dict() for k, o in step.optimizers.items()}},
            path,
        )
        ckpt_bytes = path.stat().st_size
        torch.save({"model": model.state_dict()}, path)
        model_only_bytes = path.stat().st_size

    model.eval()
    sampler = model.sampler_defaults()
    sample_flops, out = flops_of(lambda: model.sample(sample_n, generator=torch.Generator().manual_seed(1)))
    if tuple(out.shape[1:]) != SHAPE:
        raise SystemExit(f"scaling_inputs: {key} sampled {tuple(out.shape)}, expected (n, *{SHAPE})")
    t0 = time.perf_counter()
    model.sample(sample_n, generator=torch.Generator().manual_seed(2))
    sample_s = time.perf_counter() - t0
    steps = sampler.get("steps") if exp.family == "diffusion" else None
    row = {
        "experiment": key,
        "family": exp.family,
        "model": dict(exp.model),
        "train_batch_size_per_worker": exp.train.batch_size,
        "params_trainable": trainable,
        "params_all": total,
        "allreduce_bytes_fp32": 4 * trainable,
        "checkpoint_bytes": ckpt_bytes,
        "model_state_bytes": model_only_bytes,
        "train_batch_measured": batch,
        "train_flops_per_sample": train_flops / batch,
        "train_step_seconds": [round(t, 4) for t in times],
        "train_cpu_seconds_per_sample": step_s / batch,
        "sampler": sampler,
        "sample_n": sample_n,
        "sample_flops_per_sample": sample_flops / sample_n,
        "sample_cpu_seconds_per_sample": sample_s / sample_n,
    }
    if steps:
        row["sampling_steps"] = steps
        row["sample_flops_per_sample_per_step"] = sample_flops / sample_n / steps
    print(
        f"{key}: {trainable:,} trainable params, ckpt {ckpt_bytes / 2**20:.1f} MiB, train "
        f"{row['train_flops_per_sample'] / 1e9:.3f} GFLOP {row['train_cpu_seconds_per_sample']:.4f} s per sample, "
        f"sample {row['sample_flops_per_sample'] / 1e9:.3f} GFLOP {row['sample_cpu_seconds_per_sample']:.4f} s",
        flush=True,
    )
    return row


def measure_features(n: int) -> dict[str, Any]:
    torch.manual_seed(0)
    clf = DomainClassifier(channels=SHAPE[0], num_classes=len(CLASSES)).eval()
    x, _ = fake_batch(n, torch.Generator().manual_seed(3))
    with torch.no_grad():
        flops, _ = flops_of(lambda: clf.features(x))
        clf.features(x)
        t0 = time.perf_counter()
        clf.features(x)
        s = time.perf_counter() - t0
    return {
        "params": sum(p.numel() for p in clf.parameters()),
        "n": n,
        "flops_per_sample": flops / n,
        "cpu_seconds_per_sample": s / n,
    }


def shapes_rgb(rows: int) -> np.ndarray:
    from components.data.synthetic import make_chunk

    parts, k = [], 0
    while sum(len(p) for p in parts) < rows:
        x, _ = make_chunk(k, image_size=SHAPE[1], n_classes=8, seed=0)
        parts.append(x)
        k += 1
    x = np.concatenate(parts)[:rows]  # (rows, 1, 64, 64)
    return np.repeat(x, 3, axis=1)  # (rows, 3, 64, 64)


def dir_bytes(folder: Path) -> int:
    return sum(p.stat().st_size for p in folder.glob("*.parquet"))


def measure_shards(tmp: Path, rows: int, epochs: int) -> dict[str, Any]:
    import pyarrow as pa
    import pyarrow.parquet as pq

    rng = np.random.default_rng(0)
    contents = {
        "noise": rng.integers(0, 256, (rows, *SHAPE)).astype(np.float32) / 255,
        "shapes": shapes_rgb(rows),
    }
    y = rng.integers(0, len(CLASSES), rows).astype(np.int64)
    out: dict[str, Any] = {"rows": rows, "shard_mib": 16.0, "decoded_bytes_per_row": 4 * int(np.prod(SHAPE)) + 8}
    for name, x in contents.items():
        folder = tmp / name
        t0 = time.perf_counter()
        info = write_split_shards(folder, {"x": x, "y": y}, shard_mib=16.0)
        write_s = time.perf_counter() - t0
        u8 = tmp / f"{name}_uint8.parquet"
        flat = np.round(x * 255).astype(np.uint8).reshape(rows, -1)
        pq.write_table(pa.table({"x": pa.array([r.tobytes() for r in flat], pa.binary()), "y": pa.array(y)}), u8)
        out[name] = {
            "files": len(info["files"]),
            "file_bytes": dir_bytes(folder),
            "bytes_per_row_float32_shards": dir_bytes(folder) / rows,
            "bytes_per_row_uint8_parquet": u8.stat().st_size / rows,
            "write_seconds": round(write_s, 2),
        }
        print(f"shards {name}: {out[name]}", flush=True)
    try:  # a loaded machine can time Ray's start-up out: keep the rest of the run, record why
        out["read"] = measure_read(sorted(str(p) for p in (tmp / "noise").glob("*.parquet")), rows, epochs)
    except Exception as e:  # noqa: BLE001
        out["read"] = {"error": f"{type(e).__name__}: {e}"}
    return out


def measure_read(paths: list[str], rows: int, epochs: int) -> dict[str, Any]:
    import ray
    import ray.data
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

    t0 = time.perf_counter()
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    init_s = time.perf_counter() - t0
    try:
        ctx = ray.data.DataContext.get_current()
        ctx.use_datasource_v2 = False  # as components.training.ingest.ray_datasets
        here = ray.get_runtime_context().get_node_id()
        ds = ray.data.read_parquet(
            paths,
            shuffle=ray.data.FileShuffleConfig(seed=0),
            ray_remote_args={"scheduling_strategy": NodeAffinitySchedulingStrategy(here, soft=False), "num_cpus": 0},
        )
        passes = []
        for e in range(epochs):
            t0 = time.perf_counter()
            seen = 0
            for b in ds.iter_torch_batches(
                batch_size=64, drop_last=True, local_shuffle_buffer_size=1024, local_shuffle_seed=e
            ):
                seen += len(b["x"])
            s = time.perf_counter() - t0
            passes.append({"rows": seen, "seconds": round(s, 3), "rows_per_s": seen / s})
            print(f"read pass {e}: {passes[-1]}", flush=True)
    finally:
        ray.shutdown()
    steady = [p["rows_per_s"] for p in passes[1:]] or [passes[0]["rows_per_s"]]
    return {
        "ray_init_seconds": round(init_s, 2),
        "batch_size": 64,
        "local_shuffle_buffer_size": 1024,
        "passes": passes,
        "steady_rows_per_s": statistics.median(steady),
        "steady_decoded_MB_per_s": statistics.median(steady) * (4 * int(np.prod(SHAPE)) + 8) / 1e6,
    }


def fmt(v: float, digits: int = 3) -> str:
    return f"{v:.{digits}g}"


def markdown(res: dict[str, Any]) -> str:
    fam = res["families"]
    lines = [
        "# Scaling inputs: per-sample costs at 64x64x3 and the shard data path",
        "",
        "Measured by `benchmarks/scaling_inputs.py` on this machine's CPUs (untrained models with the params.yaml "
        "hyperparameters of each experiment, built for `DataSpec(shape=(3, 64, 64), levels=256)`, 10 classes). "
        "FLOPs: `FlopCounterMode` (convolutions and matmuls; 1 multiply-add = 2 FLOPs). Seconds: this loaded "
        "machine (see the load average below), upper bounds. Projections from these: `docs/scaling.md`.",
        "",
        "## Models",
        "",
        "| experiment | trainable params | all-reduce fp32 (MB) | checkpoint (MB) | train GFLOP/sample | "
        "train CPU ms/sample | sampler | sample GFLOP/sample | sample CPU ms/sample |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in fam:
        sampler = ", ".join(f"{k}={v}" for k, v in r["sampler"].items()) or "one forward pass"
        lines.append(
            f"| {r['experiment']} | {r['params_trainable']:,} | {r['allreduce_bytes_fp32'] / 1e6:.2f} | "
            f"{r['checkpoint_bytes'] / 1e6:.2f} | {fmt(r['train_flops_per_sample'] / 1e9)} | "
            f"{fmt(r['train_cpu_seconds_per_sample'] * 1e3)} | {sampler} | {fmt(r['sample_flops_per_sample'] / 1e9)} | "
            f"{fmt(r['sample_cpu_seconds_per_sample'] * 1e3)} |"
        )
    for r in fam:
        if "sample_flops_per_sample_per_step" in r:
            lines += [
                "",
                f"{r['experiment']}: {fmt(r['sample_flops_per_sample_per_step'] / 1e9)} GFLOP per sample per "
                f"denoiser evaluation ({r['sampling_steps']} DDIM steps measured; DDPM-1000 is 1000 evaluations).",
            ]
    f = res["features"]
    lines += [
        "",
        f"Domain classifier features at 64x64x3 ({f['params']:,} params): {fmt(f['flops_per_sample'] / 1e6)} MFLOP "
        f"and {fmt(f['cpu_seconds_per_sample'] * 1e3)} CPU ms per image (batch {f['n']}).",
        "",
        "## Shards (64x64x3 rows, `write_split_shards`, shard_mib 16)",
        "",
        f"Decoded: {res['shards']['decoded_bytes_per_row']:,} bytes per row (float32 x + int64 y). "
        f"{res['shards']['rows']:,} rows written per content.",
        "",
        "| content | files | bytes/row on disk (float32 tensor column) | bytes/row as uint8 Parquet |",
        "|---|---|---|---|",
    ]
    for name in ("noise", "shapes"):
        s = res["shards"][name]
        lines.append(
            f"| {name} | {s['files']} | {s['bytes_per_row_float32_shards']:,.0f} | "
            f"{s['bytes_per_row_uint8_parquet']:,.0f} |"
        )
    rd = res["shards"]["read"]
    if "error" in rd:
        return "\n".join([*lines, "", f"Ray Data read not measured: {rd['error']}", ""])
    lines += [
        "",
        f"Ray Data read of the noise shards (local `ray.init(num_cpus=2)`, {rd['ray_init_seconds']} s to start; "
        f"V1 reader, file shuffle, `iter_torch_batches` batch {rd['batch_size']}, local shuffle buffer "
        f"{rd['local_shuffle_buffer_size']}): "
        + "; ".join(f"pass {i}: {p['rows']} rows in {p['seconds']} s" for i, p in enumerate(rd["passes"]))
        + f". Steady: {rd['steady_rows_per_s']:,.0f} rows/s = {rd['steady_decoded_MB_per_s']:,.0f} MB/s decoded.",
        "",
    ]
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", default="benchmarks/results/scaling_inputs")
    ap.add_argument("--experiments", nargs="+", default=list(EXPERIMENTS))
    ap.add_argument("--batch", type=int, default=16, help="training batch measured")
    ap.add_argument("--train-steps", type=int, default=2, help="timed training steps (after one warm-up)")
    ap.add_argument("--sample-n", type=int, default=2, help="samples drawn per family")
    ap.add_argument("--rows", type=int, default=2000, help="synthetic 64x64x3 rows per shard content")
    ap.add_argument("--epochs", type=int, default=3, help="Ray Data read passes")
    ap.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's)")
    args = ap.parse_args()
    run = Run(args.out)
    if args.threads:
        torch.set_num_threads(args.threads)
    families = []
    for key in args.experiments:
        load = load_average()
        families.append(
            {
                **measure_family(key, batch=args.batch, train_steps=args.train_steps, sample_n=args.sample_n),
                "load_average_before": load,
            }
        )
    features = measure_features(64)
    print(f"features: {features}", flush=True)
    with tempfile.TemporaryDirectory(dir=os.environ.get("TMPDIR")) as tmp:
        shards = measure_shards(Path(tmp), args.rows, args.epochs)
    res = {"shape": list(SHAPE), "families": families, "features": features, "shards": shards}
    run.write(res, markdown(res))


if __name__ == "__main__":
    main()
