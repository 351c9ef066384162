"""Copy one `dvc repro`'s results into ``benchmarks/results/``: what the issues ask to commit from a clean clone.

    python benchmarks/pipeline_profile.py --out benchmarks/results/pipeline_profile   # runs dvc repro
    python benchmarks/collect_pipeline.py                                            # then this

Writes, from the workspace's ``reports/`` (nothing is recomputed):

- ``pipeline_leaderboard.md``: the report stage's ``reports/leaderboard.md``;
- ``pipeline_leaderboard.json``: per experiment (params.yaml order) its family, dataset, and the train, eval,
  audit and registry reports as the stages wrote them (``train.json``, ``eval_details.json``,
  ``audit_details.json``, ``registry.json``);
- ``pipeline/<experiment>_samples.png``: the sample grid the evaluate stage writes;
- ``audio/<experiment>_<i>.wav`` (the first ``--wavs``) and ``audio/<experiment>_spectrograms.png`` for audio
  experiments.
"""

from __future__ import annotations

import argparse
import shutil
from pathlib import Path

from components.config import load_params
from components.io import read_json, write_json
from components.layout import AUDIT_DETAILS, EVAL_DETAILS, LEADERBOARD_MD, eval_dir, report_file


def collect(out: Path, *, wavs: int) -> dict:
    """The leaderboard JSON (also written to ``out``), after copying the figures and clips."""
    p = load_params()
    (out / "pipeline").mkdir(parents=True, exist_ok=True)
    shutil.copyfile(LEADERBOARD_MD, out / "pipeline_leaderboard.md")
    board = {}
    for key, exp in p.experiments.items():
        reports = {}
        for part, name in (("train", "train.json"), ("eval", EVAL_DETAILS), ("audit", AUDIT_DETAILS)):
            reports[part] = read_json(report_file(key, name))
        reports["registry"] = read_json(report_file(key, "registry.json"))
        board[key] = {"family": exp.family, "dataset": exp.dataset, **reports}
        figures = eval_dir(key)
        if (figures / "samples.png").exists():
            shutil.copyfile(figures / "samples.png", out / "pipeline" / f"{key}_samples.png")
        clips = sorted(figures.glob("sample_*.wav"), key=lambda f: int(f.stem.split("_")[1]))[:wavs]
        if clips:
            (out / "audio").mkdir(exist_ok=True)
            for i, clip in enumerate(clips):
                shutil.copyfile(clip, out / "audio" / f"{key}_{i}.wav")
            if (figures / "spectrograms.png").exists():
                shutil.copyfile(figures / "spectrograms.png", out / "audio" / f"{key}_spectrograms.png")
    write_json(out / "pipeline_leaderboard.json", board)
    return board


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=Path("benchmarks/results"))
    ap.add_argument("--wavs", type=int, default=4, help="clips copied per audio experiment")
    args = ap.parse_args()
    board = collect(args.out, wavs=args.wavs)
    print(f"collected {len(board)} experiments into {args.out}")


if __name__ == "__main__":
    main()
