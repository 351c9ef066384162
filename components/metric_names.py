"""The scalar metrics ``evaluate@EXP`` reports, by data kind: what ``selection.metric`` may name.

Torch-free, so params.yaml's parser checks ``selection.metric`` before anything trains (a typo found after a
30-minute training run is a wasted run). The family's likelihood numbers join these (its record in
``components.models.family``). The evaluation tests check that the harness reports every name listed here.
"""

from __future__ import annotations

REPORTED: dict[str, frozenset[str]] = {
    "image": frozenset(
        {
            "fid",
            "kid",
            "fid_floor_train_vs_test",
            "kid_floor_train_vs_test",
            "precision",
            "recall",
            "density",
            "coverage",
            "classes_present",
            "class_kl_to_data",
            "samples_per_s",
        }
    ),
    "points": frozenset({"modes_captured", "pct_high_quality", "reverse_kl", "samples_per_s"}),
    "audio": frozenset(
        {"clear_pitch_share", "pitch_modes_covered", "pitch_kl_to_data", "samples_per_s"}
        | {
            "fad",
            "fad_floor_train_vs_test",
            "kid",
            "precision",
            "recall",
            "density",
            "coverage",
        }  # these in the audio domain classifier's features (features stage; a labelled dataset)
    ),
    "text": frozenset(
        {
            "test_nll_nats_per_char",
            "perplexity",
            "bigram_nll_nats_per_char",
            "test_nll_vs_bigram",
            "novelty_new",
            "novelty_in_train",
            "novelty_in_test",
            "uniqueness",
            "distinct_1",
            "distinct_2",
            "distinct_3",
            "length_tv",
            "length_w1",
            "samples_per_s",
        }
    ),
}
