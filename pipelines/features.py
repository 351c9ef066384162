"""Stage ``features``: per image dataset, the domain classifier (the FID/KID/PRDC feature space) and, beside it
in ``simclr/``, a label-free SimCLR encoder (the second feature space; components.evaluation.simclr)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import typer

from components.config import SimCLRConfig
from components.data import load_spec, load_split
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
            if spec.kind == "image":
                train, test = load_split(DATA, name, "train"), load_split(DATA, name, "test")
            if spec.kind != "image" or spec.num_classes < 2:
                # every dataset gets its folder, so that a stage can depend on data/features/<dataset> alone
                reason = "not images" if spec.kind != "image" else "fewer than 2 classes"
                write_json(tmp / name / NO_CLASSIFIER, {"dataset": name, "classifier": None, "reason": reason})
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
            if spec.kind == "image" and cfg.simclr.enabled:
                report.setdefault(name, {})["simclr"] = _simclr(tmp / name / SUBDIR, name, train, test, cfg.simclr)
    write_json(REPORTS / "features.json", report)


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
