"""Evaluation of text models: held-out NLL vs a bigram baseline fitted in the same run, sample novelty and
diversity, and — for census names — the gender label of every sample for the audit."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from components.config import EvaluateConfig
from components.data.spec import DataSpec
from components.data.text import GENDERS
from components.evaluation.harness import Evaluation, draw_for, sampling_card
from components.evaluation.memorization import text_novelty
from components.evaluation.text import text_metrics
from components.models.base import GenerativeModel


def evaluate_text(
    model: GenerativeModel,
    spec: DataSpec,
    *,
    train: tuple[np.ndarray, np.ndarray],
    test: tuple[np.ndarray, np.ndarray],
    cfg: EvaluateConfig,
    **_: Any,
) -> Evaluation:
    torch.manual_seed(cfg.seed)
    drawn = draw_for(model, cfg)
    samples = drawn.samples
    train_s, test_s = [str(s) for s in train[0]], [str(s) for s in test[0]]
    model.eval()
    m = text_metrics(model.logits, spec, train=train_s, test=test_s, samples=samples, batch_size=cfg.batch_size)
    metrics: dict[str, Any] = {f"test_{k}" if k.startswith("nll") else k: v for k, v in m.items()}
    metrics["samples_per_s"] = drawn.samples_per_s
    metrics["protocol"] = {
        **sampling_card(drawn),
        "n_generated": len(samples),
        "n_test": len(test_s),
        "reference_split": "test",
        "nll_unit": "nats per character, EOS counted, PAD ignored",
        "bigram": "add-one smoothed, fitted on the train split in this run",
        "seed": cfg.seed,
        "sampler_options": cfg.sampler,
        **drawn.sampler_info,
    }
    labels = None
    if tuple(spec.class_names) == GENDERS:
        from components.evaluation.gender import build_gender_labeler

        labeler = build_gender_labeler(seed=cfg.seed)
        lab, from_lookup = labeler(samples)
        labels = lab.tolist()
        for g, name in enumerate(GENDERS):  # per-gender novelty: are minority names only ever copied?
            group = [s for s, y in zip(samples, lab, strict=True) if y == g]
            if group:
                metrics[f"novel_share_{name}"] = text_novelty(group, train_s, test_s)["new"]
        metrics["protocol"]["attribute_classifier"] = {
            "kind": "census lookup, else char 1-4-gram logistic regression",
            "confusion_matrix": labeler.confusion.tolist(),
            "held_out_accuracy": labeler.accuracy,
            "share_labelled_by_lookup": float(from_lookup.mean()) if len(from_lookup) else 0.0,
        }
    text = "\n".join(samples) + "\n"
    return Evaluation(metrics=metrics, labels=labels, figures={}, samples=samples, files={"samples.txt": text})
