"""One experiment's reports in one JSON-able dict: the input of the leaderboard (stage ``summary@EXP``).

Kept apart from :mod:`components.reporting.leaderboard` so that the per-experiment stage needs no pandas.
"""

from __future__ import annotations

import base64
from collections.abc import Mapping
from typing import Any

FIGURES = ("samples", "spectrograms")  # eval pictures embedded in the HTML (the others stay in reports/<exp>/eval/)
SAMPLE_TEXT_LINES = 24
AUDIO_CLIPS = 4  # audio: WAV samples embedded in the HTML as <audio> players


def bundle(
    experiment: str,
    eval_metrics: Mapping[str, Any],
    audit: Mapping[str, Any],
    registry: Mapping[str, Any],
    *,
    figures: Mapping[str, bytes] | None = None,
    sample_text: str | None = None,
    audio: Mapping[str, bytes] | None = None,
) -> dict[str, Any]:
    """One experiment's reports as one JSON-able dict (the ``summary@EXP`` stage's output).

    ``figures`` maps eval picture names to PNG bytes (only :data:`FIGURES` are kept, base64-encoded);
    ``sample_text`` is the text of ``samples.txt`` (its first lines are kept); ``audio`` maps WAV sample names
    to their bytes (the first :data:`AUDIO_CLIPS`, base64-encoded).
    """
    for name, part in (("eval.json", eval_metrics), ("audit.json", audit), ("registry.json", registry)):
        if not isinstance(part, Mapping):
            raise ValueError(f"{experiment}'s {name}: expected a JSON object, got {type(part).__name__}")
    pictures = {k: base64.b64encode(v).decode("ascii") for k, v in (figures or {}).items() if k in FIGURES}
    lines = sample_text.splitlines()[:SAMPLE_TEXT_LINES] if sample_text else []
    return {
        "experiment": experiment,
        "eval": dict(eval_metrics),
        "audit": dict(audit),
        "registry": dict(registry),
        "figures": pictures,
        "sample_text": lines,
        "audio": {k: base64.b64encode(v).decode("ascii") for k, v in sorted((audio or {}).items())[:AUDIO_CLIPS]},
    }
