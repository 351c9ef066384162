"""Why a conditional WaveNet's timbres fail the audit: the timbre asked for vs the one heard, and the spectra.

    python benchmarks/wavenet_timbre.py                                  # models/wavenet_notes, after dvc repro
    python benchmarks/wavenet_timbre.py --model models/wavenet_notes --n 24 --temperature 0.7 1.0

Needs a trained ``condition_on: [timbre]`` WaveNet (``--model``, a models/<experiment> folder), the prepared
notes test split and the features stage's audio classifier (``data/features/notes``). For every timbre and
temperature it draws ``--n`` clips asked for that timbre (seed ``--seed``) and reports:

- the confusion of the classifier's timbre head (asked -> heard) and the share heard as asked;
- per timbre, the median spectral shape of the generated clips and of the real test clips of that timbre
  (``components.evaluation.pitch.harmonic_profile`` around the strongest partial, the fundamental of every
  notes timbre): harmonics 2-5 relative to the
  fundamental, and the noise floor (the power between the harmonics relative to the total). A noise floor far
  above the data's is the signature of samples whose per-step distribution is too wide: the harmonics that set
  the timbres apart drown in it.

Writes ``--out``.json and ``--out``.md (platform block of benchmarks/_report.py, load average included).
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

import numpy as np
import torch
from _report import Run

from components.data.audio import TIMBRES
from components.evaluation.audio_features import load_audio_classifier
from components.evaluation.pitch import harmonic_profile
from components.models.store import load_trained


def spectral_shape(clips: np.ndarray, sample_rate: int) -> dict[str, Any]:
    """Medians over clips (N, 1, T) of ``harmonic_profile`` at each clip's strongest partial (silent clips left
    out)."""
    levels, floor = harmonic_profile(clips, sample_rate)
    ok = np.isfinite(floor)
    med = np.nanmedian(levels[ok], axis=0) if ok.any() else np.full(levels.shape[1], np.nan)
    return {
        "harmonics_2_5_db": [None if np.isnan(v) else round(float(v), 1) for v in med],
        "noise_floor_db": round(float(np.median(floor[ok])), 1) if ok.any() else None,
        "clips_with_f0": int(ok.sum()),
    }


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default="models/wavenet_notes", help="a trained WaveNet's models/<experiment> folder")
    p.add_argument("--data", default="data/prepared/notes/test.npz", help="the real clips (prepared notes split)")
    p.add_argument("--classifier", default="data/features/notes", help="the features stage's audio classifier")
    p.add_argument("--n", type=int, default=24, help="clips per asked timbre and temperature")
    p.add_argument("--temperature", type=float, nargs="+", default=[0.7, 1.0])
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--out", default="reports/benchmarks/wavenet_timbre", help="writes <out>.json and <out>.md")
    args = p.parse_args()
    run = Run(args.out)
    model, clf = load_trained(args.model), load_audio_classifier(args.classifier)
    if "timbre" not in model.batch_attributes:
        raise SystemExit(f"{args.model}: expected a WaveNet with condition_on: [timbre], got {model.batch_attributes}")
    sample_rate = model.spec.extras["sample_rate"]
    with np.load(Path(args.data), allow_pickle=False) as z:
        real, real_timbre = z["x"], z["attr_timbre"]
    heard_real = clf.predict(torch.from_numpy(real), head="timbre").numpy()
    report: dict[str, Any] = {
        "model": args.model,
        "n": args.n,
        "seed": args.seed,
        "real": {t: spectral_shape(real[real_timbre == k], sample_rate) for k, t in enumerate(TIMBRES)},
        "real_heard_as_asked": float(np.mean(heard_real == real_timbre)),
        "generated": {},
    }
    for temperature in args.temperature:
        g = torch.Generator().manual_seed(args.seed)
        rows, shapes = {}, {}
        for k, t in enumerate(TIMBRES):
            clips = model.sample(args.n, generator=g, attributes={"timbre": k}, temperature=temperature)
            heard = clf.predict(clips, head="timbre").numpy()
            rows[t] = np.bincount(heard, minlength=len(TIMBRES)).tolist()
            shapes[t] = spectral_shape(clips.numpy(), sample_rate)
            print(f"T {temperature}: asked {t} -> heard {dict(zip(TIMBRES, rows[t], strict=True))}")
        hits = sum(rows[t][k] for k, t in enumerate(TIMBRES))
        report["generated"][str(temperature)] = {
            "confusion": rows,
            "heard_as_asked": round(hits / (args.n * len(TIMBRES)), 4),
            "spectra": shapes,
        }
    md = markdown(report)
    print(md)
    run.write(report, md)
    return 0


def markdown(r: dict[str, Any]) -> str:
    lines = [
        f"# WaveNet timbre: asked vs heard ({r['model']}, {r['n']} clips per timbre, seed {r['seed']})",
        "",
        f"Real test clips heard as their timbre: {r['real_heard_as_asked']:.3f}.",
        "",
    ]
    for temperature, g in r["generated"].items():
        lines += [
            f"## Temperature {temperature}: heard as asked {g['heard_as_asked']:.3f}",
            "",
            "| asked | "
            + " | ".join(f"heard {t}" for t in TIMBRES)
            + " | h2..h5 dB (gen / real) | floor dB (gen / real) |",
            "|---|" + "---|" * len(TIMBRES) + "---|---|",
        ]
        for t in TIMBRES:
            gen, real = g["spectra"][t], r["real"][t]
            lines.append(
                f"| {t} | "
                + " | ".join(str(c) for c in g["confusion"][t])
                + f" | {gen['harmonics_2_5_db']} / {real['harmonics_2_5_db']}"
                + f" | {gen['noise_floor_db']} / {real['noise_floor_db']} |"
            )
        lines.append("")
    return "\n".join(lines)


if __name__ == "__main__":
    raise SystemExit(main())
