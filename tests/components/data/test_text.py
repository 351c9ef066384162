import re

import numpy as np
import pytest

from components.data import prepare_dataset
from components.data.spec import DataSpec
from components.data.text import (
    BOS,
    EOS,
    GENDERS,
    PAD,
    decode,
    encode,
    load_names,
    load_surnames,
    load_textfile,
    read_census,
    read_surnames,
)
from components.errors import DataError

SPEC = DataSpec(name="t", kind="text", shape=(4,), vocab=("a", "b", "c"))


def test_encode_layout_and_roundtrip():
    ids = encode(["ab", "", "cccc"], SPEC)
    assert ids.dtype == np.int64 and ids.shape == (3, 6)  # T = max_len + 2
    a, b, c = 3, 4, 5
    assert ids.tolist() == [
        [BOS, a, b, EOS, PAD, PAD],
        [BOS, EOS, PAD, PAD, PAD, PAD],
        [BOS, c, c, c, c, EOS],
    ]
    assert decode(ids, SPEC) == ["ab", "", "cccc"]


def test_decode_stops_at_eos_and_accepts_rows_without_bos():
    assert decode([[BOS, 3, EOS, 4, 4]], SPEC) == ["a"]
    assert decode([[3, 4, 5]], SPEC) == ["abc"]


def test_encode_rejects_unknown_characters_and_long_strings():
    with pytest.raises(DataError, match=r"vocabulary, got \['z'\]"):
        encode(["abz"], SPEC)
    with pytest.raises(DataError, match="at most 4 characters, got 5"):
        encode(["aaaaa"], SPEC)


def test_census_names_are_unique_lowercase_with_higher_frequency_gender():
    names, y, freq = read_census()
    assert len(names) == len(set(names.tolist())) == 5163  # 4,275 + 1,219 entries, 331 on both lists
    assert all(n.islower() and n.isalpha() for n in names.tolist())
    lookup = dict(zip(names.tolist(), y.tolist(), strict=True))
    # on both lists: james is 3.318% of men vs 0.010% of women; courtney 0.086% of women vs 0.019% of men
    assert GENDERS[lookup["james"]] == "male" and GENDERS[lookup["courtney"]] == "female"
    assert GENDERS[lookup["mary"]] == "female" and freq[names.tolist().index("mary")] == pytest.approx(2.629)


def test_load_names_and_prepare(tmp_path):
    raw = load_names()
    assert raw.kind == "text" and raw.x.dtype.kind == "U" and raw.class_names == GENDERS
    assert raw.vocab == tuple("abcdefghijklmnopqrstuvwxyz")
    manifest = prepare_dataset("names", raw, tmp_path, val=0.1, test=0.2, seed=0)
    assert manifest["spec"]["shape"] == [11]  # the longest census first name
    spec = DataSpec.from_dict(manifest["spec"])
    assert decode(encode(raw.x[:50], spec), spec) == raw.x[:50].tolist()


def test_surnames_are_the_census_list_in_the_first_names_alphabet(tmp_path):
    names, freq = read_surnames()
    assert len(names) == len(set(names.tolist())) == 88_799  # every line of dist.all.last
    assert names[0] == "smith" and freq[0] == pytest.approx(1.006)  # most frequent first
    raw = load_surnames()
    assert raw.kind == "text" and raw.y is None and len(raw.x) == 88_799
    assert raw.vocab == load_names().vocab == tuple("abcdefghijklmnopqrstuvwxyz")  # tokens mean the same
    small = load_surnames(n_samples=500)
    assert set(small.x.tolist()) == set(names[:500].tolist())
    with pytest.raises(DataError, match="expected n_samples <= 88799, got 88800"):
        load_surnames(n_samples=88_800)
    manifest = prepare_dataset("surnames", small, tmp_path, val=0.1, test=0.2, seed=0)
    assert manifest["splits"]["train"]["n"] == 350 and manifest["spec"]["extras"]["n"] == 500


def test_textfile_skips_blank_lines_and_strips(tmp_path):
    f = tmp_path / "lines.txt"
    f.write_text("héllo\n\n  world \r\n   \nhéllo\n", encoding="utf-8")
    raw = load_textfile(path=str(f), min_unique=2)
    assert raw.x.tolist() == ["héllo", "world", "héllo"] and raw.y is None
    assert raw.vocab == tuple(sorted("hélowrd"))


def test_textfile_errors_name_the_file_and_line(tmp_path):
    empty = tmp_path / "empty.txt"
    empty.write_text("\n  \n")
    with pytest.raises(DataError, match="empty.txt has no non-blank lines"):
        load_textfile(path=str(empty))
    bad = tmp_path / "bad.txt"
    bad.write_bytes(b"ok\nfine\nbro\xffken\n")
    with pytest.raises(DataError, match=r"bad.txt line 3 is not valid UTF-8"):
        load_textfile(path=str(bad))
    with pytest.raises(DataError, match="expected a file"):
        load_textfile(path=str(tmp_path / "missing.txt"))


# --- issue 15: text that was silently wrong ---------------------------------------------------------------------


def _lines(tmp_path, text, name="lines.txt"):
    f = tmp_path / name
    f.write_text(text, encoding="utf-8")
    return str(f)


def test_textfile_of_one_repeated_line_is_refused(tmp_path):
    path = _lines(tmp_path, "anna\n" * 1000)
    with pytest.raises(
        DataError, match=r"lines\.txt: expected at least 10 distinct lines \(min_unique\), got 1 in 1000"
    ):
        load_textfile(path=path)
    assert len(load_textfile(path=path, min_unique=1).x) == 1000


def test_textfile_with_enough_distinct_lines_keeps_duplicates(tmp_path):
    names = [f"name{i}" for i in range(10)]
    raw = load_textfile(path=_lines(tmp_path, "\n".join(names + names[:3]) + "\n"))
    assert len(raw.x) == 13


@pytest.mark.parametrize(
    ("char", "code"), [("\t", "U+0009"), ("\x00", "U+0000"), ("\x1b", "U+001B"), ("\x85", "U+0085")]
)
def test_textfile_control_characters_are_refused_naming_the_line(tmp_path, char, code):
    lines = [f"name{i}" for i in range(12)]
    lines[6] = f"ab{char}cd"
    expected = rf"lines\.txt line 7: expected printable text, got control character {re.escape(code)} at character 3"
    with pytest.raises(DataError, match=expected):
        load_textfile(path=_lines(tmp_path, "\n".join(lines) + "\n"))


def test_textfile_overlong_line_is_refused_naming_line_and_length(tmp_path):
    lines = [f"name{i}" for i in range(12)] + ["x" * 1_000_000]
    with pytest.raises(DataError, match=r"line 13: expected at most 256 characters \(max_line_chars\), got 1000000"):
        load_textfile(path=_lines(tmp_path, "\n".join(lines) + "\n"))
    raw = load_textfile(path=_lines(tmp_path, "\n".join(lines[:-1] + ["y" * 300]) + "\n"), max_line_chars=300)
    assert max(len(s) for s in raw.x) == 300


def test_textfile_utf8_byte_order_mark_is_not_a_character(tmp_path):
    f = tmp_path / "bom.txt"
    f.write_bytes("\ufeff".encode() + "\n".join(f"n{i}" for i in range(10)).encode())
    raw = load_textfile(path=str(f))
    assert raw.x[0] == "n0" and "\ufeff" not in raw.vocab


def test_textfile_path_outside_the_project_is_refused(tmp_path, monkeypatch):
    outside = tmp_path / "outside.txt"
    outside.write_text("\n".join(f"n{i}" for i in range(10)))
    (tmp_path / "project").mkdir()
    monkeypatch.chdir(tmp_path / "project")
    with pytest.raises(DataError, match=r"textfile: path \.\./outside\.txt resolves to .*, outside the project"):
        load_textfile(path="../outside.txt")
