"""Stage ``features``: train the domain classifier of each image dataset (the FID/KID/PRDC feature space)."""

from __future__ import annotations

import typer

from components.data import load_spec, load_split
from components.evaluation.features import save_classifier, train_classifier
from components.io import atomic_path, write_json
from pipelines._common import DATA, FEATURES, REPORTS, console, params, stage

app = typer.Typer(add_completion=False)
NO_CLASSIFIER = "no_classifier.json"  # written instead of meta.json + weights for datasets without a classifier


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
            if spec.kind != "image" or spec.num_classes < 2:
                # every dataset gets its folder, so that a stage can depend on data/features/<dataset> alone
                reason = "not images" if spec.kind != "image" else "fewer than 2 classes"
                write_json(tmp / name / NO_CLASSIFIER, {"dataset": name, "classifier": None, "reason": reason})
                continue
            model, acc = train_classifier(
                load_split(DATA, name, "train"),
                load_split(DATA, name, "test"),
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
            meta = save_classifier(tmp / name, model, meta)
            report[name] = {"test_accuracy": acc["test_accuracy"], "sha256": meta["sha256"][:12]}
            console.print(f"domain classifier [bold]{name}[/]: test accuracy {acc['test_accuracy']:.4f}")
    write_json(REPORTS / "features.json", report)


if __name__ == "__main__":
    app()
