"""Gender labels for generated first names: census lookup first, a character n-gram classifier otherwise.

The attribute classifier of a fairness audit (Choi et al., arXiv 1910.12008) must come with its confusion
matrix, since its errors distort the measured shares (Teo et al., NeurIPS 2023, "CLEAM"). Known names are
labelled by the 1990 US census lists (``components.data.text.read_census``); unknown (novel) names by a
logistic regression over character 1-4-grams with word boundaries (so endings like ``a`` / ``o`` count),
trained with balanced class weights (the census has 3.5× more female than male names) on part of the census
and scored on the held-out rest.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import confusion_matrix
from sklearn.model_selection import train_test_split
from sklearn.pipeline import Pipeline, make_pipeline

from components.data.text import GENDERS, read_census


def fit_gender_classifier(names: Sequence[str], y: np.ndarray, *, seed: int = 0) -> Pipeline:
    """A char n-gram logistic regression: ``predict(names) -> gender index`` into :data:`GENDERS`."""
    clf = make_pipeline(
        TfidfVectorizer(analyzer="char_wb", ngram_range=(1, 4), lowercase=True, sublinear_tf=True),
        LogisticRegression(C=4.0, class_weight="balanced", max_iter=2000, random_state=seed),
    )
    return clf.fit(list(names), y)


def label_gender(names: Sequence[str], lookup: Mapping[str, int], clf: Pipeline) -> tuple[np.ndarray, np.ndarray]:
    """Gender index per name and whether it came from ``lookup`` (which takes precedence over ``clf``)."""
    keys = [n.lower() for n in names]
    known = np.array([k in lookup for k in keys], dtype=bool)
    labels = np.zeros(len(keys), dtype=np.int64)
    labels[known] = [lookup[k] for k, hit in zip(keys, known, strict=True) if hit]
    unknown = [k for k, hit in zip(keys, known, strict=True) if not hit]
    if unknown:
        labels[~known] = clf.predict(unknown)
    return labels, known


@dataclass
class GenderLabeler:
    """The census lookup, the classifier for unknown names and its held-out confusion matrix."""

    lookup: dict[str, int]
    classifier: Pipeline
    confusion: np.ndarray  # (2, 2): rows true gender, columns predicted, over held-out census names
    class_names: tuple[str, ...] = GENDERS

    @property
    def accuracy(self) -> float:
        return float(np.trace(self.confusion) / self.confusion.sum())

    @property
    def balanced_accuracy(self) -> float:
        return float(np.mean(np.diag(self.confusion) / self.confusion.sum(1)))

    def __call__(self, names: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
        return label_gender(names, self.lookup, self.classifier)


def build_gender_labeler(*, held_out: float = 0.2, seed: int = 0) -> GenderLabeler:
    """Train the classifier on ``1 - held_out`` of the census names (stratified) and score it on the rest.

    The lookup holds every census name: the classifier is only ever asked about names outside it, and the
    held-out names stand in for those.
    """
    names, y, _ = read_census()
    tr, te, y_tr, y_te = train_test_split(names, y, test_size=held_out, stratify=y, random_state=seed)
    clf = fit_gender_classifier(tr, y_tr, seed=seed)
    pred = clf.predict(list(te))
    cm = confusion_matrix(y_te, pred, labels=list(range(len(GENDERS))))
    return GenderLabeler(lookup=dict(zip(names.tolist(), y.tolist(), strict=True)), classifier=clf, confusion=cm)
