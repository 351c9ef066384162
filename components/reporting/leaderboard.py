"""The leaderboard: every experiment's evaluation, audit and registry decision in one markdown page and one
self-contained HTML page (tables from pandas, sample grids embedded as base64 PNG).

Pure functions. ``summary.bundle`` packs one experiment's reports (``reports/<exp>/eval.json``,
``audit.json``, ``registry.json``, the eval pictures) into one JSON-able dict; :func:`entry` adds what
params.yaml says about the experiment; the ``*_table`` functions turn entries into ``pandas.DataFrame`` s
of display strings; and :func:`leaderboard_markdown` / :func:`leaderboard_html` render them. Sections:

- overview: family, dataset, selection metric, audit verdict, registry decision (champion or not);
- images: FID with its 95% interval beside the real-vs-real floor (train vs test) and its interval, KID,
  precision / recall / density / coverage, FID and its floor in the label-free SimCLR space (when the
  dataset has an encoder), N generated / N real;
- memorization (domain classifier features) and the data-augmentation utility;
- likelihood: one table for every family that defines one, with its unit and whether it is exact or a bound;
- mode collapse on 2-D mixtures beside the published PacGAN Table 1 rows;
- text: held-out NLL vs the bigram baseline, novelty, diversity;
- samples and protocol cards.
"""

from __future__ import annotations

import html
import json
import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import pandas as pd

from components.models.family import FAMILIES
from components.reporting.published import PACGAN_TABLE1
from components.reporting.summary import FIGURES, SAMPLE_TEXT_LINES, bundle

__all__ = ["FIGURES", "SAMPLE_TEXT_LINES", "Entry", "bundle", "entry", "leaderboard_html", "leaderboard_markdown"]


@dataclass(frozen=True)
class Entry:
    """One experiment on the leaderboard: its params and its reports."""

    experiment: str
    family: str
    dataset: str
    selection_metric: str
    selection_mode: str
    eval: dict[str, Any]
    audit: dict[str, Any]
    registry: dict[str, Any]
    model: dict[str, Any] = field(default_factory=dict)  # the family's hyperparameters (PixelCNN levels, ...)
    figures: dict[str, str] = field(default_factory=dict)  # name -> base64 PNG
    sample_text: list[str] = field(default_factory=list)
    audio: dict[str, str] = field(default_factory=dict)  # name -> base64 WAV

    @property
    def kind(self) -> str:
        if "fid" in self.eval:
            return "image"
        if "modes_captured" in self.eval:
            return "points"
        if "clear_pitch_share" in self.eval:
            return "audio"
        return "text"


def entry(
    summary: Mapping[str, Any],
    *,
    family: str,
    dataset: str,
    selection: tuple[str, str],
    model: Mapping[str, Any] | None = None,
) -> Entry:
    """A bundle plus the experiment's params (family, dataset, selection metric and mode, hyperparameters)."""
    return Entry(
        experiment=summary["experiment"],
        family=family,
        dataset=dataset,
        selection_metric=selection[0],
        selection_mode=selection[1],
        eval=summary["eval"],
        audit=summary["audit"],
        registry=summary["registry"],
        model=dict(model or {}),
        figures=dict(summary.get("figures", {})),
        sample_text=list(summary.get("sample_text", [])),
        audio=dict(summary.get("audio", {})),
    )


# ---------------------------------------------------------------------------------------------- formatting


def fmt(v: Any, digits: int = 4) -> str:
    """A cell: numbers to ``digits`` significant digits, None / NaN as an en dash."""
    if v is None or (isinstance(v, float) and not math.isfinite(v)):
        return "–"
    if isinstance(v, bool):
        return "yes" if v else "no"
    if isinstance(v, int):
        return str(v)
    if isinstance(v, float):
        return f"{v:.{digits}g}"
    return str(v)


def with_ci(value: Any, ci: Any, digits: int = 4) -> str:
    """``value [lo, hi]`` (the interval only when there is one)."""
    if isinstance(ci, list | tuple) and len(ci) == 2:
        return f"{fmt(value, digits)} [{fmt(ci[0], digits)}, {fmt(ci[1], digits)}]"
    return fmt(value, digits)


def _get(d: Mapping[str, Any], *path: str) -> Any:
    for key in path:
        if not isinstance(d, Mapping) or key not in d:
            return None
        d = d[key]
    return d


def _frame(rows: list[dict[str, Any]], columns: list[str]) -> pd.DataFrame:
    return pd.DataFrame(rows, columns=columns).fillna("–")


# -------------------------------------------------------------------------------------------------- tables


def champion_cell(registry: Mapping[str, Any]) -> str:
    """``champion (v3)``, or ``not champion (v3; champion stays v2: reason)``, or ``not registered``."""
    version = registry.get("version")
    if version is None:
        return "not registered"
    if "champion" in registry.get("aliases", []) or registry.get("promoted"):
        return f"champion (v{version})"
    before = registry.get("champion_before")
    stays = f"; champion stays v{before}" if before else ""
    return f"not champion (v{version}{stays}: {registry.get('reason', 'no reason recorded')})"


def audit_cell(audit: Mapping[str, Any]) -> str:
    if not audit:
        return "–"
    return "passed" if audit.get("passed") else "FAILED: " + "; ".join(audit.get("failed", []))


def overview_table(entries: Iterable[Entry]) -> pd.DataFrame:
    rows = []
    for e in entries:
        value = e.eval.get(e.selection_metric)
        rows.append(
            {
                "experiment": e.experiment,
                "family": e.family,
                "dataset": e.dataset,
                "selection": f"{e.selection_metric} ({e.selection_mode}) = {fmt(value)}",
                "audit": audit_cell(e.audit),
                "registry": champion_cell(e.registry),
                "parent": parent_cell(e.registry),
            }
        )
    return _frame(rows, ["experiment", "family", "dataset", "selection", "audit", "registry", "parent"])


def parent_cell(registry: Mapping[str, Any]) -> str:
    """The model a transfer-learning run started from (``train.init_from``), or an en dash."""
    parent = registry.get("parent")
    if not parent:
        return "–"
    name = f"{parent.get('model')} v{parent['version']}" if parent.get("version") else str(parent.get("model"))
    frozen = f", {len(parent.get('frozen') or [])} frozen" if parent.get("frozen") else ""
    return f"{name} ({parent.get('loaded')} tensors{frozen}; sha256 {str(parent.get('weights_sha256'))[:12]})"


def image_table(entries: Iterable[Entry]) -> pd.DataFrame:
    """FID [95% CI] beside the real-vs-real floor [95% CI], KID, PRDC, the SimCLR-space FID / floor, N."""
    rows = []
    for e in entries:
        if e.kind != "image":
            continue
        m, p = e.eval, e.eval.get("protocol", {})
        rows.append(
            {
                "experiment": e.experiment,
                "FID [95% CI]": with_ci(m.get("fid"), m.get("fid_ci95")),
                "floor: train vs test [95% CI]": with_ci(
                    m.get("fid_floor_train_vs_test"), m.get("fid_floor_train_vs_test_ci95")
                ),
                "KID": fmt(m.get("kid")),
                "KID floor": fmt(m.get("kid_floor_train_vs_test")),
                "precision": fmt(m.get("precision")),
                "recall": fmt(m.get("recall")),
                "density": fmt(m.get("density")),
                "coverage": fmt(m.get("coverage")),
                "fid_simclr / floor": _simclr_cell(m.get("simclr")),
                "classes": fmt(m.get("classes_present")),
                "N gen / real": f"{fmt(p.get('n_generated'))} / {fmt(p.get('n_real'))}",
                "samples/s": fmt(m.get("samples_per_s"), 3),
            }
        )
    columns = ["experiment", "FID [95% CI]", "floor: train vs test [95% CI]", "KID", "KID floor", "precision",
               "recall", "density", "coverage", "fid_simclr / floor", "classes", "N gen / real",
               "samples/s"]  # fmt: skip
    return _frame(rows, columns)


def _simclr_cell(simclr: Any) -> str:
    """``FID / floor`` in the SimCLR encoder's space (eval.json ``simclr``); an en dash without an encoder."""
    if not isinstance(simclr, Mapping):
        return "–"
    return f"{fmt(simclr.get('fid'))} / {fmt(simclr.get('fid_floor_train_vs_test'))}"


def memorization_table(entries: Iterable[Entry]) -> pd.DataFrame:
    """C_T, authenticity, NN-ratio rate, NN distances (domain classifier features); the audit's pixel rate."""
    rows = []
    for e in entries:
        mem = e.eval.get("memorization")
        if e.kind != "image" or not mem:
            continue
        rows.append(
            {
                "experiment": e.experiment,
                "C_T (≪0 copying)": fmt(mem.get("c_t"), 3),
                "authenticity": fmt(mem.get("authenticity"), 3),
                "NN-ratio memorized": fmt(mem.get("nn_ratio_memorized"), 3),
                "closer to train than test": fmt(mem.get("closer_to_train_share"), 3),
                "NN dist. to train (median)": fmt(mem.get("nn_train_median"), 3),
                "test→train NN dist. (median)": fmt(mem.get("test_nn_train_median"), 3),
                "audit: memorized (pixels)": fmt(e.audit.get("memorization_rate"), 3),
            }
        )
    columns = ["experiment", "C_T (≪0 copying)", "authenticity", "NN-ratio memorized", "closer to train than test",
               "NN dist. to train (median)", "test→train NN dist. (median)", "audit: memorized (pixels)"]  # fmt: skip
    return _frame(rows, columns)


def augmentation_table(entries: Iterable[Entry]) -> pd.DataFrame:
    """Test accuracy of a small classifier trained on real vs real + generated (pseudo-labelled) images."""
    rows = []
    for e in entries:
        aug = e.eval.get("augmentation")
        if not aug:
            continue
        rows.append(
            {
                "experiment": e.experiment,
                "accuracy: real": fmt(aug.get("acc_real")),
                "accuracy: real + generated": fmt(aug.get("acc_real_plus_generated")),
                "Δ [95% CI]": with_ci(aug.get("delta"), aug.get("delta_ci95"), 3),
                "N real / generated": f"{fmt(aug.get('n_real'))} / {fmt(aug.get('n_generated'))}",
            }
        )
    return _frame(
        rows, ["experiment", "accuracy: real", "accuracy: real + generated", "Δ [95% CI]", "N real / generated"]
    )


UNITS = {
    "_bits_per_dim": "bits/dim",
    "_bpd": "bits/dim",
    "_nats_per_char": "nats/char",
    "_bits_per_sample": "bits/sample",
    "_nats": "nats",
}


def _likelihood_unit(k: str) -> str | None:
    """The unit of a held-out likelihood key of eval.json (``test_nll_bits_per_dim``, ...), else None."""
    if not (k.startswith("test_") and any(t in k for t in ("nll", "nelbo", "bpd"))):
        return None
    return next((unit for suffix, unit in UNITS.items() if k.endswith(suffix)), None)


def _likelihood_facts(family: str, metric: str) -> tuple[str, str, str]:
    """(unit, exact or bound, data model) of a likelihood number, from the family's record."""
    record = FAMILIES.get(family)
    for fact in record.likelihood if record else ():
        if fact.metric == metric:
            return fact.unit, fact.exactness, fact.data_model
    return _likelihood_unit(metric) or "–", "as reported", "–"


def likelihood_table(entries: Iterable[Entry]) -> pd.DataFrame:
    """One row per likelihood number of eval.json (``test_nll_*``, ``test_nelbo_*``, ``*bpd*``), with its unit,
    whether it is exact or a bound, and the data model it refers to; one row for families with none."""
    rows = []
    for e in entries:
        keys = sorted(k for k, v in e.eval.items() if _likelihood_unit(k) and isinstance(v, int | float))
        for k in keys:
            unit, kind, model = _likelihood_facts(e.family, k)
            levels = e.model.get("levels") or _get(e.eval, "protocol", "levels") or "the dataset's"
            bigram = fmt(e.eval.get("bigram_nll_nats_per_char"))
            rows.append(
                {
                    "experiment": e.experiment,
                    "family": e.family,
                    "dataset": e.dataset,
                    "metric": k,
                    "value": fmt(e.eval[k]),
                    "unit": unit,
                    "exact / bound": kind,
                    "data model": model.format(levels=levels, bigram=bigram),
                }
            )
        if not keys:
            rows.append(
                {
                    "experiment": e.experiment,
                    "family": e.family,
                    "dataset": e.dataset,
                    "metric": "–",
                    "value": "–",
                    "unit": "–",
                    "exact / bound": FAMILIES[e.family].no_likelihood
                    if e.family in FAMILIES
                    else "none: the family defines no likelihood",
                    "data model": "–",
                }
            )
    return _frame(rows, ["experiment", "family", "dataset", "metric", "value", "unit", "exact / bound", "data model"])


def mode_collapse_table(entries: Iterable[Entry]) -> pd.DataFrame:
    """2-D experiments (modes captured, % high quality, reverse KL) with the PacGAN Table 1 rows of their
    mixture below them. Ours are single runs of one seed; PacGAN's are 10 trials, mean ± s.e."""
    rows, mixtures = [], []
    for e in entries:
        if e.kind != "points":
            continue
        p = e.eval.get("protocol", {})
        mixture = p.get("mixture")
        rows.append(
            {
                "model": e.experiment,
                "source": f"this pipeline ({e.family}, seed {p.get('seed', '–')}, N {p.get('n_generated', '–')})",
                "mixture": mixture or f"custom ({p.get('num_modes', '?')} modes)",
                "modes": f"{fmt(e.eval.get('modes_captured'))} / {fmt(p.get('num_modes'))}",
                "% high quality": fmt(e.eval.get("pct_high_quality"), 3),
                "reverse KL": fmt(e.eval.get("reverse_kl"), 3),
            }
        )
        if mixture and mixture not in mixtures:
            mixtures.append(mixture)
    for mixture in mixtures:
        for name, published in PACGAN_TABLE1.items():
            if mixture in published:
                modes, hq, rkl = published[mixture]
                rows.append(
                    {
                        "model": name,
                        "source": "PacGAN Table 1 (arXiv 1712.04086), 10 trials",
                        "mixture": mixture,
                        "modes": modes,
                        "% high quality": hq,
                        "reverse KL": rkl,
                    }
                )
    return _frame(rows, ["model", "source", "mixture", "modes", "% high quality", "reverse KL"])


def text_table(entries: Iterable[Entry]) -> pd.DataFrame:
    rows = []
    for e in entries:
        if e.kind != "text":
            continue
        m = e.eval
        rows.append(
            {
                "experiment": e.experiment,
                "test NLL (nats/char)": fmt(m.get("test_nll_nats_per_char")),
                "bigram NLL": fmt(m.get("bigram_nll_nats_per_char")),
                "perplexity": fmt(m.get("perplexity")),
                "new / in train / in test": " / ".join(
                    fmt(m.get(k), 3) for k in ("novelty_new", "novelty_in_train", "novelty_in_test")
                ),
                "unique": fmt(m.get("uniqueness"), 3),
                "distinct-2": fmt(m.get("distinct_2"), 3),
            }
        )
    columns = ["experiment", "test NLL (nats/char)", "bigram NLL", "perplexity", "new / in train / in test", "unique",
               "distinct-2"]  # fmt: skip
    return _frame(rows, columns)


def audio_table(entries: Iterable[Entry]) -> pd.DataFrame:
    rows = []
    for e in entries:
        if e.kind != "audio":
            continue
        m = e.eval
        rows.append(
            {
                "experiment": e.experiment,
                "clear pitch": f"{fmt(m.get('clear_pitch_share'), 3)} (real {fmt(m.get('real_clear_pitch_share'), 3)})",
                "pitch classes": f"{fmt(m.get('pitch_modes_covered'))}/12",
                "KL to data": f"{fmt(m.get('pitch_kl_to_data'), 3)} (real {fmt(m.get('real_pitch_kl_to_data'), 3)})",
                "FAD / floor": f"{fmt(m.get('fad'))} / {fmt(m.get('fad_floor_train_vs_test'))}",
                "recall / coverage": f"{fmt(m.get('recall'), 3)} / {fmt(m.get('coverage'), 3)}",
                "test NLL (bits/sample)": fmt(m.get("test_nll_bits_per_sample")),
                "unigram / linear prediction": " / ".join(
                    fmt(m.get(k)) for k in ("unigram_nll_bits_per_sample", "lpc_nll_bits_per_sample")
                ),
                "samples/s": fmt(m.get("samples_per_s"), 3),
            }
        )
    columns = ["experiment", "clear pitch", "pitch classes", "KL to data", "FAD / floor", "recall / coverage",
               "test NLL (bits/sample)", "unigram / linear prediction", "samples/s"]  # fmt: skip
    return _frame(rows, columns)


def audit_table(entries: Iterable[Entry]) -> pd.DataFrame:
    """Gates (value vs threshold), fairness discrepancy, per-group quality gap and memorization, decision."""
    rows = []
    for e in entries:
        a = e.audit
        gates = "; ".join(
            f"{g} {fmt(r.get('value'), 3)} ≤ {fmt(r.get('threshold'), 3)}: {'ok' if r.get('passed') else 'FAILED'}"
            for g, r in a.get("gates", {}).items()
        )
        rows.append(
            {
                "experiment": e.experiment,
                "attribute": fmt(a.get("attribute")),
                "FD L2": fmt(a.get("fd_l2"), 3),
                "amplification": fmt(a.get("amplification"), 3),
                "quality gap": fmt(a.get("quality_gap"), 3),
                "memorized (pixels)": fmt(a.get("memorization_rate"), 3),
                "gates": gates or "–",
                "verdict": audit_cell(a),
                "registry": champion_cell(e.registry),
            }
        )
    columns = ["experiment", "attribute", "FD L2", "amplification", "quality gap", "memorized (pixels)", "gates",
               "verdict", "registry"]  # fmt: skip
    return _frame(rows, columns)


def protocol_card(e: Entry) -> pd.DataFrame:
    """The protocol card of eval.json (extractor, N, split, sampler, seeds, ...) as key/value rows."""
    items = [(k, v) for k, v in sorted(e.eval.get("protocol", {}).items())]
    for section, key in (("memorization", "space"), ("augmentation", "classifier")):
        if _get(e.eval, section, key):
            items.append((f"{section}.{key}", e.eval[section][key]))
    rows = [{"field": k, "value": v if isinstance(v, str) else json.dumps(v, sort_keys=True)} for k, v in items]
    return _frame(rows, ["field", "value"])


# ---------------------------------------------------------------------------------------------- rendering


def markdown_table(df: pd.DataFrame) -> str:
    """A GitHub-flavoured markdown table (no dependency on ``tabulate``)."""

    def cell(v: Any) -> str:
        return str(v).replace("|", "\\|").replace("\n", " ")

    lines = ["| " + " | ".join(cell(c) for c in df.columns) + " |", "|" + "---|" * len(df.columns)]
    lines += ["| " + " | ".join(cell(v) for v in row) + " |" for row in df.itertuples(index=False)]
    return "\n".join(lines)


NOTES = {
    "images": "FID in the domain classifier's features (64-D, not Inception: docs/protocols.md §3.1); lower is better. "
    "The floor is the FID of real training images vs the real test split, the best a model can hope for at this N. "
    "Intervals: centred bootstrap over test and generated features (components/evaluation/frechet.py); FID is "
    "biased upwards at small N, so compare experiments at the same N. fid_simclr / floor: the same FID and floor "
    "in a label-free SimCLR encoder's features (components/evaluation/simclr.py); its scale is its own.",
    "memorization": "Generated vs train vs test in the domain classifier's features (docs/protocols.md §4): C_T ≪ 0 "
    "means copying, ≫ 0 underfitting; authenticity is the share of samples farther from their nearest training "
    "image than it is from its own nearest neighbour; NN-ratio memorized: ‖x − NN₁‖ / ‖x − NN₂‖ < 1/3.",
    "augmentation": "A small MLP trained on the real training split vs the real split plus the generated images "
    "labelled by the domain classifier, both scored on the real test split (same seed and steps); Δ > 0: "
    "the samples help as training data.",
    "likelihood": "Only numbers with the same unit, bound type and data model compare: bits/dim at 4 levels "
    "(PixelCNN) and at 256 levels (diffusion) are different quantities.",
    "audio": "Pitch by YIN (no learned classifier): the share of samples with a clear pitch, the pitch classes "
    "covered of 12 and the KL of their histogram to the data's, beside the same numbers for real test clips; the "
    "exact NLL in bits per mu-law sample beside a 256-level unigram and an order-16 linear-prediction model "
    "fitted on the train split in the same run; FAD-style Fréchet distance, recall and coverage in the audio domain "
    "classifier's features (not VGGish: docs/protocols.md §11).",
    "modes": "2-D mixtures (docs/protocols.md §1): 2,500 samples, high quality within 3σ of a mean, reverse KL over "
    "the high-quality histogram. Ours are one seed; PacGAN's rows use its own networks and 10 trials.",
}


def _sections(entries: list[Entry]) -> list[tuple[str, str, pd.DataFrame]]:
    """(title, note, table) of each non-empty section, in page order."""
    parts = [
        ("Overview", "", overview_table(entries)),
        ("Image quality", NOTES["images"], image_table(entries)),
        ("Memorization", NOTES["memorization"], memorization_table(entries)),
        ("Data-augmentation utility", NOTES["augmentation"], augmentation_table(entries)),
        ("Likelihood", NOTES["likelihood"], likelihood_table(entries)),
        ("Mode collapse (2-D mixtures)", NOTES["modes"], mode_collapse_table(entries)),
        ("Text", "", text_table(entries)),
        ("Audio", NOTES["audio"], audio_table(entries)),
        ("Audit and registry", "", audit_table(entries)),
    ]
    return [(t, n, df) for t, n, df in parts if len(df)]


def _check(entries: list[Entry]) -> list[Entry]:
    if not entries:
        raise ValueError("leaderboard: expected at least one experiment, got none")
    return sorted(entries, key=lambda e: e.experiment)


def leaderboard_markdown(entries: Iterable[Entry], *, figure_path: str = "{experiment}/eval/{name}.png") -> str:
    """The leaderboard as markdown; sample grids are links (``figure_path``, relative to the markdown file)."""
    es = _check(list(entries))
    lines = ["# Leaderboard", "", f"{len(es)} experiments: " + ", ".join(e.experiment for e in es) + ".", ""]
    for title, note, df in _sections(es):
        lines += [f"## {title}", ""] + ([note, ""] if note else []) + [markdown_table(df), ""]
    lines += ["## Samples", ""]
    for e in es:
        lines += [f"### {e.experiment}", ""]
        lines += [f"![{e.experiment} {n}]({figure_path.format(experiment=e.experiment, name=n)})" for n in e.figures]
        if e.sample_text:
            lines += ["```", *e.sample_text, "```"]
        wav_path = figure_path.removesuffix(".png") + ".wav"
        lines += [f"[{e.experiment} {n}.wav]({wav_path.format(experiment=e.experiment, name=n)})" for n in e.audio]
        lines.append("")
    lines += ["## Protocol cards", ""]
    for e in es:
        lines += [f"### {e.experiment}", "", markdown_table(protocol_card(e)), ""]
    return "\n".join(lines).rstrip() + "\n"


_CSS = """
body { font-family: system-ui, sans-serif; margin: 2em; color: #222; }
table { border-collapse: collapse; margin: 0.5em 0 1.5em; font-size: 0.9em; }
th, td { border: 1px solid #ccc; padding: 0.25em 0.6em; text-align: left; vertical-align: top; }
th { background: #f0f0f0; }
p.note { color: #555; max-width: 70em; }
figure { display: inline-block; margin: 0 1em 1em 0; }
pre { background: #f7f7f7; padding: 0.5em; display: inline-block; }
"""


def leaderboard_html(entries: Iterable[Entry]) -> str:
    """The leaderboard as one self-contained HTML page: tables and base64-embedded sample grids, no links out."""
    es = _check(list(entries))
    body = [f"<h1>Leaderboard</h1><p>{len(es)} experiments: {html.escape(', '.join(e.experiment for e in es))}.</p>"]
    for title, note, df in _sections(es):
        body.append(f"<h2>{html.escape(title)}</h2>")
        if note:
            body.append(f'<p class="note">{html.escape(note)}</p>')
        body.append(df.to_html(index=False, escape=True, border=0))
    body.append("<h2>Samples</h2>")
    for e in es:
        body.append(f"<h3>{html.escape(e.experiment)}</h3>")
        for name, b64 in e.figures.items():
            alt = html.escape(f"{e.experiment} {name}")
            body.append(f'<figure><img src="data:image/png;base64,{b64}" alt="{alt}"><figcaption>{alt}</figcaption>'
                        "</figure>")  # fmt: skip
        if e.sample_text:
            body.append("<pre>" + html.escape("\n".join(e.sample_text)) + "</pre>")
        for name, b64 in e.audio.items():
            label = html.escape(f"{e.experiment} {name}")
            body.append(f'<figure><audio controls src="data:audio/wav;base64,{b64}"></audio><figcaption>{label}'
                        "</figcaption></figure>")  # fmt: skip
    body.append("<h2>Protocol cards</h2>")
    for e in es:
        body.append(f"<h3>{html.escape(e.experiment)}</h3>")
        body.append(protocol_card(e).to_html(index=False, escape=True, border=0))
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8"><title>genfoundry leaderboard</title>'
        f"<style>{_CSS}</style></head><body>\n" + "\n".join(body) + "\n</body></html>\n"
    )
