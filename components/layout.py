"""Where everything lives in a genfoundry workspace, declared once.

Paths are relative to the project root (the stages' working directory; ``root / path`` elsewhere). ``dvc.yaml``
names the same paths: a change here needs one there.
"""

from __future__ import annotations

from pathlib import Path

PARAMS = Path("params.yaml")
RAW = Path("data/raw")  # user datasets (imagefolder / npz / textfile paths point here)
DATA = Path("data/prepared")  # prepare: one folder per dataset
FEATURES = Path("data/features")  # features: one folder per dataset (domain classifier, SimCLR encoder)
MODELS = Path("models")  # train: one folder per experiment (safetensors + config.json)
REPORTS = Path("reports")
SUMMARIES = REPORTS / "summaries"  # summary@EXP: one bundle per experiment, the leaderboard's input
LEADERBOARD_MD = REPORTS / "leaderboard.md"
LEADERBOARD_HTML = REPORTS / "leaderboard.html"
STATE = Path(".genfoundry")  # retrain's lock and manifest (not a DVC output)
SAMPLES = "samples.npz"  # evaluate@EXP: generated images, float32 (n, C, H, W) in [0, 1]


def model_dir(experiment: str) -> Path:
    return MODELS / experiment


def report_dir(experiment: str) -> Path:
    return REPORTS / experiment


def eval_dir(experiment: str) -> Path:
    """evaluate@EXP's pictures, labels.json and samples (the audit and the model card read them)."""
    return REPORTS / experiment / "eval"


def report_file(experiment: str, name: str) -> Path:
    """``reports/<experiment>/<name>``: train.json, train_history.csv, eval.json, audit.json, audit.md,
    registry.json, tune_best.json."""
    return REPORTS / experiment / name


#: the DVC metrics files hold headlines; the whole reports sit beside them
EVAL, EVAL_DETAILS = "eval.json", "eval_details.json"
AUDIT, AUDIT_DETAILS = "audit.json", "audit_details.json"


def summary_file(experiment: str) -> Path:
    return SUMMARIES / f"{experiment}.json"
