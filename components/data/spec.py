"""What a prepared dataset looks like to the models: the contract between prepare and train."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

import numpy as np

Kind = Literal["image", "points", "text", "audio"]
#: what each dataset source yields (an npz holds images (N, H, W) / (N, C, H, W) or points (N, D))
SOURCE_KINDS: dict[str, tuple[Kind, ...]] = {
    "digits": ("image",),
    "mnist5k": ("image",),
    "imagefolder": ("image",),
    "npz": ("image", "points"),
    "ring8": ("points",),
    "grid25": ("points",),
    "names": ("text",),
    "surnames": ("text",),
    "textfile": ("text",),
    "notes": ("audio",),
    "audiofolder": ("audio",),
    "synthetic": ("image",),
}


@dataclass(frozen=True)
class DataSpec:
    """Shape and semantics of one prepared dataset.

    - image: ``x`` is float32 (N, C, H, W) in [0, 1]; ``levels`` intensity levels (17 for digits, 256 MNIST).
    - points: ``x`` is float32 (N, D).
    - text: ``x`` is a unicode array of strings; ``vocab`` lists the characters (token ids start after the
      special tokens, see ``components.data.text``).
    - audio: ``x`` is float32 (N, C, T) waveforms in [-1, 1] (C = 1: mono) at ``extras["sample_rate"]``.
    ``labels`` are the attribute the audit uses (class, mode, gender, pitch class); ``class_names[i]`` names label
    ``i``. ``attributes`` names further per-sample labels saved beside ``y`` (the notes' ``timbre``): attribute ->
    the names of its values.
    """

    name: str
    kind: Kind
    shape: tuple[int, ...]
    class_names: tuple[str, ...] = ()
    levels: int | None = None
    vocab: tuple[str, ...] = ()
    extras: dict[str, Any] = field(default_factory=dict)
    attributes: dict[str, tuple[str, ...]] = field(default_factory=dict)

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["shape"] = list(self.shape)
        d["class_names"] = list(self.class_names)
        d["vocab"] = list(self.vocab)
        if self.attributes:
            d["attributes"] = {k: list(v) for k, v in self.attributes.items()}
        else:  # datasets without attributes keep the manifest they always had
            d.pop("attributes")
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> DataSpec:
        return cls(
            name=d["name"],
            kind=d["kind"],
            shape=tuple(d["shape"]),
            class_names=tuple(d.get("class_names", ())),
            levels=d.get("levels"),
            vocab=tuple(d.get("vocab", ())),
            extras=dict(d.get("extras", {})),
            attributes={k: tuple(v) for k, v in d.get("attributes", {}).items()},
        )


@dataclass
class RawData:
    """A dataset as a source loads it, before splitting: ``x`` and optional labels ``y`` (int64, -1 = none);
    ``attributes``: further per-sample labels, name -> (int64 (N,) ids, the names of the ids)."""

    x: np.ndarray
    y: np.ndarray | None
    kind: Kind
    class_names: tuple[str, ...] = ()
    levels: int | None = None
    vocab: tuple[str, ...] = ()
    extras: dict[str, Any] = field(default_factory=dict)
    attributes: dict[str, tuple[np.ndarray, tuple[str, ...]]] = field(default_factory=dict)


@dataclass
class RawChunks:
    """A dataset a source yields chunk by chunk, for data larger than memory (``prepare_streamed``): ``chunks``
    yields ``(x, y)`` pairs of a few MiB each (``x`` float32 (m, *shape), ``y`` int64 (m,), -1 = no label), ``n``
    rows in all; iterating it a second time starts again from the first chunk. No text (its shape, the longest
    string, is only known at the end) and no attributes."""

    chunks: Iterable[tuple[np.ndarray, np.ndarray]]
    n: int
    kind: Kind
    shape: tuple[int, ...]
    class_names: tuple[str, ...] = ()
    levels: int | None = None
    extras: dict[str, Any] = field(default_factory=dict)
