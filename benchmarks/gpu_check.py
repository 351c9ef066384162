"""GPU check: the pipeline's own Ray Train path on CUDA, every visible GPU one data-parallel worker (NCCL; on a
single GPU two workers share it over gloo, since NCCL refuses two ranks on one device), bf16
autocast (AMP) on, in well under five minutes; a PASS/FAIL line per check and a summary.

    python benchmarks/gpu_check.py                  # VAE on mnist5k + GPT on names, 3 epochs each, all GPUs
    python benchmarks/gpu_check.py --families vae --epochs 2
    bash benchmarks/gpu_check.sh                    # the same under `timeout 300` (a hung NCCL fails, not hangs)

Checks:
  cuda          torch sees N >= 1 GPUs (CUDA_VISIBLE_DEVICES limits them); bf16 support is reported
  ray_gpus      the local Ray instance counts N GPUs, and ``train.use_gpu: auto`` resolves to True
  amp_<family>  one training step on cuda:0 through the family's own train step with ``OptimConfig(amp=True)``
                runs its forward in bfloat16 (a forward hook sees bf16 activations) and gives finite gradients
  train_<family> ``components.training.driver.train`` with N workers, ``use_gpu`` and ``amp``: every epoch runs,
                the losses are finite and the last epoch's loss is below the first's; samples/s is reported
  sample_<family> the trained model (returned on CPU) moved to cuda:0 draws finite samples
The data are the prepare stage's splits in ``data/prepared``, or, if absent, prepared into a temporary folder as
the prepare stage does; each family's model params are parsed by the family's own config (``parse_family_config``).
Results go to ``<out>.json`` and ``<out>.md`` (with the platform block of benchmarks/_report.py). Exit status: 0
all passed, 1 a check failed, 2 no CUDA here (a CPU-only machine: nothing to check, said in one line, nothing
written).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import tempfile
import time
import traceback
from pathlib import Path
from typing import Any

import torch
from _report import Run

FAMILIES: dict[str, dict[str, Any]] = {
    # family: dataset, model params, per-worker batch size
    "vae": {"dataset": "mnist5k", "model": {"latent_dim": 16, "width": 32}, "batch_size": 64},
    "gpt": {"dataset": "names", "model": {"n_layer": 4, "n_head": 4, "n_embd": 64, "dropout": 0.1}, "batch_size": 64},
    "diffusion": {"dataset": "digits", "model": {}, "batch_size": 64},
}


class Checks:
    def __init__(self) -> None:
        self.results: list[dict[str, Any]] = []

    def run(self, name: str, fn, *args) -> Any:
        t0 = time.perf_counter()
        try:
            detail = fn(*args)
            ok = True
        except Exception as e:  # a failed check is reported, the others still run
            detail = f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}"
            traceback.print_exc(file=sys.stderr)
            ok = False
        seconds = time.perf_counter() - t0
        self.results.append({"check": name, "ok": ok, "seconds": round(seconds, 1), "detail": detail})
        print(f"{'PASS' if ok else 'FAIL'}  {name:<16} {seconds:6.1f}s  {detail}", flush=True)
        return detail if ok else None


def check_cuda() -> dict[str, Any]:
    n = torch.cuda.device_count()
    assert n >= 1, "torch.cuda.device_count() == 0"
    return {
        "gpus": n,
        "names": [torch.cuda.get_device_name(i) for i in range(n)],
        "bf16": torch.cuda.is_bf16_supported(),
        "cuda": torch.version.cuda,
    }


def check_ray(n: int) -> dict[str, Any]:
    import ray

    from components.training.driver import init_ray, resolve_use_gpu

    t0 = time.perf_counter()
    init_ray()
    gpus = ray.cluster_resources().get("GPU", 0)
    assert gpus == n, f"Ray counts {gpus} GPUs, torch {n}"
    assert resolve_use_gpu("auto") is True, "train.use_gpu: auto resolved to False"
    return {"ray_gpus": gpus, "ray_init_seconds": round(time.perf_counter() - t0, 1)}


def check_amp(family: str, root: Path) -> dict[str, Any]:
    """One step of the family's own train step on cuda:0 with AMP: the forward runs in bf16."""
    from components.data import load_spec, load_split
    from components.models import build_model, parse_family_config
    from components.models.base import OptimConfig
    from components.training.loop import data_tensors

    spec_cfg = FAMILIES[family]
    spec = load_spec(root, spec_cfg["dataset"])
    x, y = data_tensors(spec, *load_split(root, spec_cfg["dataset"], "train"))
    device = torch.device("cuda:0")
    model = build_model(family, parse_family_config(family, spec_cfg["model"]), spec).to(device)
    step = model.make_train_step(wrap=lambda m: m, optim=OptimConfig(lr=1e-3, amp=True))
    dtypes: set[torch.dtype] = set()

    def hook(_m, _inp, out):
        if isinstance(out, torch.Tensor) and out.is_floating_point():
            dtypes.add(out.dtype)

    layers = [m for m in model.modules() if isinstance(m, torch.nn.Linear | torch.nn.Conv2d)]
    handles = [m.register_forward_hook(hook) for m in layers]
    try:
        logs = step((x[:32].to(device), y[:32].to(device)))
    finally:
        for h in handles:
            h.remove()
    assert torch.bfloat16 in dtypes, f"no bf16 activation in the forward (saw {sorted(map(str, dtypes))})"
    grad = float(logs["grad_norm"])
    assert math.isfinite(grad), f"grad_norm = {grad}"
    return {"activation_dtypes": sorted(str(d) for d in dtypes), "grad_norm": round(grad, 4)}


def check_train(family: str, root: Path, n: int, epochs: int, storage: Path, gpus: int) -> tuple[Any, dict[str, Any]]:
    from components.config import TrainConfig
    from components.models import parse_family_config
    from components.training.driver import train
    from components.training.job import TrainJob

    spec_cfg = FAMILIES[family]
    cfg = TrainConfig(
        epochs=epochs,
        batch_size=spec_cfg["batch_size"],
        lr=1e-3,
        num_workers=n,
        use_gpu=True,
        gpus_per_worker=min(1.0, gpus / n),
        amp=True,
    )
    ends: dict[int, float] = {}
    steps: list[int] = []

    def on_event(ev: dict[str, Any]) -> None:
        if ev["event"] == "epoch":
            ends[ev["epoch"]] = time.perf_counter()
        elif ev["event"] == "steps":
            steps.append(ev["steps"])

    job = TrainJob(
        key=f"gpu_check_{family}",
        family=family,
        model=parse_family_config(family, spec_cfg["model"]),
        dataset=spec_cfg["dataset"],
        data_root=str(root),
        train=cfg,
        run_name=f"gpu_check_{family}-{int(time.time())}",
        storage_path=str(storage),
    )
    t0 = time.perf_counter()
    model, state = train(job, on_event=on_event)
    wall = time.perf_counter() - t0
    losses = [h["loss"] for h in state.history]
    assert state.epoch == epochs, f"{state.epoch} of {epochs} epochs"
    assert all(math.isfinite(v) for v in losses), f"losses {losses}"
    assert losses[-1] < losses[0], f"loss did not fall: {losses}"
    timed = (epochs - 1) * steps[0] * cfg.batch_size * n
    samples_per_s = timed / (ends[epochs] - ends[1]) if epochs > 1 else float("nan")
    return model, {
        "workers": n,
        "gpus_per_worker": cfg.gpus_per_worker,
        "backend": "nccl" if cfg.gpus_per_worker >= 1 else "gloo",
        "losses": [round(v, 4) for v in losses],
        "samples_per_s": round(samples_per_s, 1),
        "fit_wall_seconds": round(wall, 1),
    }


def check_sample(model: Any) -> dict[str, Any]:
    model = model.to("cuda:0").eval()
    with torch.no_grad():
        out = model.sample(8, generator=torch.Generator(device="cuda:0").manual_seed(0))
    if isinstance(out, list):  # text
        assert len(out) == 8, f"{len(out)} samples"
        return {"samples": out[:3]}
    t = torch.as_tensor(out).float()
    assert torch.isfinite(t).all(), "non-finite samples"
    return {"shape": list(t.shape)}


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--families", nargs="+", default=["vae", "gpt"], choices=sorted(FAMILIES))
    p.add_argument("--epochs", type=int, default=3)
    p.add_argument(
        "--workers",
        type=int,
        default=None,
        help="data-parallel workers (default: one per GPU, at least 2: on one GPU two workers share it over gloo)",
    )
    p.add_argument("--out", default="reports/benchmarks/gpu_check", help="writes <out>.json and <out>.md")
    args = p.parse_args()
    run = Run(args.out)
    if not torch.cuda.is_available():
        print(
            f"gpu_check: no CUDA device here (torch {torch.__version__}, cuda {torch.version.cuda}); "
            "nothing to check: run it on a GPU machine with a CUDA build of torch (make setup TORCH=...)."
        )
        return 2
    t_start = time.perf_counter()
    checks = Checks()
    info = checks.run("cuda", check_cuda)
    if info is None:
        return _finish(checks, run, t_start)
    n_gpus = info["gpus"]
    n = args.workers or max(2, n_gpus)
    checks.run("ray_gpus", check_ray, n_gpus)
    from _pipeline import prepared_root

    work = Path(tempfile.mkdtemp(prefix="gpu_check-"))  # Ray Train's storage
    root = prepared_root(sorted({FAMILIES[f]["dataset"] for f in args.families}))
    for family in args.families:
        checks.run(f"amp_{family}", check_amp, family, root)
        trained = checks.run(f"train_{family}", lambda f=family: _train_detail(f, root, n, args.epochs, work, n_gpus))
        if trained is not None:
            checks.run(f"sample_{family}", check_sample, _MODELS.pop(family))
    return _finish(checks, run, t_start, info)


_MODELS: dict[str, Any] = {}


def _train_detail(family: str, root: Path, n: int, epochs: int, work: Path, gpus: int) -> dict[str, Any]:
    model, detail = check_train(family, root, n, epochs, work / "ray", gpus)
    _MODELS[family] = model
    return detail


def _finish(checks: Checks, run: Run, t_start: float, info: dict | None = None) -> int:
    total = time.perf_counter() - t_start
    failed = [r["check"] for r in checks.results if not r["ok"]]
    report = {"gpus": info, "seconds": round(total, 1), "checks": checks.results, "passed": not failed}
    rows = "\n".join(
        f"| {r['check']} | {'PASS' if r['ok'] else 'FAIL'} | {r['seconds']} | {json.dumps(r['detail'], default=str)} |"
        for r in checks.results
    )
    md = (
        f"# GPU check\n\n{json.dumps(info, default=str)}; torch {torch.__version__}; {total:.0f} s in all.\n\n"
        f"| check | result | seconds | detail |\n|---|---|---|---|\n{rows}\n\n"
        f"{'All checks passed.' if not failed else 'FAILED: ' + ', '.join(failed)}\n"
    )
    run.write(report, md, quiet=True)
    print(
        f"gpu_check: {len(checks.results) - len(failed)}/{len(checks.results)} checks passed in {total:.0f}s"
        + (f"; FAILED: {', '.join(failed)}" if failed else "")
        + f"  ({run.md_path})"
    )
    return 1 if failed else 0


if __name__ == "__main__":
    os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
    raise SystemExit(main())
