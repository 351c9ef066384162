"""Stage ``evaluate@<experiment>``: sample the trained model and measure it (components.evaluation.harness)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import typer

from components.data import load_attributes, load_spec, load_split
from components.data.spec import DataSpec
from components.errors import GenfoundryError
from components.evaluation import harness
from components.evaluation.grids import save_png
from components.io import MARKER, atomic_path, headline, write_json
from components.layout import DATA, EVAL, EVAL_DETAILS, FEATURES, SAMPLES, eval_dir, model_dir, report_file
from components.models.store import load_trained
from components.tracking import runs
from pipelines._common import EXPERIMENT, console, experiment_context, stage

app = typer.Typer(add_completion=False)


@app.command()
@stage
def main(experiment: str = EXPERIMENT) -> None:
    _, exp, info = experiment_context(experiment)
    spec = load_spec(DATA, exp.dataset)
    if exp.evaluate.num_workers > 0:  # the samples are drawn on Ray actors (components.evaluation.distributed)
        from components.training.driver import init_ray

        init_ray()  # a quiet local instance, or the cluster in RAY_ADDRESS
    model = load_trained(model_dir(experiment))
    train, test = load_split(DATA, exp.dataset, "train"), load_split(DATA, exp.dataset, "test")
    keep_samples = spec.kind == "image"  # the audit's per-group quality and memorization read the samples
    if spec.kind == "image":
        from components.evaluation.features import load_classifier
        from components.evaluation.simclr import SUBDIR, has_encoder, load_encoder

        clf_dir = FEATURES / exp.dataset
        if not (clf_dir / "meta.json").exists():
            raise GenfoundryError(f"no domain classifier for {exp.dataset!r} ({clf_dir}); run `dvc repro features`")
        enc_dir = clf_dir / SUBDIR  # optional (features.simclr.enabled): the label-free second space
        result = harness.evaluate_images(
            model,
            spec,
            classifier=load_classifier(clf_dir),
            encoder=load_encoder(enc_dir) if has_encoder(enc_dir) else None,
            train=train,
            test=test,
            cfg=exp.evaluate,
        )
    elif spec.kind == "points":
        result = harness.evaluate_points(model, spec, train=train, cfg=exp.evaluate)
    elif spec.kind == "audio":
        from components.evaluation.audio_features import is_audio_classifier, load_audio_classifier
        from components.evaluation.audio_harness import evaluate_audio

        clf_dir = FEATURES / exp.dataset  # optional: audio without labels has none (no_classifier.json)
        keep_samples = is_audio_classifier(clf_dir)  # for the audit's per-group memorization in its features
        result = evaluate_audio(
            model,
            spec,
            train=train,
            test=test,
            cfg=exp.evaluate,
            classifier=load_audio_classifier(clf_dir) if keep_samples else None,
            train_attributes=load_attributes(DATA, exp.dataset, "train"),
            test_attributes=load_attributes(DATA, exp.dataset, "test"),
        )
    else:
        from components.evaluation.text_harness import evaluate_text

        result = evaluate_text(model, spec, train=train, test=test, cfg=exp.evaluate)
    result.metrics["protocol"]["weights_sha256"] = info["weights_sha256"]

    out = eval_dir(experiment)
    with atomic_path(out) as tmp:
        tmp.mkdir()
        for name, img in result.figures.items():
            save_png(img, tmp / f"{name}.png")
        for name, text in result.files.items():
            (tmp / name).write_text(text)
        write_json(tmp / "labels.json", labels_record(result, spec))
        if keep_samples:
            np.savez_compressed(tmp / SAMPLES, x=np.asarray(result.samples, dtype=np.float32))
        if spec.kind == "audio":  # a few samples to listen to (and MLflow artifacts, below)
            from components.data.audio import write_wav

            for i, clip in enumerate(np.asarray(result.samples)[:WAV_SAMPLES]):
                write_wav(tmp / f"sample_{i}.wav", clip, int(spec.extras["sample_rate"]))
    write_json(report_file(experiment, EVAL_DETAILS), result.metrics)
    write_json(report_file(experiment, EVAL), headline(result.metrics, nested=HEADLINE_NESTED))

    c = runs.client(Path.cwd())
    scalars = {f"eval/{k}": v for k, v in mlflow_scalars(result.metrics).items()}
    runs.log_metrics(c, info["run_id"], scalars)
    runs.set_tags(c, info["run_id"], {"eval.protocol": result.metrics["protocol"]})
    for f in sorted(p for p in out.glob("*") if p.name not in (SAMPLES, MARKER)):
        c.log_artifact(info["run_id"], str(f), artifact_path="eval")
    line = ", ".join(f"{k} {v:.4g}" for k, v in result.metrics.items() if isinstance(v, float) and k in _PRINTED)
    console.print(f"evaluated [bold]{experiment}[/]: {line}")


def labels_record(result: harness.Evaluation, spec: DataSpec) -> dict:
    """labels.json, the audit's input: the audited label of every sample and the names of its values; for audio
    with a domain classifier also ``attributes``: attribute -> {"labels": the classifier's, "names": ...}."""
    record: dict = {"labels": result.labels, "class_names": list(spec.class_names)}
    attributes = getattr(result, "attributes", None)  # audio_harness.AudioEvaluation
    if attributes:
        record["attributes"] = attributes
    return record


def mlflow_scalars(metrics: dict) -> dict[str, float]:
    """Numbers of eval_details.json as MLflow metrics: nested sections flattened (``memorization.c_t``), each
    ``*_ci95`` pair as ``*_ci95_lo`` / ``*_ci95_hi``; the protocol card goes to a tag instead."""
    out: dict[str, float] = {}
    for k, v in runs.flatten({k: v for k, v in metrics.items() if k != "protocol"}).items():
        if k.endswith("_ci95") and isinstance(v, list) and len(v) == 2:
            out[f"{k}_lo"], out[f"{k}_hi"] = v
        elif isinstance(v, int | float) and not isinstance(v, bool):
            out[k] = v
    return out


#: nested numbers that join the top-level ones in eval.json (everything is in eval_details.json)
HEADLINE_NESTED = (
    "simclr.fid",
    "augmentation.delta",
    "memorization.nn_ratio_memorized",
    "memorization.authenticity",
    "protocol.n_generated",
)
WAV_SAMPLES = 8  # audio: samples written as WAV files beside the spectrograms
_PRINTED = {
    "fid",
    "fid_floor_train_vs_test",
    "fad",
    "fad_floor_train_vs_test",
    "precision",
    "recall",
    "coverage",
    "modes_captured",
    "pct_high_quality",
    "reverse_kl",
    "test_nll_nats_per_char",
    "test_nll_bits_per_dim",
    "clear_pitch_share",
    "test_nll_bits_per_sample",
}


if __name__ == "__main__":
    app()
