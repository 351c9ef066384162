"""What pre-training buys: fine-tuned from a pre-trained model vs trained from scratch, same data, same steps.

    nice -n 10 python benchmarks/transfer.py                  # text and images: 24 min on 2 busy cores (load 4-16)
    python benchmarks/transfer.py --parts text --seeds 0 1 2 # text only

Text: a GPT pre-trained on the US census surnames (88,799, ``surnames`` source), fine-tuned on first names
(``names``) with 5 %, 20 % and 100 % of their training split, against the same GPT trained from scratch on the
same subset for the same number of steps (same seed: same subset, same initial weights for every tensor that
did not load, same batches). Measured: test NLL (nats/char, the evaluate stage's number: the whole test split of
names) of each, early-stopped on the validation split (validation and test NLL every ``--eval-every`` steps;
the step with the lowest validation NLL is each model's "final" one: a pre-trained model over-fits a 181-name
subset within the steps the scratch model needs), and the steps the fine-tuned model takes to reach the
scratch model's final test NLL. Seeds: ``--seeds`` (the subset, the initial weights, the batches);
the pre-trained model is trained once (seed 0) and shared. The interval is the 95 % Student-t interval of the
paired difference scratch - fine-tuned over the seeds.

Images: a model pre-trained on mnist5k digits 0-4 (the training split), fine-tuned on digits 5-9 with 10 and 50
images per class, against scratch with the same steps, for the diffusion and the GAN families: FID in the
domain classifier's features (docs/protocols.md §3; the features stage's classifier, or one trained here with
its recipe) of ``--n-images`` samples against the test images of digits 5-9 with a 95 % bootstrap interval
(``frechet.fid_ci``), and class coverage: the share of the classes 5-9 that receive at least
``--cover-share`` of the samples (as the domain classifier labels them). One seed.

The loading rules are the train stage's (``components.training.transfer``: every shape-compatible tensor loads;
GPT's positional table does not, since surnames are longer than first names). Goal (issue 19): fine-tuned beats
scratch at every data fraction with the interval clear of 0, and reaches scratch's final quality in at most a
third of the steps.

Writes ``--out``.json, ``--out``.md (with the platform block of benchmarks/_report.py) and ``--out``.png.
"""

from __future__ import annotations

import argparse
import math
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from _pipeline import domain_classifier, prepared_root
from _report import Run, load_average
from safetensors.torch import save_model

from components.config import TrainConfig
from components.data import load_spec, load_split, prepare_dataset
from components.data.spec import DataSpec
from components.data.text import load_surnames
from components.evaluation.frechet import fid_ci
from components.evaluation.harness import fid_kid, generate
from components.models import build_model
from components.models.base import GenerativeModel
from components.training.loop import data_tensors, optim_config
from components.training.transfer import TransferPlan, apply_transfer, plan_for, read_weights, scale_loaded_lr

GPT = {"n_layer": 2, "n_head": 4, "n_embd": 64, "dropout": 0.1}
IMAGE_MODELS: dict[str, dict[str, Any]] = {
    "diffusion": {
        "model": {
            "dim": 16,
            "dim_mults": [1, 2],
            "patch": 2,
            "objective": "v",
            "min_snr_gamma": 5.0,
            "ema_decay": 0.99,
            "eta": 1.0,
        },  # fmt: skip
        "lr": 2e-3,
        "betas": (0.9, 0.999),
    },
    "gan": {"model": {"latent_dim": 64, "width": 32}, "lr": 2e-4, "betas": (0.5, 0.999)},
}
SOURCE_CLASSES, TARGET_CLASSES = (0, 1, 2, 3, 4), (5, 6, 7, 8, 9)


# ------------------------------------------------------------------------------------------------ pure helpers


def steps_to_reach(curve: list[tuple[int, float]], target: float) -> int | None:
    """The first evaluated step whose value is at most ``target`` (None: never)."""
    return next((step for step, value in curve if value <= target), None)


def early_stopped(curve: list[tuple[int, float, float]]) -> tuple[int, float, float]:
    """The ``(step, val, test)`` point with the lowest validation value (the earliest of ties): model selection
    on the validation split, the test value reported."""
    return min(curve, key=lambda c: (c[1], c[0]))


def paired_interval(diffs: list[float], level: float = 0.95) -> dict[str, float]:
    """Mean, s.e. and the Student-t interval of paired differences (s.e. 0 and a point interval for one)."""
    from scipy.stats import t

    d = np.asarray(diffs, dtype=float)
    mean = float(d.mean())
    if len(d) < 2:
        return {"mean": mean, "se": 0.0, "lo": mean, "hi": mean, "n": len(d)}
    se = float(d.std(ddof=1) / math.sqrt(len(d)))
    half = float(t.ppf(0.5 + level / 2, len(d) - 1)) * se
    return {"mean": mean, "se": se, "lo": mean - half, "hi": mean + half, "n": len(d)}


def class_coverage(labels: np.ndarray, classes: tuple[int, ...], *, min_share: float) -> dict[str, Any]:
    """Which of ``classes`` get at least ``min_share`` of the samples, and the share that lands on any of them."""
    shares = {int(c): float((labels == c).mean()) for c in classes}
    covered = [c for c, s in shares.items() if s >= min_share]
    return {"coverage": len(covered) / len(classes), "covered": covered, "on_target": sum(shares.values()),
            "shares": shares}  # fmt: skip


# ------------------------------------------------------------------------------------------------ training


def weights_of(model: torch.nn.Module) -> bytes:
    """The model's safetensors bytes, as the train stage saves them (``save_model``: tied tensors once)."""
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "model.safetensors"
        save_model(model, str(path))
        return path.read_bytes()


def initialised(family: str, model: dict, spec: DataSpec, *, seed: int, parent: bytes | None) -> tuple[Any, Any]:
    """A fresh model (seeded), with the parent's shape-compatible tensors loaded when ``parent`` is given."""
    torch.manual_seed(seed)
    net = build_model(family, model, spec)
    plan = None
    if parent is not None:
        source = read_weights(parent)
        plan = plan_for(net, source)
        apply_transfer(net, source, plan)
    return net, plan


def train_steps(
    model: GenerativeModel,
    data: tuple[torch.Tensor, ...],
    *,
    steps: int,
    batch: int,
    lr: float,
    betas: tuple[float, float] = (0.9, 0.999),
    seed: int,
    plan: TransferPlan | None = None,
    lr_mult: float = 1.0,
    evaluate: Any = None,
    every: int = 0,
) -> list[tuple[int, float]]:
    """``steps`` optimizer steps on random batches (drawn with replacement, seeded); ``evaluate(model)`` every
    ``every`` steps and at the end gives the curve."""
    cfg = TrainConfig(lr=lr, betas=betas, num_workers=0, seed=seed)
    step = model.make_train_step(wrap=lambda m: m, optim=optim_config(cfg, torch.device("cpu")))
    if plan is not None:
        scale_loaded_lr(step, model, plan, lr_mult)
    gen = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    curve = []
    for i in range(1, steps + 1):
        model.train()
        idx = torch.randint(len(data[0]), (min(batch, len(data[0])),), generator=gen)
        step(tuple(t[idx] for t in data))
        if evaluate is not None and (i % every == 0 or i == steps):
            value = evaluate(model)
            curve.append((i, *value) if isinstance(value, tuple) else (i, float(value)))
    model.eval()
    return curve


# ------------------------------------------------------------------------------------------------ text


@torch.no_grad()
def test_nll(model: GenerativeModel, ids: torch.Tensor) -> float:
    """Mean NLL in nats per predicted character (EOS included, PAD not) of all of ``ids`` at once."""
    model.eval()
    return float(model.likelihood((ids,))["nll_nats_per_char"])


def text_part(args: argparse.Namespace) -> dict[str, Any]:
    root = prepared_root(["names"], args.data_root)
    surnames_root = Path(tempfile.mkdtemp(prefix="transfer-surnames-"))
    prepare_dataset("surnames", load_surnames(), surnames_root, val=0.1, test=0.2, seed=0)
    s_spec, n_spec = load_spec(surnames_root, "surnames"), load_spec(root, "names")
    s_train = data_tensors(s_spec, *load_split(surnames_root, "surnames", "train"))
    s_test = data_tensors(s_spec, *load_split(surnames_root, "surnames", "test"))[0]
    n_train = data_tensors(n_spec, *load_split(root, "names", "train"))
    n_val = data_tensors(n_spec, *load_split(root, "names", "val"))[0]
    n_test = data_tensors(n_spec, *load_split(root, "names", "test"))[0]

    t0 = time.perf_counter()
    parent, _ = initialised("gpt", GPT, s_spec, seed=0, parent=None)
    train_steps(parent, s_train, steps=args.pretrain_steps, batch=args.pretrain_batch, lr=args.text_lr, seed=0)
    pretrain = {
        "steps": args.pretrain_steps,
        "batch": args.pretrain_batch,
        "n_train": len(s_train[0]),
        "test_nll_surnames": test_nll(parent, s_test),
        "seconds": round(time.perf_counter() - t0, 1),
    }
    print(f"pre-trained on surnames: {pretrain}", flush=True)
    data = weights_of(parent)

    rows = []
    for fraction in args.fractions:
        for seed in args.seeds:
            n = max(1, round(fraction * len(n_train[0])))
            idx = torch.from_numpy(np.sort(np.random.default_rng(seed).choice(len(n_train[0]), n, replace=False)))
            subset = tuple(t[idx] for t in n_train)
            row: dict[str, Any] = {"fraction": fraction, "seed": seed, "n_train": n}
            for arm in ("scratch", "fine_tuned"):
                t1 = time.perf_counter()
                net, plan = initialised("gpt", GPT, n_spec, seed=seed, parent=data if arm == "fine_tuned" else None)
                curve = train_steps(net, subset, steps=args.text_steps, batch=args.text_batch, lr=args.text_lr,
                                    seed=seed, plan=plan, lr_mult=args.lr_mult,
                                    evaluate=lambda m: (test_nll(m, n_val), test_nll(m, n_test)),
                                    every=args.eval_every)  # fmt: skip
                chosen = early_stopped(curve)
                row[arm] = {"final_nll": chosen[2], "chosen_step": chosen[0], "last_step_nll": curve[-1][2],
                            "curve": [(i, t) for i, _, t in curve], "val_curve": [(i, v) for i, v, _ in curve],
                            "seconds": round(time.perf_counter() - t1, 1)}  # fmt: skip
                if plan is not None:
                    row[arm]["not_loaded"] = sorted(plan.skipped)
            reach = steps_to_reach(row["fine_tuned"]["curve"], row["scratch"]["final_nll"])
            row["steps_to_scratch_final"] = reach
            row["steps_fraction"] = reach / args.text_steps if reach is not None else None
            rows.append(row)
            print(f"names {fraction:>5.0%} seed {seed}: scratch {row['scratch']['final_nll']:.4f}  fine-tuned "
                  f"{row['fine_tuned']['final_nll']:.4f}  reach at step {reach}/{args.text_steps}",
                  flush=True)  # fmt: skip
    summary = []
    for fraction in args.fractions:
        sel = [r for r in rows if r["fraction"] == fraction]
        diff = paired_interval([r["scratch"]["final_nll"] - r["fine_tuned"]["final_nll"] for r in sel])
        fracs = [r["steps_fraction"] for r in sel]
        summary.append({
            "fraction": fraction,
            "n_train": sel[0]["n_train"],
            "scratch_nll": float(np.mean([r["scratch"]["final_nll"] for r in sel])),
            "fine_tuned_nll": float(np.mean([r["fine_tuned"]["final_nll"] for r in sel])),
            "gain": diff,
            "steps_fraction_max": max(fracs) if all(f is not None for f in fracs) else None,
            "beats_scratch": diff["lo"] > 0,
            "within_third_of_steps": all(f is not None and f <= 1 / 3 for f in fracs),
        })  # fmt: skip
    return {"pretrain": pretrain, "model": GPT, "steps": args.text_steps, "batch": args.text_batch,
            "lr": args.text_lr, "lr_mult": args.lr_mult, "eval_every": args.eval_every, "seeds": args.seeds,
            "n_test": len(n_test), "rows": rows, "summary": summary}  # fmt: skip


# ------------------------------------------------------------------------------------------------ images


def image_part(args: argparse.Namespace) -> dict[str, Any]:
    root = prepared_root(["mnist5k"], args.data_root)
    spec = load_spec(root, "mnist5k")
    x, y = data_tensors(spec, *load_split(root, "mnist5k", "train"))
    tx, ty = data_tensors(spec, *load_split(root, "mnist5k", "test"))
    source = tuple(t[torch.isin(y, torch.tensor(SOURCE_CLASSES))] for t in (x, y))
    real = tx[torch.isin(ty, torch.tensor(TARGET_CLASSES))]
    t0 = time.perf_counter()
    clf = domain_classifier("mnist5k", root, args.features, epochs=args.clf_epochs)
    extractor = clf.model.eval()
    f_real = clf.features(real)
    classifier = {k: v for k, v in clf.meta.items() if k in ("test_accuracy", "source", "epochs")}
    classifier["seconds"] = round(time.perf_counter() - t0, 1)
    print(f"domain classifier: {classifier}", flush=True)

    def quality(model: GenerativeModel) -> dict[str, Any]:
        fake = generate(model, args.n_images, batch_size=250, seed=0, options={})
        fid = fid_kid(extractor, real, fake, seed=0)["fid"]
        ci = fid_ci(f_real, clf.features(fake), n_boot=args.n_boot, seed=0)
        cover = class_coverage(clf.predict(fake).numpy(), TARGET_CLASSES, min_share=args.cover_share)
        return {"fid": fid, "fid_ci95": [ci.lo, ci.hi], **cover}

    out: dict[str, Any] = {"classifier": classifier, "n_real": len(real), "families": {}}
    for family in args.families:
        cfg = IMAGE_MODELS[family]
        t1 = time.perf_counter()
        parent, _ = initialised(family, cfg["model"], spec, seed=0, parent=None)
        train_steps(parent, source, steps=args.image_pretrain_steps, batch=64, lr=cfg["lr"], betas=cfg["betas"],
                    seed=0)  # fmt: skip
        data = weights_of(parent)
        seconds = round(time.perf_counter() - t1, 1)
        pre = {"steps": args.image_pretrain_steps, "n_train": len(source[0]), "seconds": seconds}
        fam: dict[str, Any] = {"model": cfg["model"], "pretrain": pre, "rows": []}
        for k in args.per_class:
            rng = np.random.default_rng(0)
            idx = np.concatenate([rng.choice(np.flatnonzero(y.numpy() == c), k, replace=False) for c in TARGET_CLASSES])
            subset = tuple(t[torch.from_numpy(np.sort(idx))] for t in (x, y))
            row: dict[str, Any] = {"per_class": k, "n_train": len(idx)}
            for arm in ("scratch", "fine_tuned"):
                t2 = time.perf_counter()
                init = data if arm == "fine_tuned" else None
                net, plan = initialised(family, cfg["model"], spec, seed=0, parent=init)
                train_steps(net, subset, steps=args.image_steps, batch=64, lr=cfg["lr"], betas=cfg["betas"], seed=0,
                            plan=plan)  # fmt: skip
                row[arm] = {**quality(net), "seconds": round(time.perf_counter() - t2, 1)}
            row["beats_scratch"] = row["fine_tuned"]["fid_ci95"][1] < row["scratch"]["fid_ci95"][0]
            fam["rows"].append(row)
            print(f"{family} {k}/class: FID scratch {row['scratch']['fid']:.2f} vs fine-tuned "
                  f"{row['fine_tuned']['fid']:.2f}; coverage {row['scratch']['coverage']:.1f} vs "
                  f"{row['fine_tuned']['coverage']:.1f}", flush=True)  # fmt: skip
        out["families"][family] = fam
    out.update({"steps": args.image_steps, "n_images": args.n_images, "cover_share": args.cover_share,
                "source_classes": SOURCE_CLASSES, "target_classes": TARGET_CLASSES})  # fmt: skip
    return out


# ------------------------------------------------------------------------------------------------ report


def plot(result: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    text, images = result.get("text"), result.get("images")
    panels = (1 if text else 0) + (1 if images else 0)
    fig, axes = plt.subplots(1, max(panels, 1), figsize=(6 * max(panels, 1), 4.2), squeeze=False)
    i = 0
    if text:
        ax = axes[0][i]
        i += 1
        for j, s in enumerate(text["summary"]):
            sel = [r for r in text["rows"] if r["fraction"] == s["fraction"]]
            for arm, style in (("scratch", "--"), ("fine_tuned", "-")):
                steps = [c[0] for c in sel[0][arm]["curve"]]
                mean = np.mean([[c[1] for c in r[arm]["curve"]] for r in sel], axis=0)
                ax.plot(steps, mean, style, color=f"C{j}", label=f"{s['fraction']:.0%} {arm.replace('_', '-')}")
        ax.set(xlabel="optimizer step", ylabel="test NLL (nats/char)", title="GPT on names: surnames pre-training")
        lo = min(s["fine_tuned_nll"] for s in text["summary"])
        ax.set_ylim(lo - 0.1, lo + 1.2)
        ax.legend(fontsize=7, ncol=2)
    if images:
        ax = axes[0][i]
        labels, scratch, tuned = [], [], []
        for family, fam in images["families"].items():
            for row in fam["rows"]:
                labels.append(f"{family}\n{row['per_class']}/class")
                scratch.append(row["scratch"]["fid"])
                tuned.append(row["fine_tuned"]["fid"])
        pos = np.arange(len(labels))
        ax.bar(pos - 0.2, scratch, 0.4, label="scratch")
        ax.bar(pos + 0.2, tuned, 0.4, label="fine-tuned (from digits 0-4)")
        ax.set_xticks(pos, labels, fontsize=8)
        ax.set(ylabel="FID, digits 5-9 (domain features)", title="mnist5k: digits 0-4 -> 5-9")
        ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def markdown(r: dict[str, Any]) -> str:
    lines = ["# Transfer learning: what pre-training buys", ""]
    text = r.get("text")
    if text:
        p = text["pretrain"]
        lines += [
            "## Text: GPT pre-trained on surnames, fine-tuned on first names",
            "",
            f"GPT `{text['model']}`; pre-training: {p['steps']} steps of {p['batch']} surnames ({p['n_train']} in "
            f"the training split; surname test NLL {p['test_nll_surnames']:.4f}). Then {text['steps']} steps of "
            f"{text['batch']} on each subset of the names training split, lr {text['lr']:g} (loaded part x "
            f"{text['lr_mult']:g}), test NLL on all {text['n_test']} test names at the step with the lowest "
            f"validation NLL (evaluated every {text['eval_every']} steps; early stopping for both); "
            f"seeds {text['seeds']}.",
            "",
            "| names train | n | scratch NLL | fine-tuned NLL | gain (scratch - fine-tuned) [95% t CI] | "
            "steps to scratch's final (max over seeds) | beats scratch | <= 1/3 of the steps |",
            "| --- | --- | --- | --- | --- | --- | --- | --- |",
        ]
        for s in text["summary"]:
            g = s["gain"]
            steps = f"{s['steps_fraction_max']:.0%}" if s["steps_fraction_max"] is not None else "never"
            lines.append(
                f"| {s['fraction']:.0%} | {s['n_train']} | {s['scratch_nll']:.4f} | {s['fine_tuned_nll']:.4f} | "
                f"{g['mean']:.4f} [{g['lo']:.4f}, {g['hi']:.4f}] | {steps} | {'yes' if s['beats_scratch'] else 'NO'} "
                f"| {'yes' if s['within_third_of_steps'] else 'NO'} |"
            )
        lines += ["", "Per seed (test NLL at the early-stopping step; at the last step in brackets):", "",
                  "| fraction | seed | scratch (step) | fine-tuned (step) | fine-tuned reaches scratch's at step |",
                  "| --- | --- | --- | --- | --- |"]  # fmt: skip
        for row in text["rows"]:
            s, f = row["scratch"], row["fine_tuned"]
            lines.append(f"| {row['fraction']:.0%} | {row['seed']} | {s['final_nll']:.4f} ({s['chosen_step']}; "
                         f"[{s['last_step_nll']:.4f}]) | {f['final_nll']:.4f} ({f['chosen_step']}; "
                         f"[{f['last_step_nll']:.4f}]) | {row['steps_to_scratch_final']} |")  # fmt: skip
        lines.append("")
    images = r.get("images")
    if images:
        c = images["classifier"]
        lines += [
            "## Images: mnist5k digits 0-4 -> digits 5-9",
            "",
            f"{images['steps']} steps (batch 64, drawn with replacement) on 10 or 50 training images of each digit "
            f"5-9; FID of {images['n_images']} samples against the {images['n_real']} test images of 5-9 in the "
            f"domain classifier's features (test accuracy {c.get('test_accuracy')}; {c.get('source')}); coverage: "
            f"share of the digits 5-9 that get at least {images['cover_share']:.0%} of the samples; on target: the "
            "share of samples the classifier labels 5-9. One seed.",
            "",
            "| family | per class | scratch FID [95% CI] | fine-tuned FID [95% CI] | coverage scratch / fine-tuned "
            "| on target scratch / fine-tuned | beats scratch (intervals apart) |",
            "| --- | --- | --- | --- | --- | --- | --- |",
        ]
        for family, fam in images["families"].items():
            for row in fam["rows"]:
                s, f = row["scratch"], row["fine_tuned"]
                lines.append(
                    f"| {family} | {row['per_class']} | {s['fid']:.2f} [{s['fid_ci95'][0]:.2f}, {s['fid_ci95'][1]:.2f}]"
                    f" | {f['fid']:.2f} [{f['fid_ci95'][0]:.2f}, {f['fid_ci95'][1]:.2f}] | {s['coverage']:.1f} / "
                    f"{f['coverage']:.1f} | {s['on_target']:.2f} / {f['on_target']:.2f} | "
                    f"{'yes' if row['beats_scratch'] else 'NO'} |"
                )
        lines.append("")
    lines += [f"![transfer]({Path(r['figure']).name})", ""]
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--parts", nargs="+", default=["text", "images"], choices=["text", "images"])
    ap.add_argument("--data-root", type=Path, default=Path("data/prepared"), help="the prepare stage's output")
    ap.add_argument("--features", type=Path, help="domain classifier directory (default data/features/mnist5k)")
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--fractions", type=float, nargs="+", default=[0.05, 0.2, 1.0])
    ap.add_argument("--pretrain-steps", type=int, default=1500)
    ap.add_argument("--pretrain-batch", type=int, default=64)
    ap.add_argument("--text-steps", type=int, default=300)
    ap.add_argument("--text-batch", type=int, default=32)
    ap.add_argument("--text-lr", type=float, default=2e-3)
    ap.add_argument("--lr-mult", type=float, default=1.0, help="learning-rate multiplier of the loaded tensors")
    ap.add_argument("--eval-every", type=int, default=10)
    ap.add_argument("--families", nargs="+", default=["diffusion", "gan"], choices=sorted(IMAGE_MODELS))
    ap.add_argument("--per-class", type=int, nargs="+", default=[10, 50])
    ap.add_argument("--image-pretrain-steps", type=int, default=800)
    ap.add_argument("--image-steps", type=int, default=300)
    ap.add_argument("--n-images", type=int, default=500)
    ap.add_argument("--n-boot", type=int, default=100)
    ap.add_argument("--cover-share", type=float, default=0.05)
    ap.add_argument("--clf-epochs", type=int, default=6, help="epochs of the domain classifier trained here")
    ap.add_argument("--threads", type=int, default=1, help="torch threads (1: robust to other load on 2 cores)")
    ap.add_argument("--out", type=Path, default=Path("benchmarks/results/transfer"))
    args = ap.parse_args()
    run = Run(args.out)
    torch.set_num_threads(args.threads)
    print(f"load average before: {load_average()}", flush=True)
    result: dict[str, Any] = {}
    if "text" in args.parts:
        result["text"] = text_part(args)
    if "images" in args.parts:
        result["images"] = image_part(args)
    figure = args.out.with_suffix(".png")
    figure.parent.mkdir(parents=True, exist_ok=True)
    plot(result, figure)
    result["figure"] = str(figure)
    text = result.get("text")
    if text:
        result["goal_text"] = {
            "beats_scratch_everywhere": all(s["beats_scratch"] for s in text["summary"]),
            "third_of_steps_everywhere": all(s["within_third_of_steps"] for s in text["summary"]),
        }
    run.write(result, markdown(result))
    print(f"load average after: {load_average()}", flush=True)


if __name__ == "__main__":
    main()
