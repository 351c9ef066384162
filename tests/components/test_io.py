"""Atomic writes that never replace or remove what genfoundry did not write (issue: a user's folder outside
the project was deleted by an output path derived from a name)."""

from __future__ import annotations

import json

import pytest

from components.errors import GenfoundryError
from components.io import MARKER, atomic_path, headline, write_json


def test_a_folder_output_is_written_whole_and_replaced_whole(tmp_path):
    out = tmp_path / "models" / "m"
    for content in ("one", "two"):
        with atomic_path(out) as tmp:
            tmp.mkdir()
            (tmp / "w.txt").write_text(content)
    assert (out / "w.txt").read_text() == "two" and (out / MARKER).exists()
    assert sorted(p.name for p in out.parent.iterdir()) == ["m"]  # no temporary or old folder left


def test_a_failed_write_leaves_the_old_output(tmp_path):
    out = tmp_path / "m"
    with atomic_path(out) as tmp:
        tmp.mkdir()
        (tmp / "w.txt").write_text("good")
    with pytest.raises(RuntimeError), atomic_path(out) as tmp:
        tmp.mkdir()
        raise RuntimeError("crash mid-write")
    assert (out / "w.txt").read_text() == "good"


def test_someone_elses_folder_is_never_replaced(tmp_path):
    theirs = tmp_path / "theirs"
    theirs.mkdir()
    (theirs / "thesis.tex").write_text("years of work")
    with pytest.raises(GenfoundryError, match=r"theirs: expected a folder genfoundry wrote .* nothing was changed"):
        with atomic_path(theirs) as tmp:
            tmp.mkdir()
    assert (theirs / "thesis.tex").read_text() == "years of work"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["theirs"]


def test_a_symlink_is_never_replaced(tmp_path):
    target = tmp_path / "elsewhere"
    target.mkdir()
    (tmp_path / "link").symlink_to(target)
    with pytest.raises(GenfoundryError, match="got a symlink; nothing was changed"):
        write_json(tmp_path / "link", {"a": 1})
    assert (tmp_path / "link").is_symlink() and target.is_dir()


def test_headline_keeps_top_level_numbers_and_named_nested_ones():
    report = {"fid": 1.5, "n": 3, "ok": True, "hist": [1, 2], "simclr": {"fid": 2.5, "deep": {"x": 1}}, "p": {}}
    assert headline(report, nested=("simclr.fid", "simclr.missing")) == {
        "fid": 1.5,
        "n": 3,
        "ok": True,
        "simclr_fid": 2.5,
    }
    assert json.dumps(headline(report))  # JSON-able
