"""One evaluation harness for every family: draw samples, then measure them in the data's own terms.

- images: FID (with a bootstrap 95% interval) and KID in the domain classifier's feature space
  (torchmetrics, custom ``feature=``) with the real-vs-real floor (train vs test) beside them,
  precision/recall/density/coverage, memorization (generated vs train vs test, same features), the class
  histogram of samples and its KL to the data, the data-augmentation utility of the samples, likelihood
  where the family defines one, and pictures; when the dataset has a SimCLR encoder, FID/KID/PRDC and
  the floor again in that label-free space (``simclr``);
- points: the 2-D mode metrics of docs/protocols.md §1;
- text: see ``components.evaluation.text``.
Every result carries a protocol card: extractor and its hash, N real / N generated, reference split,
sampler and weights, seeds.

Samples are drawn in seeded chunks of ``evaluate.batch_size`` (``components.evaluation.distributed``): in this
process, or on ``evaluate.num_workers`` Ray actors that also extract the samples' features and Fréchet moments;
the chunks do not depend on the worker count, so neither do the samples nor any metric.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from PIL import Image
from torch import Tensor

from components.config import EvaluateConfig
from components.data.spec import DataSpec
from components.errors import DataError
from components.evaluation.distributed import Drawn, draw
from components.evaluation.features import TrainedClassifier
from components.evaluation.frechet import FrechetMoments, frechet_from_moments
from components.evaluation.grids import image_grid, scatter_plot
from components.evaluation.shares import fairness_discrepancy, shares
from components.evaluation.simclr import TrainedEncoder
from components.evaluation.stats import torch_threads
from components.models.base import GenerativeModel


@dataclass
class Evaluation:
    metrics: dict[str, Any]
    labels: list[int] | None = None  # the audited attribute of each generated sample
    figures: dict[str, Image.Image] = field(default_factory=dict)
    samples: Any = None
    files: dict[str, str] = field(default_factory=dict)  # extra text outputs, e.g. samples.txt


def generate(model: GenerativeModel, n: int, *, batch_size: int, seed: int, options: dict[str, Any]) -> Any:
    """``n`` samples in seeded chunks of ``batch_size``, in this process (tensor, or list of strings for text):
    the evaluate stage's samples (``distributed.draw`` with ``num_workers = 0``)."""
    return draw(model, n, chunk_size=batch_size, seed=seed, options=options).samples


def draw_for(model: GenerativeModel, cfg: EvaluateConfig, **extract: Any) -> Drawn:
    """The evaluation's ``cfg.n_samples`` samples, in chunks of ``cfg.batch_size`` on ``cfg.num_workers`` Ray
    actors (0: in this process); ``extract``: ``extractors`` and ``labeller`` of ``distributed.draw``."""
    return draw(
        model,
        cfg.n_samples,
        chunk_size=cfg.batch_size,
        seed=cfg.seed,
        options=cfg.sampler,
        num_workers=cfg.num_workers,
        **extract,
    )


def sampling_card(drawn: Drawn) -> dict[str, Any]:
    """The protocol card's record of how the samples were drawn; ``samples_per_s`` is the wall-clock rate of
    drawing them (and, for images, extracting their features), Ray actors' start-up included."""
    return {"sampling_device": drawn.info["device"], "sampling": drawn.info}


class Precomputed(torch.nn.Module):
    """Identity on features already extracted, so torchmetrics' KID (``feature=``) runs on them."""

    def __init__(self, num_features: int):
        super().__init__()
        self.num_features = num_features

    def forward(self, x: Tensor) -> Tensor:
        return x


@torch.no_grad()
def _features(extractor: torch.nn.Module, x: Tensor, batch_size: int = 1000) -> Tensor:
    return torch.cat([extractor(b) for b in x.split(batch_size)])


def fid_kid(extractor: torch.nn.Module, real: Tensor, fake: Tensor, *, seed: int) -> dict[str, float]:
    """FID (arXiv 1706.08500) and KID (arXiv 1801.01401) between two image sets, in ``extractor``'s features."""
    extractor.eval()
    return fid_kid_features(_features(extractor, real), _features(extractor, fake), seed=seed)


def fid_kid_features(
    real: Tensor,
    fake: Tensor,
    *,
    seed: int,
    real_moments: FrechetMoments | None = None,
    fake_moments: FrechetMoments | None = None,
) -> dict[str, float]:
    """FID from the two sets' Fréchet moments (given, e.g. merged from the evaluation workers' chunks, or computed
    from the features) and KID from the features (torchmetrics, 50 subsets from torch seed ``seed``)."""
    from torchmetrics.image.kid import KernelInceptionDistance

    real_moments = FrechetMoments.of(real) if real_moments is None else real_moments
    fake_moments = FrechetMoments.of(fake) if fake_moments is None else fake_moments
    fid = frechet_from_moments(real_moments, fake_moments)
    torch.manual_seed(seed)  # KID's subsets
    subset = min(1000, len(real), len(fake))
    kid = KernelInceptionDistance(
        feature=Precomputed(real.shape[1]), subsets=50, subset_size=subset, reset_real_features=True
    )
    for chunk in real.split(1000):
        kid.update(chunk, real=True)
    for chunk in fake.split(1000):
        kid.update(chunk, real=False)
    with torch_threads(1):  # 50 small kernel matrices: two threads spin-wait on a shared CPU (3-5x slower)
        kid_mean, kid_std = kid.compute()
    return {
        "fid": fid,  # clamped at 0 (docs/protocols.md §3.3)
        "kid": float(kid_mean),
        "kid_std": float(kid_std),
    }


def evaluate_images(
    model: GenerativeModel,
    spec: DataSpec,
    *,
    classifier: TrainedClassifier,
    train: tuple[np.ndarray, np.ndarray],
    test: tuple[np.ndarray, np.ndarray],
    cfg: EvaluateConfig,
    encoder: TrainedEncoder | None = None,
) -> Evaluation:
    """Sample ``model`` and measure the samples against ``test`` (module docstring); ``encoder``, when given,
    adds the ``simclr`` section: the same distances in the SimCLR encoder's label-free features."""
    from components.evaluation.augmentation import augmentation_utility
    from components.evaluation.frechet import fid_ci
    from components.evaluation.prdc import prdc_per_k

    extractors = {"classifier": classifier, "simclr": encoder}  # the samples' features: drawn with them
    drawn = draw_for(model, cfg, extractors=extractors, labeller="classifier")
    fake, f_fake = drawn.samples, drawn.features["classifier"]
    real_test = torch.from_numpy(test[0]).float()
    rng = np.random.default_rng(cfg.seed)
    n_floor = min(len(train[0]), cfg.n_samples)
    floor_idx = rng.choice(len(train[0]), n_floor, replace=False)
    extractor = classifier.model.eval()

    f_test = classifier.features(real_test)
    f_train = classifier.features(torch.from_numpy(train[0]).float())  # the memorization reference
    f_floor = f_train[torch.from_numpy(floor_idx)]
    test_moments = FrechetMoments.of(f_test)
    quality = fid_kid_features(
        f_test, f_fake, seed=cfg.seed, real_moments=test_moments, fake_moments=drawn.moments["classifier"]
    )
    floor = fid_kid_features(f_test, f_floor, seed=cfg.seed, real_moments=test_moments)
    intervals = {}
    if cfg.fid_n_boot > 0:  # the same FIDs from the features, resampled (components.evaluation.frechet)
        intervals["fid"] = fid_ci(f_test, f_fake, n_boot=cfg.fid_n_boot, seed=cfg.seed)
        intervals["fid_floor_train_vs_test"] = fid_ci(f_test, f_floor, n_boot=cfg.fid_n_boot, seed=cfg.seed)
    by_k = prdc_per_k(f_test, f_fake, ks=(3, 5))  # one pass over the distances
    pr, dc = by_k[3], by_k[5]  # P/R with k = 3 (arXiv 1904.06991), D/C with k = 5 (arXiv 2002.09797)

    k = spec.num_classes
    labels = drawn.labels.numpy()  # type: ignore[union-attr]
    p_gen = shares(labels, k)
    p_train = shares(train[1], k)
    metrics: dict[str, Any] = {
        "fid": quality["fid"],
        "kid": quality["kid"],
        "kid_std": quality["kid_std"],
        "fid_floor_train_vs_test": floor["fid"],
        "kid_floor_train_vs_test": floor["kid"],
        **{f"{name}_ci95": [ci.lo, ci.hi] for name, ci in intervals.items()},
        "precision": pr["precision"],
        "recall": pr["recall"],
        "density": dc["density"],
        "coverage": dc["coverage"],
        "classes_present": int((p_gen > 0).sum()),
        "class_kl_to_data": fairness_discrepancy(p_gen, p_train)["kl"],
        "class_histogram": np.bincount(labels, minlength=k).tolist(),
        "samples_per_s": drawn.samples_per_s,
        "memorization": memorization_in_features(f_train, f_test, f_fake, seed=cfg.seed),
    }
    if k > 0 and cfg.utility_steps > 0:
        metrics["augmentation"] = augmentation_utility(
            train, test, fake, labels, num_classes=k, steps=cfg.utility_steps, seed=cfg.seed
        )
    if encoder is not None:
        metrics["simclr"] = second_space(
            encoder, real_test, torch.from_numpy(train[0][floor_idx]).float(), drawn, seed=cfg.seed
        )
    metrics.update(_likelihood(model, test, cfg))
    metrics["protocol"] = {
        "feature_extractor": f"domain classifier (penultimate layer, {extractor.num_features}-D)",
        "extractor_sha256": classifier.meta.get("sha256"),
        "extractor_test_accuracy": classifier.meta.get("test_accuracy"),
        "n_generated": int(len(fake)),
        "n_real": int(len(real_test)),
        "reference_split": "test",
        "floor": f"train ({n_floor}) vs test ({len(real_test)})",
        "precision_recall_k": 3,
        "density_coverage_k": 5,
        "fid_interval": {
            "method": "centred bootstrap (stats.bootstrap_ci), test and generated features resampled independently",
            "level": 0.95,
            "n_boot": cfg.fid_n_boot,
            **{f"bootstrap_bias_{name}": ci.boot_mean - ci.estimate for name, ci in intervals.items()},
        },
        "seed": cfg.seed,
        "sampler_options": cfg.sampler,
        **sampling_card(drawn),
        **drawn.sampler_info,
    }
    if encoder is not None:
        metrics["protocol"]["simclr_extractor"] = {
            "name": "SimCLR encoder (arXiv 2002.05709), representation before the projection head",
            "feature_dim": encoder.model.num_features,
            "sha256": encoder.meta.get("sha256"),
            "knn_accuracy": encoder.meta.get("knn_accuracy"),
            "linear_probe_accuracy": encoder.meta.get("linear_probe_accuracy"),
        }
    gen = torch.Generator().manual_seed(cfg.seed)
    figures = {"samples": image_grid(fake[:64], nrow=8)}
    pick = torch.from_numpy(rng.permutation(len(real_test))[:64])  # splits can be sorted by class
    real_batch = (real_test[pick], torch.from_numpy(test[1])[pick])
    for name, imgs in model.evaluation_figures(real_batch, generator=gen).items():
        figures[name] = image_grid(imgs.float().cpu(), nrow=8)
    return Evaluation(metrics=metrics, labels=labels.tolist(), figures=figures, samples=fake)


def second_space(
    encoder: TrainedEncoder, real_test: Tensor, real_train: Tensor, drawn: Drawn, *, seed: int
) -> dict[str, float]:
    """FID, KID, their real-vs-real floor (train vs test) and precision/recall (k = 3) / density/coverage
    (k = 5) in the SimCLR encoder's features: the same protocol as the domain classifier's space, in a space
    no label shaped. Numbers of the two spaces are not comparable with each other, only within a space. The
    samples' features and moments come with ``drawn`` (extractor ``simclr``)."""
    from components.evaluation.prdc import prdc_per_k

    f_test, f_train, f_fake = encoder.features(real_test), encoder.features(real_train), drawn.features["simclr"]
    test_moments = FrechetMoments.of(f_test)
    quality = fid_kid_features(
        f_test, f_fake, seed=seed, real_moments=test_moments, fake_moments=drawn.moments["simclr"]
    )
    floor = fid_kid_features(f_test, f_train, seed=seed, real_moments=test_moments)
    by_k = prdc_per_k(f_test, f_fake, ks=(3, 5))
    return {
        "fid": quality["fid"],
        "kid": quality["kid"],
        "kid_std": quality["kid_std"],
        "fid_floor_train_vs_test": floor["fid"],
        "kid_floor_train_vs_test": floor["kid"],
        "precision": by_k[3]["precision"],
        "recall": by_k[3]["recall"],
        "density": by_k[5]["density"],
        "coverage": by_k[5]["coverage"],
    }


def memorization_in_features(f_train: Tensor, f_test: Tensor, f_fake: Tensor, *, seed: int) -> dict[str, Any]:
    """``memorization.memorization_report`` of generated vs train vs test in the domain classifier's features.

    NN distances to train and to test, the NN-ratio rate, authenticity and C_T (docs/protocols.md §4.1). The
    audit stage's per-class memorization is the NN-ratio rate in pixel space; this is the full report in the
    space FID and precision/recall use. NaN (e.g. C_T with no cell holding > 20 samples) becomes None.
    """
    from components.evaluation.memorization import NN_RATIO_THRESHOLD, memorization_report

    with torch_threads(1):  # chunked k-NN matmuls: one thread beats two spin-waiting ones on a shared CPU
        report = memorization_report(f_train, f_test, f_fake, seed=seed)
    report = {k: _finite_or_none(v) for k, v in report.items()}
    report["space"] = f"domain classifier features ({f_train.shape[1]}-D)"
    report["nn_ratio_threshold"] = NN_RATIO_THRESHOLD
    return report


def _finite_or_none(v: Any) -> Any:
    if isinstance(v, list):
        return [_finite_or_none(x) for x in v]
    return None if isinstance(v, float) and not math.isfinite(v) else v


def evaluate_points(
    model: GenerativeModel, spec: DataSpec, *, train: tuple[np.ndarray, np.ndarray], cfg: EvaluateConfig
) -> Evaluation:
    """2-D mixtures: modes captured, % high quality, reverse KL (docs/protocols.md §1.2)."""
    from components.data.mixtures import MIXTURES
    from components.evaluation.modes import mode_metrics

    drawn = draw_for(model, cfg)
    fake = drawn.samples.numpy()
    means = np.asarray(spec.extras["means"])
    m = mode_metrics(fake, means, float(spec.extras["sigma"]))
    d = np.linalg.norm(fake[:, None] - means[None], axis=-1)
    hq = d.min(1) <= 3 * float(spec.extras["sigma"])
    labels = np.where(hq, d.argmin(1), -1)  # -1: off every mode (not high quality)
    sigma = float(spec.extras["sigma"])
    known = [mx.name for mx in MIXTURES.values() if mx.means.shape == means.shape and np.allclose(mx.means, means)
             and mx.sigma == sigma]  # fmt: skip
    metrics: dict[str, Any] = {
        "modes_captured": m["modes_captured"],
        "pct_high_quality": m["pct_high_quality"],
        "reverse_kl": m["reverse_kl"],
        "mode_histogram": m["per_mode_counts"],
        "samples_per_s": drawn.samples_per_s,
        "protocol": {
            **sampling_card(drawn),
            "n_generated": int(len(fake)),
            "high_quality_rule": "within 3 sigma of the nearest mean",
            "mixture": known[0] if known else None,  # a published testbed (ring8, grid25) or a custom mixture
            "num_modes": int(len(means)),
            "seed": cfg.seed,
            "sampler_options": cfg.sampler,
            **drawn.sampler_info,
        },
    }
    return Evaluation(
        metrics=metrics,
        labels=labels.tolist(),
        figures={"samples": scatter_plot(fake, reference=means)},
        samples=fake,
    )


def _likelihood(
    model: GenerativeModel,
    test: tuple[np.ndarray, np.ndarray],
    cfg: EvaluateConfig,
    attributes: dict[str, np.ndarray] | None = None,
) -> dict[str, float]:
    """Mean of the family's likelihood terms over the test split (nothing if the family defines none);
    ``attributes`` (name -> test ids) supply the ``batch_attributes`` a conditional model reads."""
    torch.manual_seed(cfg.seed)
    missing = [a for a in model.batch_attributes if a not in (attributes or {})]
    if missing:
        raise DataError(f"likelihood: expected the test attributes {missing} the model conditions on, got none")
    cols = [torch.from_numpy(test[0]).float(), torch.from_numpy(test[1])]
    cols += [torch.from_numpy(np.asarray(attributes[a], dtype=np.int64)) for a in model.batch_attributes]  # type: ignore[index]
    sums: dict[str, float] = {}
    n = 0
    with torch.no_grad():
        for batch in zip(*(c.split(cfg.batch_size) for c in cols), strict=True):
            terms = model.likelihood(tuple(batch))
            for k, v in terms.items():
                sums[k] = sums.get(k, 0.0) + float(v) * len(batch[0])
            n += len(batch[0])
    return {f"test_{k}": v / n for k, v in sums.items() if math.isfinite(v)}
