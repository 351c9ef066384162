import numpy as np
import pytest

from components.data.text import GENDERS, read_census
from components.evaluation.gender import build_gender_labeler, fit_gender_classifier, label_gender

F, M = GENDERS.index("female"), GENDERS.index("male")


@pytest.fixture(scope="module")
def labeler():
    return build_gender_labeler(held_out=0.2, seed=0)


def test_lookup_takes_precedence_over_the_classifier():
    clf = fit_gender_classifier(["anna", "maria", "julia", "john", "peter", "mark"], np.array([F, F, F, M, M, M]))
    assert clf.predict(["anna"]).tolist() == [F]
    labels, known = label_gender(["ANNA", "paul", "marta"], {"anna": M}, clf)  # the lookup says otherwise
    assert labels[0] == M and known.tolist() == [True, False, False]
    assert labels[1:].tolist() == clf.predict(["paul", "marta"]).tolist()


def test_confusion_matrix_shape_and_counts(labeler):
    names, y, _ = read_census()
    cm = labeler.confusion
    assert cm.shape == (2, 2) and cm.dtype.kind == "i"
    assert cm.sum() == round(0.2 * len(names))  # every held-out name once
    assert cm.sum(1).tolist() == pytest.approx(np.bincount(y) * 0.2, abs=1)  # stratified: true counts per row


def test_held_out_accuracy_is_clearly_above_chance(labeler):
    _, y, _ = read_census()
    majority = np.bincount(y).max() / len(y)  # always answering "female": 0.777
    assert labeler.accuracy > majority + 0.05
    assert labeler.balanced_accuracy > 0.8  # chance is 0.5
    labels, known = labeler(["mary", "john", "zyxwvutsr"])
    assert labels[:2].tolist() == [F, M] and known.tolist() == [True, True, False]
