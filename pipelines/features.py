"""Stage ``features``: per image dataset, the domain classifier (the FID/KID/PRDC feature space) and, beside it
in ``simclr/``, a label-free SimCLR encoder (the second feature space; components.evaluation.simclr); per audio
dataset with labels, the audio domain classifier (log-mel CNN with a label head and one head per attribute:
the fad/KID/PRDC space and the audit's attribute labeller; components.evaluation.audio_features)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import typer

from components.config import FeaturesConfig, SimCLRConfig
from components.data import is_streamed, load_attributes, load_spec, load_split
from components.data.spec import DataSpec
from components.evaluation.audio_features import save_audio_classifier, train_audio_classifier
from components.evaluation.features import save_classifier, train_classifier
from components.evaluation.simclr import SUBDIR, save_encoder, train_simclr
from components.io import atomic_path, write_json
from components.layout import DATA, FEATURES, REPORTS
from pipelines._common import console, params, stage

app = typer.Typer(add_completion=False)
NO_CLASSIFIER = "no_classifier.json"  # written instead of meta.json + weights for datasets without a classifier
Split = tuple[np.ndarray, np.ndarray]


@app.command()
@stage
def main() -> None:
    p = params()
    cfg = p.features
    report = {}
    with atomic_path(FEATURES) as tmp:
        tmp.mkdir()
        for name in p.prepare.datasets:
            spec = load_spec(DATA, name)
            streamed = is_streamed(DATA, name)  # Parquet shards only, larger than memory: no classifier
            if spec.kind in ("image", "audio") and not streamed:
                train, test = load_split(DATA, name, "train"), load_split(DATA, name, "test")
            if spec.kind not in ("image", "audio") or spec.num_classes < 2 or streamed:
                # every dataset gets its folder, so that a stage can depend on data/features/<dataset> alone
                if spec.kind not in ("image", "audio"):
                    reason = "neither images nor audio"
                elif streamed:
                    reason = "streamed (prepared chunk by chunk: no arrays to train on)"
                else:
                    reason = "fewer than 2 classes"
                write_json(tmp / name / NO_CLASSIFIER, {"dataset": name, "classifier": None, "reason": reason})
            elif spec.kind == "audio":
                report[name] = _audio(tmp / name, name, spec, train, test, cfg)
            else:
                model, acc = train_classifier(
                    train,
                    test,
                    num_classes=spec.num_classes,
                    epochs=cfg.epochs,
                    batch_size=cfg.batch_size,
                    lr=cfg.lr,
                    seed=cfg.seed,
                )
                meta = {
                    "dataset": name,
                    "channels": spec.shape[0],
                    "num_classes": spec.num_classes,
                    **acc,
                    "epochs": cfg.epochs,
                    "seed": cfg.seed,
                }
                meta = save_classifier(tmp / name, model, meta)  # replaces the folder: the encoder goes in after
                report[name] = {"test_accuracy": acc["test_accuracy"], "sha256": meta["sha256"][:12]}
                console.print(f"domain classifier [bold]{name}[/]: test accuracy {acc['test_accuracy']:.4f}")
            if spec.kind == "image" and cfg.simclr.enabled and not streamed:
                report.setdefault(name, {})["simclr"] = _simclr(tmp / name / SUBDIR, name, train, test, cfg.simclr)
    write_json(REPORTS / "features.json", report)


AUDITED_ATTRIBUTES = ("timbre",)  # attributes of an audio dataset that get a head (the audit's second attribute)


def _audio(out: Path, name: str, spec: DataSpec, train: Split, test: Split, cfg: FeaturesConfig) -> dict[str, Any]:
    """Train, save and summarise one audio dataset's classifier: a label head and a head per audited attribute."""
    heads = {a: len(spec.attributes[a]) for a in AUDITED_ATTRIBUTES if len(spec.attributes.get(a, ())) >= 2}
    attrs = {s: load_attributes(DATA, name, s) for s in ("train", "test")}
    model, rep = train_audio_classifier(
        train,
        test,
        sample_rate=int(spec.extras["sample_rate"]),
        num_classes=spec.num_classes,
        train_attributes={a: attrs["train"][a] for a in heads},
        test_attributes={a: attrs["test"][a] for a in heads},
        attribute_sizes=heads,
        epochs=cfg.epochs,
        batch_size=cfg.batch_size,
        lr=cfg.lr,
        seed=cfg.seed,
    )
    timeless = {k: v for k, v in rep.items() if k != "train_seconds"}  # the folder stays a function of data + params
    meta = {"dataset": name, "num_classes": spec.num_classes, **timeless, "epochs": cfg.epochs, "seed": cfg.seed}
    meta = save_audio_classifier(out, model, meta)
    accs = {k: v for k, v in rep.items() if k.endswith("test_accuracy")}
    console.print(
        f"audio domain classifier [bold]{name}[/]: "
        + ", ".join(f"{k} {v:.4f}" for k, v in accs.items() if v is not None)
        + f" ({rep['train_seconds']:.1f} s)"
    )
    return {**accs, "train_seconds": rep["train_seconds"], "sha256": meta["sha256"][:12]}


def _simclr(out: Path, name: str, train: Split, test: Split, cfg: SimCLRConfig) -> dict[str, Any]:
    """Train, save and summarise one dataset's SimCLR encoder."""
    encoder, rep = train_simclr(train, test, cfg)
    # the wall time goes to the report only: the encoder's folder must be a pure function of data and params,
    # or every rerun of this stage would change data/features/<dataset> and rerun its evaluate stages
    timeless = {k: v for k, v in rep.items() if k != "train_seconds"}
    meta = save_encoder(out, encoder, {"dataset": name, **timeless, **cfg.model_dump(exclude={"enabled"})})
    probes = ", ".join(f"{k} {rep[k]:.4f}" for k in ("knn_accuracy", "linear_probe_accuracy") if k in rep)
    console.print(f"SimCLR encoder [bold]{name}[/]: NT-Xent {rep['final_loss']:.3f}{', ' + probes if probes else ''}")
    keep = ("final_loss", "knn_accuracy", "linear_probe_accuracy", "knn_accuracy_pixels", "train_seconds")
    return {**{k: rep[k] for k in keep if k in rep}, "sha256": meta["sha256"][:12]}


if __name__ == "__main__":
    app()
