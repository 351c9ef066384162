"""Text dataset sources (US census first names and surnames, user text files) and character-level tokenisation.

Token ids: ``PAD = 0``, ``BOS = 1``, ``EOS = 2``, then the characters of ``spec.vocab`` in order. A string
of length ``L`` encodes as ``BOS c_1 .. c_L EOS`` right-padded with ``PAD`` to ``T = spec.shape[0] + 2``.
"""

from __future__ import annotations

import codecs
import re
from pathlib import Path

import numpy as np

from components.data.paths import user_path
from components.data.spec import DataSpec, RawData
from components.errors import DataError

PAD, BOS, EOS = 0, 1, 2
SPECIALS = ("<pad>", "<bos>", "<eos>")
GENDERS = ("female", "male")
# defaults of the textfile limits (components.config.DatasetConfig declares the same; a test keeps them equal)
MIN_UNIQUE = 10
MAX_LINE_CHARS = 256
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")  # Unicode category Cc


def vocab_size(spec: DataSpec) -> int:
    """Number of token ids: the special tokens plus the characters."""
    return len(SPECIALS) + len(spec.vocab)


def seq_len(spec: DataSpec) -> int:
    """Length ``T`` of an encoded string: BOS + the longest string + EOS."""
    return spec.shape[0] + 2


def read_census() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The 1990 US census first names shipped in the ``names`` package, one entry per distinct name.

    Returns ``(names, gender, frequency)``: lower-cased names, gender index into :data:`GENDERS` and the
    percentage of that gender's population carrying the name. A name on both lists (331 of 5,494 entries)
    keeps the list where its frequency is higher; on a tie (3 names) the list where it ranks higher.
    """
    import names as names_pkg

    root = Path(names_pkg.__file__).parent
    best: dict[str, tuple[float, int, int]] = {}  # name -> (freq, -rank, gender)
    for g, fname in enumerate(("dist.female.first", "dist.male.first")):
        for line in (root / fname).read_text().splitlines():
            fields = line.split()  # NAME FREQ CUMFREQ RANK
            if len(fields) != 4:
                continue
            key = (float(fields[1]), -int(fields[3]), g)
            name = fields[0].lower()
            if name not in best or key[:2] > best[name][:2]:
                best[name] = key
    ordered = sorted(best)
    return (
        np.array(ordered),
        np.array([best[n][2] for n in ordered], dtype=np.int64),
        np.array([best[n][0] for n in ordered], dtype=np.float64),
    )


def load_names(**_: object) -> RawData:
    """5,163 distinct US census first names (lower-case a-z); ``y`` is the gender (``female``/``male``)."""
    x, y, _freq = read_census()
    return RawData(
        x=x,
        y=y,
        kind="text",
        class_names=GENDERS,
        vocab=_vocab(x),
        extras={"source": "US census 1990 first names (names==0.3.0)", "duplicates": "higher frequency wins"},
    )


def read_surnames() -> tuple[np.ndarray, np.ndarray]:
    """The 1990 US census surnames shipped in the ``names`` package (``dist.all.last``): 88,799 distinct names,
    lower-cased, most frequent first, with the percentage of the population carrying each."""
    import names as names_pkg

    rows = []
    for line in (Path(names_pkg.__file__).parent / "dist.all.last").read_text().splitlines():
        fields = line.split()  # NAME FREQ CUMFREQ RANK
        if len(fields) == 4:
            rows.append((int(fields[3]), fields[0].lower(), float(fields[1])))
    rows.sort()
    return np.array([r[1] for r in rows]), np.array([r[2] for r in rows], dtype=np.float64)


def load_surnames(*, n_samples: int | None = None, **_: object) -> RawData:
    """US census surnames (lower-case a-z, the first names' alphabet): all 88,799, or the ``n_samples`` most
    frequent. No labels."""
    x, _freq = read_surnames()
    if n_samples is not None:
        if n_samples > len(x):
            raise DataError(f"surnames: expected n_samples <= {len(x)}, got {n_samples}")
        x = x[:n_samples]
    return RawData(
        x=np.sort(x),
        y=None,
        kind="text",
        vocab=_vocab(x),
        extras={"source": "US census 1990 surnames (names==0.3.0, dist.all.last)", "n": int(len(x))},
    )


def load_textfile(
    *,
    path: str | None,
    min_unique: int = MIN_UNIQUE,
    max_line_chars: int = MAX_LINE_CHARS,
    follow_symlinks: bool = False,
    **_: object,
) -> RawData:
    """A UTF-8 text file, one sample per line; surrounding whitespace is stripped and blank lines skipped.

    A leading byte-order mark is dropped. Duplicate lines are kept (their frequency is data), but the file
    must hold at least ``min_unique`` distinct lines: a file of one name repeated would teach a model one
    string. Refused with the line number: a line that is not UTF-8, one with a control character
    (U+0000-U+001F, U+007F-U+009F; a tab included) left after stripping, one longer than ``max_line_chars``.
    """
    f = user_path(path, "textfile", follow_symlinks=follow_symlinks)
    if not f.is_file():
        raise DataError(f"textfile: expected a file at {f}, got {'a folder' if f.exists() else 'nothing'}")
    data = f.read_bytes()
    data = data.removeprefix(codecs.BOM_UTF8)
    lines = []
    for number, raw in enumerate(data.splitlines(), start=1):
        try:
            line = raw.decode("utf-8").strip()
        except UnicodeDecodeError as e:
            raise DataError(
                f"textfile: {f} line {number} is not valid UTF-8 ({e.reason}); re-save the file as UTF-8"
            ) from None
        if not line:
            continue
        if len(line) > max_line_chars:
            raise DataError(
                f"textfile: {f} line {number}: expected at most {max_line_chars} characters (max_line_chars), "
                f"got {len(line)}; split or shorten the line, or raise max_line_chars for this dataset"
            )
        bad = _CONTROL.search(line)
        if bad:
            raise DataError(
                f"textfile: {f} line {number}: expected printable text, got control character "
                f"U+{ord(bad.group()):04X} at character {bad.start() + 1}; remove it"
            )
        lines.append(line)
    if not lines:
        raise DataError(f"textfile: {f} has no non-blank lines; expected one sample per line")
    unique = len(set(lines))
    if unique < min_unique:
        raise DataError(
            f"textfile: {f}: expected at least {min_unique} distinct lines (min_unique), got {unique} in "
            f"{len(lines)} lines; add varied samples, or lower min_unique for this dataset"
        )
    x = np.array(lines)
    return RawData(x=x, y=None, kind="text", vocab=_vocab(x))


def _vocab(strings: np.ndarray) -> tuple[str, ...]:
    return tuple(sorted(set("".join(strings.tolist()))))


def encode(strings: list[str] | np.ndarray, spec: DataSpec) -> np.ndarray:
    """Token ids (N, T) int64 of ``BOS chars EOS PAD..``; ``T = spec.shape[0] + 2``."""
    ids = {c: i + len(SPECIALS) for i, c in enumerate(spec.vocab)}
    max_len = spec.shape[0]
    out = np.full((len(strings), max_len + 2), PAD, dtype=np.int64)  # (N, T)
    for row, s in enumerate(strings):
        s = str(s)
        if len(s) > max_len:
            raise DataError(f"expected strings of at most {max_len} characters, got {len(s)} in {s!r}")
        unknown = sorted(set(s) - ids.keys())
        if unknown:
            raise DataError(f"expected characters of the dataset's vocabulary, got {unknown} in {s!r}")
        out[row, 0] = BOS
        out[row, 1 : len(s) + 1] = [ids[c] for c in s]
        out[row, len(s) + 1] = EOS
    return out


def decode(ids: np.ndarray | list[list[int]], spec: DataSpec) -> list[str]:
    """Strings from token ids (N, T): a leading BOS is skipped, each row stops at its first EOS or PAD."""
    chars = dict(enumerate(spec.vocab, start=len(SPECIALS)))
    out = []
    for row in np.asarray(ids).tolist():
        s = []
        for t in row[1:] if row and row[0] == BOS else row:
            if t in (EOS, PAD):
                break
            if t not in chars:
                raise DataError(f"expected token ids of characters, EOS or PAD, got {t} in {row}")
            s.append(chars[t])
        out.append("".join(s))
    return out
