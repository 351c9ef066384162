"""benchmarks/_pipeline.py: the benchmarks' data and classifier are the prepare and features stages' own."""

from __future__ import annotations

from _pipeline import domain_classifier, prepared_root

from components.data import load_manifest


def test_prepared_root_uses_the_prepared_data(digits_root):
    assert prepared_root(["digits"], digits_root) == digits_root.resolve()


def test_prepared_root_prepares_missing_data_as_the_prepare_stage(tmp_path, digits_root):
    root = prepared_root(["digits"], tmp_path / "absent")
    assert root != tmp_path / "absent" and not (tmp_path / "absent").exists()
    # params.yaml's prepare section (seed 0, val 0.1, test 0.2) is the fixture's: the very same arrays
    assert load_manifest(root, "digits")["sha256"] == load_manifest(digits_root, "digits")["sha256"]


def test_domain_classifier_trains_as_the_features_stage_then_loads_its_output(tmp_path, digits_root):
    from components.evaluation.features import save_classifier

    trained = domain_classifier("digits", digits_root, tmp_path / "none", epochs=1)
    meta = trained.meta
    assert meta["epochs"] == 1 and meta["source"].startswith("trained by this benchmark")
    assert {"dataset", "channels", "num_classes", "test_accuracy", "seed", "sha256"} <= set(meta)
    # what the features stage leaves in data/features/<dataset> is loaded as it is
    stage_meta = {k: v for k, v in meta.items() if k not in ("source", "train_seconds", "sha256")}
    saved = save_classifier(tmp_path / "features" / "digits", trained.model, stage_meta)
    assert saved["sha256"] == meta["sha256"]  # the stage's way of hashing the weights
    loaded = domain_classifier("digits", digits_root, tmp_path / "features" / "digits")
    assert loaded.meta["sha256"] == meta["sha256"] and loaded.meta["source"].startswith("features stage")
