import pytest

from components.errors import GenfoundryError
from pipelines.cli import known_mask


def test_masks_mark_the_known_pixels():
    bottom = known_mask((2, 1, 8, 8), "bottom", None)
    assert bottom[:, :, :4].eq(1).all() and bottom[:, :, 4:].eq(0).all()
    assert known_mask((1, 1, 8, 8), "bottom", 3)[0, 0, :, 0].tolist() == [1, 1, 1, 0, 0, 0, 0, 0]
    center = known_mask((1, 1, 8, 8), "center", None)
    assert center[0, 0, 2:6, 2:6].eq(0).all() and center.sum() == 64 - 16
    right = known_mask((1, 3, 8, 8), "right", None)
    assert right[..., :4].eq(1).all() and right[..., 4:].eq(0).all()


@pytest.mark.parametrize(("kind", "rows"), [("bottom", 0), ("bottom", 8), ("diagonal", None)])
def test_bad_masks_say_what_was_expected(kind, rows):
    with pytest.raises(GenfoundryError, match="expected"):
        known_mask((1, 1, 8, 8), kind, rows)
