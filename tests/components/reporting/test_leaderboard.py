import base64
import io
import re

import pytest
from PIL import Image

from components.reporting.leaderboard import (
    bundle,
    champion_cell,
    entry,
    image_table,
    leaderboard_html,
    leaderboard_markdown,
    likelihood_table,
    markdown_table,
    mode_collapse_table,
    overview_table,
    parent_cell,
)
from components.reporting.published import PACGAN_TABLE1

PNG = io.BytesIO()
Image.new("L", (4, 4), 128).save(PNG, format="PNG")
PNG = PNG.getvalue()
CHAMPION = {"version": "3", "aliases": ["champion", "challenger"], "promoted": True, "reason": "first champion"}
PASSED = {"passed": True, "failed": [], "gates": {"fd_l2": {"value": 0.05, "threshold": 0.1, "passed": True}}}


def _entry(name, family, metrics, *, registry=CHAMPION, model=None, selection=("fid", "min"), **kw):
    summary = bundle(name, metrics, PASSED, registry, **kw)
    return entry(summary, family=family, dataset="mnist5k", selection=selection, model=model)


@pytest.fixture
def entries():
    image = {"fid": 56.48, "fid_ci95": [52.3, 60.5], "fid_floor_train_vs_test": 0.386,
             "fid_floor_train_vs_test_ci95": [0.0, 1.1], "kid": 35.1, "precision": 0.64, "recall": 0.39,
             "memorization": {"c_t": 16.1, "authenticity": 0.76, "nn_ratio_memorized": 0.0},
             "augmentation": {"acc_real": 0.922, "acc_real_plus_generated": 0.904, "delta": -0.018,
                              "delta_ci95": [-0.034, -0.002], "n_real": 3500, "n_generated": 2000},
             "protocol": {"n_generated": 2000, "n_real": 1000, "seed": 0}}  # fmt: skip
    return [
        _entry(
            "vae_mnist",
            "vae",
            {**image, "test_nelbo_bits_per_dim": 0.196, "test_nelbo_nats": 106.7},
            figures={"samples": PNG, "interpolation": PNG},
        ),  # fmt: skip
        _entry(
            "pixelcnn_mnist",
            "pixelcnn",
            {**image, "test_nll_bits_per_dim": 0.52},
            model={"levels": 4},
            selection=("test_nll_bits_per_dim", "min"),
        ),  # fmt: skip
        _entry("diffusion_mnist", "diffusion", {**image, "test_nll_bits_per_dim": 1.3}),
        _entry(
            "gan_mnist",
            "gan",
            image,
            registry={
                "version": "2",
                "aliases": ["challenger"],
                "promoted": False,
                "champion_before": "1",
                "reason": "fid 60 >= champion's 50",
            },
        ),
        _entry(
            "gpt_names",
            "gpt",
            {
                "test_nll_nats_per_char": 1.94,
                "bigram_nll_nats_per_char": 2.35,
                "test_nll_vs_bigram": 0.18,
                "perplexity": 6.95,
            },
            selection=("test_nll_nats_per_char", "min"),
            sample_text="ann\nbob\n",
        ),  # fmt: skip
        _entry(
            "gan_grid25",
            "gan",
            {
                "modes_captured": 24,
                "pct_high_quality": 91.25,
                "reverse_kl": 0.0512,
                "protocol": {"mixture": "grid25", "num_modes": 25, "seed": 0},
            },
            selection=("reverse_kl", "min"),
        ),  # fmt: skip
    ]


def test_bundle_keeps_the_sample_grid_and_the_first_lines_of_text():
    b = bundle("x", {"fid": 1.0}, {}, {}, figures={"samples": PNG, "reconstructions": PNG},
               sample_text="\n".join(f"s{i}" for i in range(100)))  # fmt: skip
    assert list(b["figures"]) == ["samples"] and base64.b64decode(b["figures"]["samples"]) == PNG
    assert b["sample_text"][:2] == ["s0", "s1"] and len(b["sample_text"]) == 24
    with pytest.raises(ValueError, match="^x's audit.json: expected a JSON object, got list"):
        bundle("x", {}, [], {})


def test_fid_sits_beside_its_interval_and_the_real_vs_real_floor(entries):
    row = image_table(entries).set_index("experiment").loc["vae_mnist"]
    assert row["FID [95% CI]"] == "56.48 [52.3, 60.5]"
    assert row["floor: train vs test [95% CI]"] == "0.386 [0, 1.1]"
    assert row["N gen / real"] == "2000 / 1000"
    assert row["fid_simclr / floor"] == "–"  # no SimCLR encoder for this entry
    assert "gpt_names" not in set(image_table(entries)["experiment"])
    with_simclr = _entry("vae_s", "vae", {"fid": 1.0, "simclr": {"fid": 12.5, "fid_floor_train_vs_test": 0.75}})
    assert image_table([with_simclr]).iloc[0]["fid_simclr / floor"] == "12.5 / 0.75"


def test_likelihood_table_says_unit_and_whether_exact_or_a_bound(entries):
    t = likelihood_table(entries).set_index(["experiment", "metric"])
    px = t.loc["pixelcnn_mnist", "test_nll_bits_per_dim"]
    assert (px["value"], px["unit"], px["exact / bound"]) == ("0.52", "bits/dim", "exact")
    assert "4 intensity levels" in px["data model"]
    assert t.loc["diffusion_mnist", "test_nll_bits_per_dim"]["exact / bound"].startswith("upper bound (−ELBO")
    assert t.loc["vae_mnist", "test_nelbo_bits_per_dim"]["exact / bound"].startswith("upper bound")
    assert t.loc["vae_mnist", "test_nelbo_nats"]["unit"] == "nats/image"
    gpt = t.loc["gpt_names", "test_nll_nats_per_char"]
    assert (gpt["unit"], gpt["exact / bound"]) == ("nats/char", "exact") and "2.35" in gpt["data model"]
    assert ("gpt_names", "test_nll_vs_bigram") not in t.index  # a ratio, not a likelihood
    assert t.loc["gan_mnist", "–"]["exact / bound"].startswith("none: an implicit model")


def test_mode_collapse_rows_sit_beside_the_published_pacgan_rows(entries):
    t = mode_collapse_table(entries)
    assert t.iloc[0].tolist()[0] == "gan_grid25" and t.iloc[0]["modes"] == "24 / 25"
    published = t.iloc[1:]
    assert published["model"].tolist() == list(PACGAN_TABLE1)
    assert published.set_index("model").loc["PacGAN2", "reverse KL"] == "0.13±0.04"  # PacGAN Table 1, grid
    custom = _entry("gan_ring", "gan", {"modes_captured": 3, "protocol": {"mixture": None, "num_modes": 3}})
    assert len(mode_collapse_table([custom])) == 1  # no published numbers for a custom mixture


def test_champion_or_not():
    assert champion_cell(CHAMPION) == "champion (v3)"
    assert champion_cell({"version": "2", "aliases": ["challenger"], "champion_before": "1", "reason": "worse"}) == (
        "not champion (v2; champion stays v1: worse)"
    )
    assert champion_cell({}) == "not registered"


def test_the_overview_names_the_parent_of_a_fine_tuned_experiment():
    parent = {"kind": "experiment", "model": "gpt_surnames", "version": None, "weights_sha256": "ab" * 32,
              "loaded": 30, "frozen": ["net.wte.weight"]}  # fmt: skip
    registered = {**parent, "kind": "registered", "model": "gf-gpt", "version": "4", "frozen": []}
    assert parent_cell({**CHAMPION, "parent": parent}) == "gpt_surnames (30 tensors, 1 frozen; sha256 abababababab)"
    assert parent_cell({**CHAMPION, "parent": registered}) == "gf-gpt v4 (30 tensors; sha256 abababababab)"
    assert parent_cell(CHAMPION) == "–"
    board = overview_table(
        [
            _entry("ft", "gpt", {"fid": 1.0}, registry={**CHAMPION, "parent": parent}),
            _entry("scratch", "gan", {"fid": 2.0}),
        ]
    )
    assert board["parent"].tolist() == ["gpt_surnames (30 tensors, 1 frozen; sha256 abababababab)", "–"]


def test_markdown_has_every_section_and_links_the_grids(entries):
    md = leaderboard_markdown(entries)
    titles = ("Overview", "Image quality", "Memorization", "Data-augmentation utility", "Likelihood",
              "Mode collapse (2-D mixtures)", "Text", "Audit and registry", "Samples", "Protocol cards")  # fmt: skip
    for title in titles:
        assert f"\n## {title}\n" in md
    assert "![vae_mnist samples](vae_mnist/eval/samples.png)" in md and "interpolation" not in md
    assert "| gan_mnist | gan | mnist5k | fid (min) = 56.48 | passed | not champion (v2; champion stays v1" in md
    assert "| vae_mnist | 0.922 | 0.904 | -0.018 [-0.034, -0.002] | 3500 / 2000 |" in md
    header = next(line for line in md.splitlines() if line.startswith("| experiment | FID"))
    assert header.count("|") == 14  # 13 columns


def test_html_is_self_contained_with_embedded_grids(entries):
    page = leaderboard_html([*entries, _entry("<b>odd</b>", "vae", {"fid": 1.0})])
    images = re.findall(r'<img src="data:image/png;base64,([A-Za-z0-9+/=]+)"', page)
    assert len(images) == 1 and base64.b64decode(images[0]) == PNG
    assert not re.search(r'(src|href)="(?!data:)', page)  # nothing to fetch
    assert "&lt;b&gt;odd&lt;/b&gt;" in page and "<b>odd</b>" not in page
    assert "<table" in page and "0.13±0.04" in page and "ann\nbob" in page


def test_markdown_cells_escape_pipes_and_empty_boards_raise():
    import pandas as pd

    assert markdown_table(pd.DataFrame({"a": ["x|y"]})) == "| a |\n|---|\n| x\\|y |"
    with pytest.raises(ValueError, match="^leaderboard: expected at least one experiment, got none"):
        leaderboard_markdown([])


def test_an_audio_experiment_gets_its_table_spectrograms_and_players():
    wav = b"RIFF....WAVEfmt fake"
    audio = _entry(
        "wavenet_notes",
        "wavenet",
        {"clear_pitch_share": 0.93, "real_clear_pitch_share": 0.99, "pitch_modes_covered": 12,
         "pitch_kl_to_data": 0.02, "real_pitch_kl_to_data": 0.001, "test_nll_bits_per_sample": 2.1,
         "unigram_nll_bits_per_sample": 6.8, "lpc_nll_bits_per_sample": 3.9, "protocol": {"seed": 0}},
        figures={"spectrograms": PNG},
        audio={f"sample_{i}": wav for i in range(6)},
        selection=("test_nll_bits_per_sample", "min"),
    )  # fmt: skip
    assert audio.kind == "audio" and len(audio.audio) == 4  # the first AUDIO_CLIPS clips
    md = leaderboard_markdown([audio])
    assert "## Audio" in md and "| wavenet_notes | 0.93 (real 0.99) | 12/12 |" in md
    assert "![wavenet_notes spectrograms](wavenet_notes/eval/spectrograms.png)" in md
    assert "[wavenet_notes sample_0.wav](wavenet_notes/eval/sample_0.wav)" in md
    assert "| wavenet_notes | wavenet | mnist5k | test_nll_bits_per_sample | 2.1 | bits/sample | exact |" in md
    page = leaderboard_html([audio])
    assert page.count('<audio controls src="data:audio/wav;base64,') == 4
    assert base64.b64encode(wav).decode() in page
