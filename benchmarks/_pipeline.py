"""The pipeline's data and feature space, for benchmarks: the prepare stage's splits and the features stage's
domain classifier, read from the workspace when ``dvc repro`` made them, else made here the way those stages
make them (params.yaml's ``prepare`` and ``features`` sections), never written into the workspace.
"""

from __future__ import annotations

import atexit
import shutil
import tempfile
import time
from collections.abc import Iterable
from pathlib import Path

from components.config import load_params
from components.data import get_source, load_spec, load_split, prepare_dataset
from components.evaluation.features import TrainedClassifier, load_classifier, save_classifier, train_classifier
from components.layout import DATA, FEATURES, PARAMS


def _tempdir(prefix: str) -> Path:
    path = Path(tempfile.mkdtemp(prefix=prefix))
    atexit.register(shutil.rmtree, path, ignore_errors=True)
    return path


def prepared_root(datasets: Iterable[str], root: str | Path = DATA, *, params: str | Path = PARAMS) -> Path:
    """``root`` (made absolute: Ray workers read it too) if every one of ``datasets`` is prepared there (the
    prepare stage's ``data/prepared``); else a temporary folder (removed at exit) where they are prepared now
    exactly as the prepare stage does: the source, ``n_samples``, seed and split of params.yaml's ``prepare``."""
    datasets, root = list(dict.fromkeys(datasets)), Path(root)
    missing = [d for d in datasets if not (root / d / "manifest.json").exists()]
    if not missing:
        return root.resolve()
    cfg = load_params(params).prepare
    unknown = [d for d in datasets if d not in cfg.datasets]
    if unknown:
        raise SystemExit(f"{', '.join(unknown)}: not in {params} prepare.datasets {sorted(cfg.datasets)}")
    out = _tempdir("benchmark-prepared-")
    for name in datasets:
        ds = cfg.datasets[name]
        raw = get_source(ds.source)(**ds.source_kwargs(), seed=cfg.seed)
        prepare_dataset(name, raw, out, val=cfg.split.val, test=cfg.split.test, seed=cfg.seed)
    print(f"{', '.join(missing)}: not prepared in {root}; prepared in {out} as the prepare stage does", flush=True)
    return out


def domain_classifier(
    dataset: str,
    root: str | Path,
    features: str | Path | None = None,
    *,
    epochs: int | None = None,
    params: str | Path = PARAMS,
) -> TrainedClassifier:
    """The features stage's domain classifier of ``dataset``: loaded from ``features`` (default
    ``data/features/<dataset>``) if it is there and ``epochs`` is None; else trained now on ``root``'s splits with
    the stage's recipe (params.yaml's ``features`` section; ``epochs`` overrides its epochs) and saved as the
    stage saves it (same metadata, sha256 of the weights file), to a temporary folder. ``meta["source"]`` says
    which; a trained one also carries ``train_seconds``."""
    features = Path(features) if features is not None else FEATURES / dataset
    if epochs is None and (features / "meta.json").exists():
        clf = load_classifier(features)
        return TrainedClassifier(model=clf.model, meta={**clf.meta, "source": f"features stage ({features})"})
    spec = load_spec(root, dataset)
    if spec.kind != "image" or spec.num_classes < 2:
        raise SystemExit(f"{dataset}: the features stage trains no classifier for it (not images with classes)")
    cfg = load_params(params).features
    epochs = epochs or cfg.epochs
    t0 = time.perf_counter()
    model, acc = train_classifier(
        load_split(root, dataset, "train"),
        load_split(root, dataset, "test"),
        num_classes=spec.num_classes,
        epochs=epochs,
        batch_size=cfg.batch_size,
        lr=cfg.lr,
        seed=cfg.seed,
    )
    seconds = round(time.perf_counter() - t0, 1)
    # the stage's metadata (pipelines/features.py), so that the sha256 and meta.json match the stage's
    meta = {"dataset": dataset, "channels": spec.shape[0], "num_classes": spec.num_classes, **acc, "epochs": epochs,
            "seed": cfg.seed}  # fmt: skip
    saved = _tempdir("benchmark-features-") / dataset
    save_classifier(saved, model, meta)
    clf = load_classifier(saved)
    source = "trained by this benchmark with the features stage's recipe"
    if epochs != cfg.epochs:
        source += f" ({epochs} epochs instead of {cfg.epochs})"
    return TrainedClassifier(model=clf.model, meta={**clf.meta, "source": source, "train_seconds": seconds})
